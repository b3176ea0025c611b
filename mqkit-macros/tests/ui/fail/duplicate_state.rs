//! The same state type twice, spelled with and without the `mqkit::` path.

use mqkit::State;

#[derive(Clone)]
struct Deps;

#[derive(serde::Deserialize)]
struct OrderEvent {
    order_id: String,
}

#[mqkit::consumer(queue = "order")]
async fn on_order(
    evt: OrderEvent,
    mqkit::State(deps): mqkit::State<Deps>,
    ctx: mqkit::Context,
    State(again): State<Deps>,
) -> Result<(), mqkit::HandlerError> {
    let _ = (evt.order_id, deps, ctx, again);
    Ok(())
}

fn main() {}
