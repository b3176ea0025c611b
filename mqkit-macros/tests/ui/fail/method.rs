#[derive(serde::Deserialize)]
struct OrderEvent {
    order_id: String,
}

struct Orders;

impl Orders {
    #[mqkit::consumer(queue = "order")]
    async fn on_order(&self, evt: OrderEvent) -> Result<(), mqkit::HandlerError> {
        let _ = evt.order_id;
        Ok(())
    }
}

fn main() {
    let _ = Orders.on_order(OrderEvent { order_id: "o-1".into() });
}
