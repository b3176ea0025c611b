//! A `State<T>` that is not mqkit's (as axum's would be) is reported on the
//! parameter's type.

#[derive(Clone)]
struct State<T>(T);

#[derive(Clone)]
struct Deps;

#[derive(serde::Deserialize)]
struct OrderEvent {
    order_id: String,
}

#[mqkit::consumer(queue = "order")]
async fn on_order(evt: OrderEvent, State(deps): State<Deps>) -> Result<(), mqkit::HandlerError> {
    let _ = (evt.order_id, deps);
    Ok(())
}

fn main() {}
