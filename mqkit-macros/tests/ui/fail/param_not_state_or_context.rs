//! A dependency taken directly instead of through `mqkit::State`.

#[derive(Clone)]
struct Pool;

#[derive(serde::Deserialize)]
struct OrderEvent {
    order_id: String,
}

#[mqkit::consumer(queue = "order")]
async fn on_order(
    evt: OrderEvent,
    ctx: mqkit::Context,
    db: Pool,
) -> Result<(), mqkit::HandlerError> {
    let _ = (evt.order_id, ctx, db);
    Ok(())
}

fn main() {}
