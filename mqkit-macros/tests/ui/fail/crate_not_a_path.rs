#[derive(serde::Deserialize)]
struct OrderEvent {
    order_id: String,
}

#[mqkit::consumer(crate = "my-facade", queue = "order")]
async fn on_order(evt: OrderEvent) -> Result<(), mqkit::HandlerError> {
    let _ = evt.order_id;
    Ok(())
}

#[mqkit::consumer(crate = "mqkit::<T>", queue = "refund")]
async fn on_refund(evt: OrderEvent) -> Result<(), mqkit::HandlerError> {
    let _ = evt.order_id;
    Ok(())
}

fn main() {}
