#[derive(serde::Deserialize)]
struct OrderEvent {
    order_id: String,
}

#[mqkit::consumer(crate = mqkit, queue = "order")]
async fn on_order(evt: OrderEvent) -> Result<(), mqkit::HandlerError> {
    let _ = evt.order_id;
    Ok(())
}

fn main() {}
