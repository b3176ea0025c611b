use std::rc::Rc;

#[derive(serde::Deserialize)]
struct OrderEvent {
    order_id: String,
}

async fn charge(_order_id: &str) {}

#[mqkit::consumer(queue = "order")]
async fn on_order(evt: OrderEvent) -> Result<(), mqkit::HandlerError> {
    let order_id = Rc::new(evt.order_id);
    charge(&order_id).await;
    Ok(())
}

fn main() {}
