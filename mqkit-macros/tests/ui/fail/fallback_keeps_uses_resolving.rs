//! A bad argument: the only error shown is the attribute's, although the
//! rest of the crate uses the companion type and calls the fn.

use mqkit::Consumer;
use mqkit::testing::TestHarness;

#[derive(serde::Deserialize)]
struct OrderEvent {
    order_id: String,
}

#[mqkit::consumer(queue = "order", retry_delay = "soon")]
async fn on_order(evt: OrderEvent) -> Result<(), mqkit::HandlerError> {
    let _ = evt.order_id;
    Ok(())
}

mod elsewhere {
    use mqkit::Consumer;

    pub(crate) fn queue() -> String {
        super::on_order::default().spec().queue.into_owned()
    }
}

#[tokio::main]
async fn main() {
    let _ = on_order {}.spec();
    let harness = TestHarness::new(on_order {});
    let _ = harness.spec().queue.len() + elsewhere::queue().len();
    let direct: Result<(), mqkit::HandlerError> =
        on_order(OrderEvent { order_id: "o-1".into() }).await;
    let _ = direct;
}
