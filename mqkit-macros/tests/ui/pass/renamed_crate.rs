//! A service that reaches the runtime through another crate says where with
//! `crate = "…"`: here `mq`, a renamed dependency that re-exports it, and a
//! module of this crate that re-exports `mq`. The code below writes no other
//! path to the runtime.

use mq::testing::TestHarness;
use mq::{Consumer, Outcome};

mod deps {
    pub use ::mq;
}

#[derive(serde::Deserialize)]
struct OrderEvent {
    order_id: String,
}

#[mq::consumer(crate = "mq", queue = "x", idempotency = "order_id")]
async fn on_order(evt: OrderEvent, ctx: mq::Context) -> Result<(), mq::HandlerError> {
    assert_eq!(ctx.attempt(), 1);
    if evt.order_id.is_empty() {
        return Err(mq::HandlerError::reject("empty order id"));
    }
    Ok(())
}

#[deps::mq::consumer(crate = "crate::deps::mq", queue = "y", prefetch = 2)]
async fn on_refund(evt: OrderEvent) -> Result<(), std::io::Error> {
    let _ = evt.order_id;
    Ok(())
}

#[tokio::main]
async fn main() {
    let harness = TestHarness::new(on_order {});
    assert_eq!(harness.deliver_bytes(r#"{"order_id":"o-1"}"#).await, Outcome::Ack);
    assert_eq!(harness.deliver_bytes(r#"{"order_id":"o-1"}"#).await, Outcome::Duplicate);
    assert_eq!(on_order {}.spec().queue, "x");

    let spec = on_refund {}.spec();
    assert_eq!((spec.queue.as_ref(), spec.prefetch, spec.concurrency), ("y", 2, 2));
    let registered: Vec<_> = mq::registered().iter().map(|r| r.name()).collect();
    assert!(registered.contains(&"on_order") && registered.contains(&"on_refund"), "{registered:?}");
}
