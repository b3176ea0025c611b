#[derive(serde::Deserialize)]
struct OrderEvent {
    order_id: String,
    event_type: String,
}

#[mqkit::consumer(queue = "order")]
async fn on_order(
    evt: OrderEvent,
    ctx: mqkit::Context,
    attempt: u32,
) -> Result<(), mqkit::HandlerError> {
    let _ = (evt.order_id, evt.event_type, ctx, attempt);
    Ok(())
}

fn main() {}
