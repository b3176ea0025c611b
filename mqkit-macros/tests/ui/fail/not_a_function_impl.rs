struct OrderConsumer;

#[mqkit::consumer(queue = "order")]
impl OrderConsumer {
    async fn on_order(&self) {}
}

fn main() {}
