//! `async fn f(msg: T) -> Result<(), mqkit::HandlerError>`, run in memory.

use mqkit::testing::TestHarness;
use mqkit::Outcome;

#[derive(serde::Deserialize)]
struct OrderEvent {
    order_id: String,
}

#[mqkit::consumer(queue = "order")]
async fn on_order(evt: OrderEvent) -> Result<(), mqkit::HandlerError> {
    if evt.order_id.is_empty() {
        return Err(mqkit::HandlerError::reject("empty order id"));
    }
    Ok(())
}

#[tokio::main]
async fn main() {
    let harness = TestHarness::new(on_order {});
    assert_eq!(harness.deliver_bytes(r#"{"order_id":"o-1"}"#).await, Outcome::Ack);
    // The function stays an ordinary, callable async fn.
    let direct = on_order(OrderEvent { order_id: String::new() }).await;
    assert!(direct.is_err_and(|e| e.is_reject()));
}
