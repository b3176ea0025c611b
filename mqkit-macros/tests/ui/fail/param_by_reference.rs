#[derive(Clone)]
struct Deps;

#[derive(serde::Deserialize)]
struct OrderEvent {
    order_id: String,
}

#[mqkit::consumer(queue = "order")]
async fn on_order(
    evt: OrderEvent,
    ctx: &mqkit::Context,
    deps: &mqkit::State<Deps>,
) -> Result<(), mqkit::HandlerError> {
    let _ = (evt.order_id, ctx, deps);
    Ok(())
}

fn main() {}
