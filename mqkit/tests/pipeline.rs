//! The pipeline against every row of DESIGN.md rule 2, with the
//! hand-written test consumer of `support/orders.rs` (no macro) driven
//! through `mqkit::testing`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use mqkit::MAX_RETRY_DELAY;
use mqkit::decode_json;
use mqkit::testing::{TestDelivery, TestHarness};
use mqkit::{
    ConsumerSpec, DeadLetterKind, FieldValue, MemoryStore, Outcome, RedisStore, RequeueReason,
};
use serde_json::json;

#[path = "support/orders.rs"]
mod orders;

use orders::{OrderEvent, Orders, Shared, store_unavailable};

/// How long a test waits for a held handler to be released.
const HOLD_TIMEOUT: Duration = Duration::from_secs(10);

fn base_spec() -> ConsumerSpec {
    orders::spec("order")
}

struct Setup {
    harness: TestHarness<Orders>,
    shared: Arc<Shared>,
}

impl Setup {
    fn calls(&self) -> usize {
        self.shared.calls()
    }
}

/// A harness over a fresh [`MemoryStore`] with `adjust` applied to the spec.
fn setup(adjust: impl FnOnce(&mut ConsumerSpec)) -> Setup {
    setup_with_store(adjust, Arc::new(MemoryStore::new()))
}

fn setup_with_store(
    adjust: impl FnOnce(&mut ConsumerSpec),
    store: Arc<dyn mqkit::IdempotencyStore>,
) -> Setup {
    let mut spec = base_spec();
    adjust(&mut spec);
    let shared = Arc::new(Shared::default());
    Setup {
        harness: Orders::harness(spec, &shared, store),
        shared,
    }
}

fn event(order_id: &str, event_type: &str) -> serde_json::Value {
    json!({"order_id": order_id, "event_type": event_type, "amount_cents": 1250})
}

fn delivery(order_id: &str, event_type: &str) -> TestDelivery {
    TestDelivery::json(&event(order_id, event_type)).unwrap()
}

// ---------------------------------------------------------------------------
// Ok(()) -> ack
// ---------------------------------------------------------------------------

#[tokio::test]
async fn ok_is_ack_and_handler_called_once() {
    let s = setup(|_| {});
    assert_eq!(
        s.harness.deliver_json(&event("A-1", "ok")).await,
        Outcome::Ack
    );
    assert_eq!(s.calls(), 1);
}

// ---------------------------------------------------------------------------
// Undecodable bodies -> DLQ at once, kind decode, handler never called
// ---------------------------------------------------------------------------

/// Delivers `body` and returns the decode error text, checking everything else.
async fn expect_decode_failure(body: &[u8]) -> String {
    let s = setup(|_| {});
    let outcome = s.harness.deliver_bytes(body.to_vec()).await;
    let Outcome::DeadLetter {
        kind,
        error,
        attempts,
    } = outcome
    else {
        panic!("expected a decode dead letter for {body:?}, got {outcome:?}");
    };
    assert_eq!(kind, DeadLetterKind::Decode);
    assert_eq!(attempts, 1, "a decode failure is one attempt");
    assert_eq!(
        s.calls(),
        0,
        "the handler must not run on an undecodable body"
    );
    assert!(
        error.starts_with("cannot decode OrderEvent: "),
        "error names the type: {error}"
    );
    error
}

#[tokio::test]
async fn decode_invalid_json() {
    let error = expect_decode_failure(br#"{"order_id": "A-1",, }"#).await;
    assert!(error.contains("body is not valid JSON"), "{error}");
    assert!(error.contains("line 1 column"), "{error}");
}

#[tokio::test]
async fn decode_truncated_json() {
    let error = expect_decode_failure(br#"{"order_id": "A-1", "event_"#).await;
    assert!(error.contains("JSON ends too early"), "{error}");
}

#[tokio::test]
async fn decode_wrong_field_type() {
    let error = expect_decode_failure(
        br#"{"order_id": "A-1", "event_type": "created", "amount_cents": "ten"}"#,
    )
    .await;
    assert!(error.contains("JSON does not match the type"), "{error}");
    assert!(
        error.contains(r#"invalid type: string "ten", expected i64"#),
        "{error}"
    );
}

#[tokio::test]
async fn decode_missing_field() {
    let error = expect_decode_failure(br#"{"order_id": "A-1", "amount_cents": 5}"#).await;
    assert!(error.contains("JSON does not match the type"), "{error}");
    assert!(error.contains("missing field `event_type`"), "{error}");
}

#[tokio::test]
async fn decode_non_utf8() {
    let error = expect_decode_failure(b"{\"order_id\": \"\xff\xfe\"}").await;
    assert!(error.contains("body is not valid UTF-8"), "{error}");
    assert!(error.contains("invalid utf-8 sequence"), "{error}");
}

#[tokio::test]
async fn decode_empty_body() {
    let error = expect_decode_failure(b"").await;
    assert_eq!(error, "cannot decode OrderEvent: body is empty");
}

#[tokio::test]
async fn decode_array_instead_of_object() {
    let error =
        expect_decode_failure(br#"[{"order_id": "A-1", "event_type": "ok", "amount_cents": 1}]"#)
            .await;
    assert!(error.contains("JSON does not match the type"), "{error}");
    assert!(
        error.contains("invalid type: sequence, expected struct OrderEvent"),
        "{error}"
    );
}

#[tokio::test]
async fn decode_positional_array_is_not_a_struct() {
    // serde would accept a struct as an array of field values in declaration
    // order; a message body must be an object with named fields.
    let error = expect_decode_failure(br#"["A-1", "ok", 1250]"#).await;
    assert_eq!(
        error,
        "cannot decode OrderEvent: JSON does not match the type: invalid type: sequence, expected struct OrderEvent"
    );
    // Malformed JSON that starts like an array is still reported as such.
    let error = expect_decode_failure(br#"["A-1",, "ok"]"#).await;
    assert!(error.contains("body is not valid JSON"), "{error}");
}

#[test]
fn decode_json_still_accepts_arrays_for_sequence_types() {
    assert_eq!(decode_json::<Vec<u32>>(b"[1, 2]").unwrap(), vec![1, 2]);
    assert_eq!(
        decode_json::<(String, i64)>(br#"["a", 2]"#).unwrap(),
        ("a".to_owned(), 2)
    );
    assert_eq!(
        decode_json::<serde_json::Value>(b" [true]").unwrap(),
        json!([true])
    );
    let batch: Vec<OrderEvent> =
        decode_json(br#"[{"order_id": "A-1", "event_type": "ok", "amount_cents": 1}]"#).unwrap();
    assert_eq!(batch.len(), 1);
    assert_eq!(batch[0].order_id, "A-1");
}

#[tokio::test]
async fn decode_failure_leaves_no_idempotency_record() {
    let store = Arc::new(MemoryStore::new());
    let s = setup_with_store(|_| {}, store.clone());
    let outcome = s.harness.deliver_bytes(b"not json".to_vec()).await;
    assert!(matches!(
        outcome,
        Outcome::DeadLetter {
            kind: DeadLetterKind::Decode,
            attempts: 1,
            ..
        }
    ));
    assert!(store.is_empty());
    assert_eq!(s.calls(), 0);
}

// ---------------------------------------------------------------------------
// Transient errors -> retry with doubling delay, then retries-exhausted
// ---------------------------------------------------------------------------

#[tokio::test]
async fn transient_errors_retry_three_times_then_dead_letter() {
    let s = setup(|spec| {
        spec.max_retries = 3;
        spec.retry_delay = Duration::from_secs(1);
    });
    let expected_delays = [1, 2, 4];
    for (attempt, secs) in (1..=3).zip(expected_delays) {
        let outcome = s
            .harness
            .deliver(&delivery("A-1", "retry").attempt(attempt))
            .await;
        assert_eq!(
            outcome,
            Outcome::Retry {
                attempt,
                delay: Duration::from_secs(secs),
                error: "upstream unavailable".into(),
            }
        );
        // The key was released after each failure, so every attempt ran.
        assert_eq!(s.calls(), attempt as usize);
    }
    let outcome = s
        .harness
        .deliver(&delivery("A-1", "retry").attempt(4))
        .await;
    assert_eq!(
        outcome,
        Outcome::DeadLetter {
            kind: DeadLetterKind::RetriesExhausted,
            error: "upstream unavailable".into(),
            attempts: 4,
        }
    );
    assert_eq!(s.calls(), 4);
}

#[tokio::test]
async fn retry_delay_is_capped_at_ten_minutes() {
    let s = setup(|spec| {
        spec.max_retries = 100;
        spec.retry_delay = Duration::from_secs(1);
    });
    for (attempt, delay) in [
        (10, Duration::from_secs(512)),
        (11, MAX_RETRY_DELAY),
        (50, MAX_RETRY_DELAY),
        (100, MAX_RETRY_DELAY),
    ] {
        let outcome = s
            .harness
            .deliver(&delivery("A-1", "retry").attempt(attempt))
            .await;
        assert_eq!(
            outcome,
            Outcome::Retry {
                attempt,
                delay,
                error: "upstream unavailable".into(),
            }
        );
    }
    assert_eq!(MAX_RETRY_DELAY, Duration::from_secs(600));
    let outcome = s
        .harness
        .deliver(&delivery("A-1", "retry").attempt(101))
        .await;
    assert!(matches!(
        outcome,
        Outcome::DeadLetter {
            kind: DeadLetterKind::RetriesExhausted,
            attempts: 101,
            ..
        }
    ));
    assert_eq!(s.calls(), 5);
}

#[tokio::test]
async fn question_mark_on_a_std_error_is_transient() {
    let s = setup(|_| {});
    assert_eq!(
        s.harness.deliver_json(&event("A-1", "io")).await,
        Outcome::Retry {
            attempt: 1,
            delay: Duration::from_secs(1),
            error: "connection reset by peer".into(),
        }
    );
    // The error text carries the cause chain.
    assert_eq!(
        s.harness.deliver_json(&event("A-1", "io-chain")).await,
        Outcome::Retry {
            attempt: 1,
            delay: Duration::from_secs(1),
            error: "charge failed: connection reset by peer".into(),
        }
    );
    assert_eq!(s.calls(), 2);
}

#[tokio::test]
async fn transient_error_with_no_retries_is_retries_exhausted() {
    let s = setup(|spec| spec.max_retries = 0);
    assert_eq!(
        s.harness.deliver_json(&event("A-1", "io")).await,
        Outcome::DeadLetter {
            kind: DeadLetterKind::RetriesExhausted,
            error: "connection reset by peer".into(),
            attempts: 1,
        }
    );
    assert_eq!(s.calls(), 1);
}

// ---------------------------------------------------------------------------
// Reject -> DLQ at once
// ---------------------------------------------------------------------------

#[tokio::test]
async fn reject_dead_letters_on_the_first_attempt() {
    let s = setup(|spec| spec.max_retries = 3);
    assert_eq!(
        s.harness.deliver_json(&event("A-1", "reject")).await,
        Outcome::DeadLetter {
            kind: DeadLetterKind::Rejected,
            error: "negative amount 1250".into(),
            attempts: 1,
        }
    );
    assert_eq!(s.calls(), 1);
}

#[tokio::test]
async fn reject_on_a_later_attempt_counts_that_attempt() {
    let s = setup(|spec| spec.max_retries = 3);
    assert_eq!(
        s.harness
            .deliver(&delivery("A-1", "reject").attempt(3))
            .await,
        Outcome::DeadLetter {
            kind: DeadLetterKind::Rejected,
            error: "negative amount 1250".into(),
            attempts: 3,
        }
    );
    assert_eq!(s.calls(), 1);
}

// ---------------------------------------------------------------------------
// Panics -> transient; contained
// ---------------------------------------------------------------------------

#[tokio::test]
async fn panic_is_retried_with_its_message() {
    let s = setup(|spec| spec.max_retries = 3);
    assert_eq!(
        s.harness.deliver_json(&event("A-1", "panic")).await,
        Outcome::Retry {
            attempt: 1,
            delay: Duration::from_secs(1),
            error: "panic: kaboom".into(),
        }
    );
    // The key was released: the retry runs the handler again.
    assert_eq!(
        s.harness
            .deliver(&delivery("A-1", "panic").attempt(2))
            .await,
        Outcome::Retry {
            attempt: 2,
            delay: Duration::from_secs(2),
            error: "panic: kaboom".into(),
        }
    );
    // Retries used up by panics: the kind is retries-exhausted.
    assert_eq!(
        s.harness
            .deliver(&delivery("A-1", "panic").attempt(4))
            .await,
        Outcome::DeadLetter {
            kind: DeadLetterKind::RetriesExhausted,
            error: "panic: kaboom".into(),
            attempts: 4,
        }
    );
    assert_eq!(s.calls(), 3);
    // The process (and the pipeline) keeps working.
    assert_eq!(
        s.harness.deliver_json(&event("A-2", "ok")).await,
        Outcome::Ack
    );
    assert_eq!(s.calls(), 4);
}

#[tokio::test]
async fn panic_with_no_retries_is_dead_letter_panic() {
    let s = setup(|spec| spec.max_retries = 0);
    assert_eq!(
        s.harness.deliver_json(&event("A-1", "panic")).await,
        Outcome::DeadLetter {
            kind: DeadLetterKind::Panic,
            error: "panic: kaboom".into(),
            attempts: 1,
        }
    );
    assert_eq!(
        s.harness.deliver_json(&event("A-2", "ok")).await,
        Outcome::Ack
    );
    assert_eq!(s.calls(), 2);
}

#[tokio::test]
async fn panic_with_a_string_payload() {
    let s = setup(|spec| spec.max_retries = 0);
    // `panic!("{}", order_id)` with a run-time value carries a `String`.
    assert_eq!(
        s.harness
            .deliver_json(&event("kaboom at run time", "panic-string"))
            .await,
        Outcome::DeadLetter {
            kind: DeadLetterKind::Panic,
            error: "panic: kaboom at run time".into(),
            attempts: 1,
        }
    );
    assert_eq!(
        s.harness.deliver_json(&event("A-1", "panic-other")).await,
        Outcome::DeadLetter {
            kind: DeadLetterKind::Panic,
            error: "panic: (non-string panic payload)".into(),
            attempts: 1,
        }
    );
    assert_eq!(
        s.harness.deliver_json(&event("A-2", "ok")).await,
        Outcome::Ack
    );
    assert_eq!(s.calls(), 3);
}

// ---------------------------------------------------------------------------
// Timeouts -> transient
// ---------------------------------------------------------------------------

#[tokio::test]
async fn timeout_is_retried() {
    let s = setup(|spec| {
        spec.timeout = Duration::from_millis(100);
        spec.max_retries = 3;
    });
    let started = Instant::now();
    assert_eq!(
        s.harness.deliver_json(&event("A-1", "sleep")).await,
        Outcome::Retry {
            attempt: 1,
            delay: Duration::from_secs(1),
            error: "timeout after 100ms".into(),
        }
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(
        s.harness
            .deliver(&delivery("A-1", "sleep").attempt(4))
            .await,
        Outcome::DeadLetter {
            kind: DeadLetterKind::RetriesExhausted,
            error: "timeout after 100ms".into(),
            attempts: 4,
        }
    );
    assert_eq!(s.calls(), 2);
}

#[tokio::test]
async fn timeout_with_no_retries_is_dead_letter_timeout() {
    let s = setup(|spec| {
        spec.timeout = Duration::from_millis(100);
        spec.max_retries = 0;
    });
    assert_eq!(
        s.harness.deliver_json(&event("A-1", "sleep")).await,
        Outcome::DeadLetter {
            kind: DeadLetterKind::Timeout,
            error: "timeout after 100ms".into(),
            attempts: 1,
        }
    );
    assert_eq!(s.calls(), 1);
    // The pipeline keeps working after a timed-out handler.
    assert_eq!(
        s.harness.deliver_json(&event("A-1", "ok")).await,
        Outcome::Ack
    );
}

// ---------------------------------------------------------------------------
// Idempotency rows: duplicate, key busy, store unreachable
// ---------------------------------------------------------------------------

#[tokio::test]
async fn duplicate_after_success_skips_the_handler() {
    let s = setup(|_| {});
    assert_eq!(
        s.harness.deliver_json(&event("A-1", "ok")).await,
        Outcome::Ack
    );
    assert_eq!(
        s.harness.deliver_json(&event("A-1", "ok")).await,
        Outcome::Duplicate
    );
    // Also on a later attempt, and with other non-key fields.
    let other_amount = json!({"order_id": "A-1", "event_type": "ok", "amount_cents": 99});
    assert_eq!(
        s.harness
            .deliver(&TestDelivery::json(&other_amount).unwrap().attempt(2))
            .await,
        Outcome::Duplicate
    );
    assert_eq!(s.calls(), 1);
    // Another business key is not a duplicate.
    assert_eq!(
        s.harness.deliver_json(&event("A-2", "ok")).await,
        Outcome::Ack
    );
    assert_eq!(s.calls(), 2);
}

#[tokio::test]
async fn no_idempotency_fields_means_no_duplicate_check() {
    let store = Arc::new(MemoryStore::new());
    let s = setup_with_store(|spec| spec.idempotency = &[], store.clone());
    assert_eq!(
        s.harness.deliver_json(&event("A-1", "ok")).await,
        Outcome::Ack
    );
    assert_eq!(
        s.harness.deliver_json(&event("A-1", "ok")).await,
        Outcome::Ack
    );
    assert_eq!(s.calls(), 2);
    assert!(store.is_empty());
}

#[tokio::test]
async fn same_key_in_flight_is_requeued_as_busy() {
    let s = setup(|spec| spec.retry_delay = Duration::from_millis(750));
    let (held, again) = (event("A-1", "hold"), event("A-1", "hold"));
    let first = s.harness.deliver_json(&held);
    let second = s.harness.deliver_json(&again);
    let (first, second) = s.shared.gate.while_held(HOLD_TIMEOUT, first, second).await;
    assert_eq!(first, Outcome::Ack);
    assert_eq!(
        second,
        Outcome::Requeue {
            delay: Duration::from_millis(750),
            reason: RequeueReason::KeyBusy,
        }
    );
    assert_eq!(s.calls(), 1);
    // Once the first is done, the requeued copy is a duplicate.
    assert_eq!(
        s.harness.deliver_json(&event("A-1", "hold")).await,
        Outcome::Duplicate
    );
    assert_eq!(s.calls(), 1);
}

#[tokio::test]
async fn busy_requeue_does_not_change_the_attempt() {
    let s = setup(|_| {});
    let (held, again) = (event("A-1", "hold"), delivery("A-1", "hold").attempt(3));
    let first = s.harness.deliver_json(&held);
    let second = s.harness.deliver(&again);
    let (first, second) = s.shared.gate.while_held(HOLD_TIMEOUT, first, second).await;
    assert_eq!(first, Outcome::Ack);
    // Not a Retry: the attempt is not counted, and the first delay is used.
    assert_eq!(
        second,
        Outcome::Requeue {
            delay: Duration::from_secs(1),
            reason: RequeueReason::KeyBusy,
        }
    );
    assert_eq!(s.calls(), 1);
}

#[tokio::test]
async fn unreachable_store_requeues_without_calling_the_handler() {
    let store = Arc::new(RedisStore::new("redis://127.0.0.1:1/").unwrap());
    let s = setup_with_store(|spec| spec.retry_delay = Duration::from_secs(2), store);
    let started = Instant::now();
    let outcome = s.harness.deliver_json(&event("A-1", "ok")).await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "an unreachable store must not hang the pipeline"
    );
    let (delay, error) = store_unavailable(outcome);
    assert_eq!(delay, Duration::from_secs(2));
    assert!(error.contains("127.0.0.1:1"), "{error}");
    assert_eq!(s.calls(), 0, "fail closed: the handler must not run");
}

// ---------------------------------------------------------------------------
// Context
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
struct Seen {
    queue: String,
    attempt: u32,
    message_id: Option<String>,
    correlation_id: Option<String>,
    redelivered: bool,
    tenant: Option<FieldValue>,
}

/// What the `charged` handler saw of each delivery it ran.
fn seen(s: &Setup) -> Vec<Seen> {
    let contexts = s.shared.contexts.lock().unwrap();
    contexts
        .iter()
        .map(|ctx| Seen {
            queue: ctx.queue().to_owned(),
            attempt: ctx.attempt(),
            message_id: ctx.message_id().map(str::to_owned),
            correlation_id: ctx.correlation_id().map(str::to_owned),
            redelivered: ctx.redelivered(),
            tenant: ctx.header("x-tenant").cloned(),
        })
        .collect()
}

#[tokio::test]
async fn context_carries_the_delivery_and_publishes() {
    let s = setup(|_| {});
    let d = delivery("A-1", "charged")
        .message_id("msg-1")
        .correlation_id("corr-9")
        .redelivered(true)
        .header("x-tenant", FieldValue::from("acme"))
        .attempt(2);
    assert_eq!(s.harness.deliver(&d).await, Outcome::Ack);
    assert_eq!(
        seen(&s),
        vec![Seen {
            queue: "order".into(),
            attempt: 2,
            message_id: Some("msg-1".into()),
            correlation_id: Some("corr-9".into()),
            redelivered: true,
            tenant: Some(FieldValue::from("acme")),
        }]
    );
    let published = s.harness.published();
    let sent: Vec<(&str, &str, &[u8])> = published
        .iter()
        .map(|p| {
            (
                p.exchange.as_str(),
                p.routing_key.as_str(),
                p.body.as_slice(),
            )
        })
        .collect();
    let body = serde_json::to_vec(&json!({"order_id": "A-1", "status": "charged"})).unwrap();
    assert_eq!(sent, vec![("events", "order.charged", body.as_slice())]);
    assert_eq!(
        published[0].properties.content_type.as_deref(),
        Some("application/json")
    );
    assert!(published[0].properties.message_id.is_some());
    assert_eq!(
        published[0].json::<serde_json::Value>().unwrap(),
        json!({"order_id": "A-1", "status": "charged"})
    );
}

#[tokio::test]
async fn context_of_a_bare_delivery() {
    let s = setup(|_| {});
    assert_eq!(
        s.harness.deliver_json(&event("A-1", "charged")).await,
        Outcome::Ack
    );
    assert_eq!(
        seen(&s),
        vec![Seen {
            queue: "order".into(),
            attempt: 1,
            message_id: None,
            correlation_id: None,
            redelivered: false,
            tenant: None,
        }]
    );
    assert_eq!(s.harness.published().len(), 1);
    // A duplicate does not run the handler, so it publishes nothing.
    assert_eq!(
        s.harness.deliver_json(&event("A-1", "charged")).await,
        Outcome::Duplicate
    );
    assert_eq!(seen(&s).len(), 1);
    assert_eq!(s.harness.published().len(), 1);
}

#[tokio::test]
async fn renamed_queue_is_what_the_context_sees() {
    let s = setup(|spec| {
        spec.rename_queue("order-renamed");
        assert_eq!(spec.dlq, "dlq.order-renamed");
    });
    assert_eq!(
        s.harness.deliver_json(&event("A-1", "charged")).await,
        Outcome::Ack
    );
    assert_eq!(seen(&s)[0].queue, "order-renamed");
}

// ---------------------------------------------------------------------------
// The attempt header
// ---------------------------------------------------------------------------

#[tokio::test]
async fn absent_attempt_header_means_attempt_one() {
    let s = setup(|_| {});
    // No x-mqkit-attempt header at all.
    let d = delivery("A-1", "retry");
    assert_eq!(
        s.harness.deliver(&d).await,
        Outcome::Retry {
            attempt: 1,
            delay: Duration::from_secs(1),
            error: "upstream unavailable".into(),
        }
    );
    let s = setup(|spec| spec.max_retries = 0);
    assert_eq!(
        s.harness.deliver_bytes(b"{}".to_vec()).await,
        Outcome::DeadLetter {
            kind: DeadLetterKind::Decode,
            error: "cannot decode OrderEvent: JSON does not match the type: missing field `order_id` at line 1 column 2".into(),
            attempts: 1,
        }
    );
    assert_eq!(
        s.harness.deliver(&d).await,
        Outcome::DeadLetter {
            kind: DeadLetterKind::RetriesExhausted,
            error: "upstream unavailable".into(),
            attempts: 1,
        }
    );
}

#[tokio::test]
async fn attempt_header_in_other_integer_and_string_forms() {
    let s = setup(|_| {});
    for (value, attempt) in [
        (FieldValue::I32(2), 2),
        (FieldValue::U8(3), 3),
        (FieldValue::from("2"), 2),
        (FieldValue::I64(0), 1),
        (FieldValue::Bool(true), 1),
    ] {
        let d = delivery("A-1", "retry").header("x-mqkit-attempt", value);
        let outcome = s.harness.deliver(&d).await;
        assert!(
            matches!(outcome, Outcome::Retry { attempt: a, .. } if a == attempt),
            "expected attempt {attempt}, got {outcome:?}"
        );
    }
}
