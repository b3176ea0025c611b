//! The macro's output used for real: the handler forms (message only, with
//! `Context`, with `State<T>`s and `Context` in any order), the companion
//! type, the registry, and a key built from the attribute's fields.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};

use mqkit::testing::TestHarness;
use mqkit::{Consumer, Outcome, State, StateType};
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

/// Shared state: where `h` records what it received.
#[derive(Clone, Default)]
struct A(Arc<Mutex<Vec<String>>>);

/// Shared state: a setting.
#[derive(Clone)]
struct B(&'static str);

#[mqkit::consumer(queue = "smoke.state")]
async fn h(
    evt: OrderEvent,
    State(A(seen)): State<A>,
    ctx: mqkit::Context,
    mqkit::State(b): mqkit::State<B>,
) -> Result<(), mqkit::HandlerError> {
    seen.lock().unwrap().push(format!(
        "{} {} attempt {}",
        evt.order_id,
        b.0,
        ctx.attempt()
    ));
    Ok(())
}

#[tokio::test]
async fn state_parameters_receive_the_harness_state() {
    let a = A::default();
    let harness = TestHarness::new(h {}).state(a.clone()).state(B("eu"));
    let evt = serde_json::json!({"order_id": "S-1", "event_type": "created", "amount_cents": 5});
    assert_eq!(harness.deliver_json(&evt).await, Outcome::Ack);
    let retry = mqkit::testing::TestDelivery::json(&evt).unwrap().attempt(2);
    assert_eq!(harness.deliver(&retry).await, Outcome::Ack);
    assert_eq!(
        *a.0.lock().unwrap(),
        ["S-1 eu attempt 1", "S-1 eu attempt 2"]
    );
}

#[tokio::test]
async fn missing_state_rejects_the_message() {
    // Startup refuses this for an app; the harness does not check, so the
    // generated extraction's error shows.
    let harness = TestHarness::new(h {}).state(A::default());
    let evt = serde_json::json!({"order_id": "S-2", "event_type": "created", "amount_cents": 5});
    match harness.deliver_json(&evt).await {
        Outcome::DeadLetter {
            kind: mqkit::DeadLetterKind::Rejected,
            error,
            ..
        } => assert!(error.contains("no state of type"), "{error}"),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn state_types_and_name() {
    let types = h {}.state_types();
    assert_eq!(types, [StateType::of::<A>(), StateType::of::<B>()]);
    let names: Vec<&str> = types.iter().map(StateType::name).collect();
    assert_eq!(
        names,
        [std::any::type_name::<A>(), std::any::type_name::<B>()]
    );
    assert!(
        names[0].ends_with("::A") && names[1].ends_with("::B"),
        "{names:?}"
    );
    assert_eq!(Consumer::name(&h {}), "h");
    assert_eq!(Consumer::name(&on_order {}), "on_order");
    assert!(on_order {}.state_types().is_empty());
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
    assert_eq!(names, ["h", "on_order", "with_ctx"]);
}
