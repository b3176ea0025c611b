//! Each call gets its own clone of the state: a type that is not `Clone`
//! is reported on the parameter's type.

struct Deps;

#[derive(serde::Deserialize)]
struct OrderEvent {
    order_id: String,
}

#[mqkit::consumer(queue = "order")]
async fn on_order(
    evt: OrderEvent,
    mqkit::State(deps): mqkit::State<Deps>,
) -> Result<(), mqkit::HandlerError> {
    let _ = (evt.order_id, deps);
    Ok(())
}

fn main() {}
