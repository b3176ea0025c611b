//! The idempotency scenarios, written once against [`Backend`] and run on
//! each store: the in-process `MemoryStore` (`mqkit/tests/idempotency.rs`)
//! and a real Redis (`tests/idempotency.rs` in the `mqkit-tests` crate, so
//! that `cargo test -p mqkit` needs no service).
//!
//! Included as `mod scenarios`, next to the fixture included as
//! `mod orders`; [`store_scenarios!`] generates one test per scenario.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mqkit::testing::{TestDelivery, TestHarness};
use mqkit::{Claim, ConsumerSpec, DeadLetterKind, IdempotencyStore, Outcome, RequeueReason};
use serde_json::json;

use crate::orders::{self, Orders, Shared};

/// A queue name no other test run uses.
pub(crate) fn unique_queue(tag: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "it-{tag}-{}-{}-{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// An order event without an amount.
pub(crate) fn event(order_id: &str, event_type: &str) -> serde_json::Value {
    json!({"order_id": order_id, "event_type": event_type})
}

/// One store under test, seen through the trait by the pipeline and
/// inspected directly by the test. Each test has its own queue, so its keys
/// are `mqkit:idem:{queue}:…`.
pub(crate) trait Backend {
    fn queue(&self) -> &str;

    /// The store as one more instance of the service would have it.
    fn store(&self) -> Arc<dyn IdempotencyStore>;

    /// The key's remaining time to live; `None` if it does not exist.
    async fn ttl(&self, key: &str) -> Option<Duration>;

    /// The stored value (`processing` / `done`).
    async fn value(&self, key: &str) -> Option<String>;

    /// Asserts the store holds no record of this test's queue.
    async fn assert_no_keys(&self);

    /// Deletes this test's records now and checks they are gone.
    async fn cleanup(self);

    /// The key for a message, spelled out by hand (`mqkit:idem:{queue}:{v1}:{v2}`).
    fn key(&self, order_id: &str, event_type: &str) -> String {
        format!("mqkit:idem:{}:{order_id}:{event_type}", self.queue())
    }

    async fn exists(&self, key: &str) -> bool {
        self.ttl(key).await.is_some()
    }

    fn spec(&self) -> ConsumerSpec {
        let mut spec = orders::spec(self.queue().to_owned());
        spec.idempotency_ttl = Duration::from_secs(3600);
        spec
    }

    /// A harness (one instance of the service) on a store from [`Backend::store`].
    fn instance(&self, shared: &Arc<Shared>, spec: ConsumerSpec) -> TestHarness<Orders> {
        Orders::harness(spec, shared, self.store())
    }
}

/// One `#[tokio::test]` per scenario, on the backend that the async
/// constructor `$new(tag)` returns.
macro_rules! store_scenarios {
    ($new:path) => {
        $crate::scenarios::store_scenarios!(
            @each $new;
            duplicate_after_success,
            concurrent_same_key_is_busy,
            transient_failure_releases_the_key,
            every_failure_kind_releases_the_key,
            lock_ttl_is_timeout_plus_five_seconds,
            done_record_lives_for_idempotency_ttl,
            done_record_expires,
            lock_held_by_another_instance_is_busy,
        );
    };
    (@each $new:path; $($scenario:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $scenario() {
                $crate::scenarios::$scenario($new(stringify!($scenario)).await).await;
            }
        )*
    };
}
pub(crate) use store_scenarios;

// ---------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------

pub(crate) async fn duplicate_after_success(b: impl Backend) {
    let shared = Arc::new(Shared::default());
    let first = b.instance(&shared, b.spec());
    let key = b.key("A-1", "created");

    assert!(!b.exists(&key).await);
    assert_eq!(
        first.deliver_json(&event("A-1", "created")).await,
        Outcome::Ack
    );
    assert_eq!(shared.calls(), 1);
    assert_eq!(b.value(&key).await.as_deref(), Some("done"));

    assert_eq!(
        first.deliver_json(&event("A-1", "created")).await,
        Outcome::Duplicate
    );
    // A later attempt of the same business event is a duplicate too.
    let retry = TestDelivery::json(&event("A-1", "created"))
        .unwrap()
        .attempt(3);
    assert_eq!(first.deliver(&retry).await, Outcome::Duplicate);
    // So is a delivery to another instance sharing the store.
    let second = b.instance(&shared, b.spec());
    assert_eq!(
        second.deliver_json(&event("A-1", "created")).await,
        Outcome::Duplicate
    );
    assert_eq!(shared.calls(), 1, "a duplicate must not run the handler");
    assert_eq!(b.value(&key).await.as_deref(), Some("done"));

    // Every key field counts.
    assert_eq!(
        second.deliver_json(&event("A-1", "shipped")).await,
        Outcome::Ack
    );
    assert_eq!(
        first.deliver_json(&event("A-2", "created")).await,
        Outcome::Ack
    );
    assert_eq!(shared.calls(), 3);
    b.cleanup().await;
}

pub(crate) async fn concurrent_same_key_is_busy(b: impl Backend) {
    let shared = Arc::new(Shared::default());
    let mut spec = b.spec();
    spec.retry_delay = Duration::from_millis(1500);
    let one = b.instance(&shared, spec.clone());
    let two = b.instance(&shared, spec);
    let key = b.key("A-1", "hold");

    let held = event("A-1", "hold");
    let second = async {
        assert_eq!(b.value(&key).await.as_deref(), Some("processing"));
        let busy = two.deliver_json(&event("A-1", "hold")).await;
        // The busy delivery must not have removed the running one's lock.
        assert_eq!(b.value(&key).await.as_deref(), Some("processing"));
        // Another key is not blocked by this one.
        let other = two.deliver_json(&event("A-2", "created")).await;
        (busy, other)
    };
    let (first, (busy, other)) = shared
        .gate
        .while_held(Duration::from_secs(20), one.deliver_json(&held), second)
        .await;

    assert_eq!(first, Outcome::Ack);
    assert_eq!(
        busy,
        Outcome::Requeue {
            delay: Duration::from_millis(1500),
            reason: RequeueReason::KeyBusy,
        }
    );
    assert_eq!(other, Outcome::Ack);
    assert_eq!(shared.calls(), 2, "hold ran once, A-2 once");
    assert_eq!(b.value(&key).await.as_deref(), Some("done"));
    // The requeued copy comes back after the first finished: a duplicate.
    assert_eq!(
        two.deliver_json(&event("A-1", "hold")).await,
        Outcome::Duplicate
    );
    assert_eq!(shared.calls(), 2);
    b.cleanup().await;
}

pub(crate) async fn transient_failure_releases_the_key(b: impl Backend) {
    let shared = Arc::new(Shared::default());
    let h = b.instance(&shared, b.spec());
    let key = b.key("A-1", "flaky");

    assert_eq!(
        h.deliver_json(&event("A-1", "flaky")).await,
        Outcome::Retry {
            attempt: 1,
            delay: Duration::from_secs(1),
            error: "flaky failure".into(),
        }
    );
    assert_eq!(shared.calls(), 1);
    assert!(!b.exists(&key).await, "a failed attempt deletes its lock");

    // The retry (attempt 2, possibly on another instance) runs the handler.
    let other = b.instance(&shared, b.spec());
    let retry = TestDelivery::json(&event("A-1", "flaky"))
        .unwrap()
        .attempt(2);
    assert_eq!(other.deliver(&retry).await, Outcome::Ack);
    assert_eq!(shared.calls(), 2);
    assert_eq!(b.value(&key).await.as_deref(), Some("done"));
    assert_eq!(h.deliver(&retry).await, Outcome::Duplicate);
    assert_eq!(shared.calls(), 2);
    b.cleanup().await;
}

pub(crate) async fn every_failure_kind_releases_the_key(b: impl Backend) {
    let shared = Arc::new(Shared::default());
    let mut spec = b.spec();
    spec.timeout = Duration::from_millis(200);
    let h = b.instance(&shared, spec);

    let outcome = h.deliver_json(&event("A-1", "reject")).await;
    assert_eq!(
        outcome,
        Outcome::DeadLetter {
            kind: DeadLetterKind::Rejected,
            error: "bad order".into(),
            attempts: 1,
        }
    );
    assert!(!b.exists(&b.key("A-1", "reject")).await);

    let outcome = h.deliver_json(&event("A-1", "panic")).await;
    assert_eq!(
        outcome,
        Outcome::Retry {
            attempt: 1,
            delay: Duration::from_secs(1),
            error: "panic: kaboom".into(),
        }
    );
    assert!(!b.exists(&b.key("A-1", "panic")).await);

    let outcome = h.deliver_json(&event("A-1", "sleep")).await;
    assert_eq!(
        outcome,
        Outcome::Retry {
            attempt: 1,
            delay: Duration::from_secs(1),
            error: "timeout after 200ms".into(),
        }
    );
    assert!(!b.exists(&b.key("A-1", "sleep")).await);

    // Undecodable bodies never touch the store.
    let outcome = h.deliver_bytes(b"{\"order_id\": 7}".to_vec()).await;
    assert!(matches!(
        outcome,
        Outcome::DeadLetter {
            kind: DeadLetterKind::Decode,
            attempts: 1,
            ..
        }
    ));
    assert_eq!(shared.calls(), 3);
    b.assert_no_keys().await;
    b.cleanup().await;
}

/// Asserts `ttl` is `expected` (within the second or two a test can take).
fn assert_ttl_near(ttl: Option<Duration>, expected: Duration) {
    let ttl = ttl.expect("the key exists");
    assert!(
        ttl <= expected && ttl + Duration::from_secs(2) >= expected,
        "TTL {ttl:?} should be about {expected:?}"
    );
}

pub(crate) async fn lock_ttl_is_timeout_plus_five_seconds(b: impl Backend) {
    for (order_id, timeout) in [("A-1", 30), ("A-2", 90)] {
        let shared = Arc::new(Shared::default());
        let mut spec = b.spec();
        spec.timeout = Duration::from_secs(timeout);
        assert_eq!(spec.lock_ttl(), Duration::from_secs(timeout + 5));
        let h = b.instance(&shared, spec);
        let key = b.key(order_id, "hold");

        let held = event(order_id, "hold");
        let probe = async { (b.ttl(&key).await, b.value(&key).await) };
        let (outcome, (ttl, value)) = shared
            .gate
            .while_held(Duration::from_secs(20), h.deliver_json(&held), probe)
            .await;
        assert_eq!(outcome, Outcome::Ack);
        assert_eq!(value.as_deref(), Some("processing"));
        assert_ttl_near(ttl, Duration::from_secs(timeout + 5));
    }
    b.cleanup().await;
}

pub(crate) async fn done_record_lives_for_idempotency_ttl(b: impl Backend) {
    let shared = Arc::new(Shared::default());
    let mut spec = b.spec();
    spec.idempotency_ttl = Duration::from_secs(2 * 3600);
    let h = b.instance(&shared, spec);
    let key = b.key("A-1", "created");

    assert_eq!(h.deliver_json(&event("A-1", "created")).await, Outcome::Ack);
    assert_eq!(b.value(&key).await.as_deref(), Some("done"));
    assert_ttl_near(b.ttl(&key).await, Duration::from_secs(2 * 3600));

    // The default is 24 h.
    let spec = orders::spec(b.queue().to_owned());
    assert_eq!(spec.idempotency_ttl, Duration::from_secs(24 * 3600));
    let h = b.instance(&shared, spec);
    let key = b.key("A-2", "created");
    assert_eq!(h.deliver_json(&event("A-2", "created")).await, Outcome::Ack);
    assert_ttl_near(b.ttl(&key).await, Duration::from_secs(24 * 3600));
    b.cleanup().await;
}

pub(crate) async fn done_record_expires(b: impl Backend) {
    let shared = Arc::new(Shared::default());
    let mut spec = b.spec();
    spec.idempotency_ttl = Duration::from_secs(1);
    let h = b.instance(&shared, spec);
    let key = b.key("A-1", "created");

    assert_eq!(h.deliver_json(&event("A-1", "created")).await, Outcome::Ack);
    assert_eq!(
        h.deliver_json(&event("A-1", "created")).await,
        Outcome::Duplicate
    );
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert!(!b.exists(&key).await, "the done record expired");
    // After expiry the same business key is handled again.
    assert_eq!(h.deliver_json(&event("A-1", "created")).await, Outcome::Ack);
    assert_eq!(shared.calls(), 2);
    b.cleanup().await;
}

pub(crate) async fn lock_held_by_another_instance_is_busy(b: impl Backend) {
    // Another instance claimed the key (e.g. it was killed mid-handler and
    // its lock has not expired yet).
    let other = b.store();
    let key = b.key("A-1", "created");
    assert_eq!(
        other.claim(&key, Duration::from_secs(35)).await.unwrap(),
        Claim::Acquired
    );

    let shared = Arc::new(Shared::default());
    let h = b.instance(&shared, b.spec());
    let busy = TestDelivery::json(&event("A-1", "created"))
        .unwrap()
        .attempt(2);
    assert_eq!(
        h.deliver(&busy).await,
        Outcome::Requeue {
            delay: Duration::from_secs(1),
            reason: RequeueReason::KeyBusy,
        }
    );
    assert_eq!(shared.calls(), 0);
    assert_eq!(b.value(&key).await.as_deref(), Some("processing"));

    other.release(&key).await.unwrap();
    assert_eq!(h.deliver(&busy).await, Outcome::Ack);
    assert_eq!(shared.calls(), 1);
    b.cleanup().await;
}
