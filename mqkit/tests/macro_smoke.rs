//! The macro's output used for real: both handler forms, the companion type,
//! the registry, and a key built from the attribute's fields.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use mqkit::testing::TestHarness;
use mqkit::{Consumer, Outcome};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct OrderEvent {
    order_id: String,
    event_type: String,
    amount_cents: i64,
}

/// Charges an order.
#[mqkit::consumer(
    queue = "smoke.order",
    idempotency = "order_id,event_type",
    max_retries = 2
)]
async fn on_order(evt: OrderEvent) -> Result<(), mqkit::HandlerError> {
    if evt.amount_cents < 0 {
        return Err(mqkit::HandlerError::reject("negative amount"));
    }
    Ok(())
}

#[mqkit::consumer(queue = "smoke.ctx", exchange = "smoke.orders")]
async fn with_ctx(_evt: OrderEvent, ctx: mqkit::Context) -> Result<(), std::io::Error> {
    if ctx.attempt() > 1 {
        return Ok(());
    }
    Err(std::io::Error::other("first attempt fails"))
}

#[tokio::test]
async fn the_users_fn_stays_callable() {
    let evt = OrderEvent {
        order_id: "A".into(),
        event_type: "created".into(),
        amount_cents: 1,
    };
    on_order(evt).await.unwrap();
}

#[tokio::test]
async fn generated_consumer_runs_in_the_harness() {
    let h = TestHarness::new(on_order {});
    let evt = serde_json::json!({"order_id": "A-1", "event_type": "created", "amount_cents": 5});
    assert_eq!(h.deliver_json(&evt).await, Outcome::Ack);
    assert_eq!(h.deliver_json(&evt).await, Outcome::Duplicate);
    let bad = serde_json::json!({"order_id": "A-2", "event_type": "created", "amount_cents": -5});
    assert!(matches!(
        h.deliver_json(&bad).await,
        Outcome::DeadLetter {
            kind: mqkit::DeadLetterKind::Rejected,
            attempts: 1,
            ..
        }
    ));
}

#[tokio::test]
async fn context_form_sees_the_attempt() {
    let h = TestHarness::new(with_ctx {});
    let evt = serde_json::json!({"order_id": "A-1", "event_type": "created", "amount_cents": 5});
    match h.deliver_json(&evt).await {
        Outcome::Retry {
            attempt: 1, error, ..
        } => assert_eq!(error, "first attempt fails"),
        other => panic!("unexpected {other:?}"),
    }
    let retry = mqkit::testing::TestDelivery::json(&evt).unwrap().attempt(2);
    assert_eq!(h.deliver(&retry).await, Outcome::Ack);
}

#[test]
fn spec_and_registry() {
    let spec = on_order {}.spec();
    assert_eq!(spec.queue, "smoke.order");
    assert_eq!(spec.dlq, "dlq.smoke.order");
    assert_eq!(spec.idempotency, &["order_id", "event_type"]);
    assert_eq!(spec.max_retries, 2);
    let ctx_spec = with_ctx {}.spec();
    let binding = ctx_spec.binding.unwrap();
    assert_eq!(
        (binding.exchange_type.as_ref(), binding.routing_key.as_ref()),
        ("topic", "#")
    );
    let mut names: Vec<&str> = mqkit::registered().iter().map(|r| r.name()).collect();
    names.sort_unstable();
    assert_eq!(names, ["on_order", "with_ctx"]);
}
