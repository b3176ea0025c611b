//! A wrong signature: the only error shown is the attribute's, although the
//! rest of the crate uses the companion type and calls the fn as written.

use mqkit::testing::TestHarness;

#[derive(serde::Deserialize)]
struct OrderEvent {
    order_id: String,
}

#[mqkit::consumer(queue = "order")]
pub async fn on_order(evt: &OrderEvent) -> Result<(), mqkit::HandlerError> {
    let _ = &evt.order_id;
    Ok(())
}

#[tokio::main]
async fn main() {
    let harness = TestHarness::new(on_order {});
    let _ = harness.spec();
    let evt = OrderEvent { order_id: "o-1".into() };
    let _ = on_order(&evt).await;
}
