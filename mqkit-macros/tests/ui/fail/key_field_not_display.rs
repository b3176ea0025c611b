#[derive(Debug, serde::Deserialize)]
struct OrderId {
    region: String,
    number: u64,
}

#[derive(serde::Deserialize)]
struct OrderEvent {
    order_id: OrderId,
    event_type: String,
}

#[mqkit::consumer(queue = "order", idempotency = "order_id,event_type")]
async fn on_order(evt: OrderEvent) -> Result<(), mqkit::HandlerError> {
    let _ = (evt.order_id.region, evt.order_id.number);
    Ok(())
}

fn main() {}
