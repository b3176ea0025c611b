/// The service's own context type, not `mqkit::Context`.
struct Context;

#[derive(serde::Deserialize)]
struct OrderEvent {
    order_id: String,
    event_type: String,
}

#[mqkit::consumer(queue = "order")]
async fn on_order(evt: OrderEvent, ctx: Context) -> Result<(), mqkit::HandlerError> {
    let _ = (evt.order_id, evt.event_type, ctx);
    Ok(())
}

fn main() {}
