#[derive(serde::Deserialize)]
struct OrderEvent {
    order_id: String,
}

#[mqkit::consumer(queue = "order")]
async fn on_order(
    evt: OrderEvent,
    ctx: mqkit::Context,
    again: mqkit::Context,
) -> Result<(), mqkit::HandlerError> {
    let _ = (evt.order_id, ctx, again);
    Ok(())
}

fn main() {}
