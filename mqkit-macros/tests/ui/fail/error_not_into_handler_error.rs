/// Not an error type: it does not implement `std::error::Error`.
#[derive(Debug)]
struct OrderFailed;

#[derive(serde::Deserialize)]
struct OrderEvent {
    order_id: String,
    event_type: String,
}

#[mqkit::consumer(queue = "order")]
async fn on_order(evt: OrderEvent) -> Result<(), OrderFailed> {
    let _ = (evt.order_id, evt.event_type);
    Err(OrderFailed)
}

fn main() {}
