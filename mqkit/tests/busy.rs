//! Idempotency records mqkit never writes, and keys that stay busy, through
//! the pipeline on the in-process store (the Redis store's twin tests are in
//! the integration crate, `tests/stuck.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mqkit::testing::{TestDelivery, TestHarness};
use mqkit::{
    Claim, Consumer as _, DeadLetterKind, FieldValue, IdempotencyStore, MemoryStore, Outcome,
    RequeueReason,
};

static CALLS: AtomicUsize = AtomicUsize::new(0);

#[derive(serde::Deserialize, serde::Serialize)]
struct Payment {
    payment_id: String,
}

#[mqkit::consumer(queue = "busy.payments", idempotency = "payment_id", timeout = "1s")]
async fn on_payment(_p: Payment) -> Result<(), mqkit::HandlerError> {
    CALLS.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

fn harness(store: &Arc<MemoryStore>) -> TestHarness<on_payment> {
    TestHarness::with_store(on_payment {}, on_payment {}.spec(), store.clone())
}

fn delivery(id: &str) -> TestDelivery {
    TestDelivery::json(&Payment {
        payment_id: id.to_owned(),
    })
    .unwrap()
}

#[tokio::test]
async fn a_processing_lock_without_ttl_gets_the_lock_ttl_and_then_frees_the_message() {
    let store = Arc::new(MemoryStore::new());
    let key = "mqkit:idem:busy.payments:p-1";
    store.insert_raw(key, "processing", None);
    assert_eq!(store.ttl(key), None, "planted without expiry");
    let h = harness(&store);
    let outcome = h.deliver(&delivery("p-1")).await;
    assert!(
        matches!(
            outcome,
            Outcome::Requeue {
                reason: RequeueReason::KeyBusy,
                ..
            }
        ),
        "{outcome:?}"
    );
    // The lock now expires like mqkit's own: timeout 1 s + 5 s.
    let ttl = store.ttl(key).expect("the lock got a TTL");
    assert!(
        ttl > Duration::from_secs(5) && ttl <= Duration::from_secs(6),
        "{ttl:?}"
    );
    assert_eq!(store.value(key).as_deref(), Some("processing"));
}

#[tokio::test]
async fn after_the_given_ttl_the_message_is_handled_and_marked_done() {
    let store = Arc::new(MemoryStore::new());
    let key = "mqkit:idem:busy.payments:p-2";
    store.insert_raw(key, "processing", None);
    assert_eq!(
        store.claim(key, Duration::from_millis(50)).await.unwrap(),
        Claim::Busy
    );
    // MemoryStore uses std's clock, so wait for real.
    std::thread::sleep(Duration::from_millis(80));
    let before = CALLS.load(Ordering::SeqCst);
    let outcome = harness(&store).deliver(&delivery("p-2")).await;
    assert_eq!(outcome, Outcome::Ack);
    assert_eq!(CALLS.load(Ordering::SeqCst), before + 1);
    assert_eq!(store.value(key).as_deref(), Some("done"));
    let ttl = store.ttl(key).unwrap();
    assert!(
        ttl > Duration::from_secs(23 * 3600),
        "done keeps the idempotency TTL: {ttl:?}"
    );
}

#[tokio::test]
async fn a_foreign_value_is_dead_lettered_as_rejected_and_left_alone() {
    let store = Arc::new(MemoryStore::new());
    let key = "mqkit:idem:busy.payments:p-3";
    store.insert_raw(key, "garbage", None);
    let before = CALLS.load(Ordering::SeqCst);
    let outcome = harness(&store).deliver(&delivery("p-3")).await;
    let Outcome::DeadLetter {
        kind,
        error,
        attempts,
    } = outcome
    else {
        panic!("expected a dead letter, got {outcome:?}");
    };
    assert_eq!(kind, DeadLetterKind::Rejected);
    assert_eq!(attempts, 1);
    assert!(error.contains(key), "{error}");
    assert!(error.contains("\"garbage\""), "{error}");
    assert_eq!(CALLS.load(Ordering::SeqCst), before, "handler not called");
    assert_eq!(
        store.value(key).as_deref(),
        Some("garbage"),
        "record unchanged"
    );
    assert_eq!(store.ttl(key), None, "record unchanged");
}

#[tokio::test]
async fn a_long_foreign_value_is_cut_in_the_error() {
    let store = Arc::new(MemoryStore::new());
    store.insert_raw("mqkit:idem:busy.payments:p-4", &"x".repeat(10_000), None);
    let Outcome::DeadLetter { error, .. } = harness(&store).deliver(&delivery("p-4")).await else {
        panic!("expected a dead letter");
    };
    assert!(error.len() < 400, "{} bytes: {error}", error.len());
    assert!(
        error.contains(&format!("\"{}\"…", "x".repeat(64))),
        "{error}"
    );
}

fn millis_ago(d: Duration) -> i64 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    i64::try_from((now - d).as_millis()).unwrap()
}

#[tokio::test]
async fn a_key_busy_for_longer_than_three_lock_ttls_is_reported_once() {
    let store = Arc::new(MemoryStore::new());
    let key = "mqkit:idem:busy.payments:p-5";
    // Held by a live handler elsewhere (a lock with a TTL).
    store.insert_raw(key, "processing", Some(Duration::from_secs(600)));
    let h = harness(&store);
    // Lock TTL is 6 s: 3 lock TTLs are 18 s.
    let recent = delivery("p-5").header(
        "x-mqkit-busy-since",
        FieldValue::I64(millis_ago(Duration::from_secs(10))),
    );
    let outcome = h.deliver(&recent).await;
    assert!(
        matches!(
            outcome,
            Outcome::Requeue {
                reason: RequeueReason::KeyBusy,
                ..
            }
        ),
        "{outcome:?}"
    );
    let stuck = delivery("p-5")
        .header(
            "x-mqkit-busy-since",
            FieldValue::I64(millis_ago(Duration::from_secs(20))),
        )
        .header("x-mqkit-busy-requeues", FieldValue::I64(19));
    let outcome = h.deliver(&stuck).await;
    let Outcome::Requeue {
        reason: RequeueReason::KeyStuck { busy_for },
        delay,
    } = outcome
    else {
        panic!("expected a stuck-key requeue, got {outcome:?}");
    };
    assert!(busy_for >= Duration::from_secs(20), "{busy_for:?}");
    assert_eq!(
        delay,
        Duration::from_secs(1),
        "still through the first delay queue"
    );
    // Already reported: the next requeue is an ordinary one.
    let reported = delivery("p-5")
        .header(
            "x-mqkit-busy-since",
            FieldValue::I64(millis_ago(Duration::from_secs(30))),
        )
        .header("x-mqkit-busy-reported", FieldValue::Bool(true));
    let outcome = h.deliver(&reported).await;
    assert!(
        matches!(
            outcome,
            Outcome::Requeue {
                reason: RequeueReason::KeyBusy,
                ..
            }
        ),
        "{outcome:?}"
    );
}
