//! Idempotency behaviour through the pipeline, run once against the
//! in-process [`MemoryStore`] and once against a real Redis on
//! 127.0.0.1:6379 ([`RedisStore`]), plus Redis-only checks (key format,
//! stored values, TTLs through `TTL`, an unreachable server).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use deadpool_redis::redis;
use mqkit::decode_json;
use mqkit::testing::{TestDelivery, TestHarness};
use mqkit::{Claim, KeyBuilder};
use mqkit::{
    Consumer, ConsumerSpec, Context, DeadLetterKind, DecodeError, HandlerError, IdempotencyStore,
    MemoryStore, Outcome, RedisStore, RequeueReason,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::Notify;

const REDIS_URL: &str = "redis://127.0.0.1:6379";

// ---------------------------------------------------------------------------
// Test consumer: behaviour chosen by `event_type`.
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize, Deserialize)]
struct OrderEvent {
    order_id: String,
    event_type: String,
}

#[derive(Debug, Default)]
struct Gate {
    started: Notify,
    release: Notify,
}

/// Shared by every "instance" (harness) of the consumer in one test.
#[derive(Debug, Default)]
struct Shared {
    calls: AtomicUsize,
    flaky_failed: AtomicBool,
    gate: Gate,
}

#[derive(Debug, Clone)]
struct Orders {
    spec: ConsumerSpec,
    shared: Arc<Shared>,
}

impl Consumer for Orders {
    type Message = OrderEvent;

    fn spec(&self) -> ConsumerSpec {
        self.spec.clone()
    }

    fn decode(&self, body: &[u8]) -> Result<OrderEvent, DecodeError> {
        decode_json(body)
    }

    fn idempotency_key(&self, msg: &OrderEvent, key: &mut KeyBuilder) {
        key.push(&msg.order_id);
        key.push(&msg.event_type);
    }

    fn handle(
        &self,
        msg: OrderEvent,
        _ctx: Context,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send + 'static {
        let shared = self.shared.clone();
        async move {
            shared.calls.fetch_add(1, Ordering::SeqCst);
            match msg.event_type.as_str() {
                "hold" => {
                    shared.gate.started.notify_one();
                    shared.gate.release.notified().await;
                    Ok(())
                }
                // Fails (transiently) the first time only.
                "flaky" => {
                    if shared.flaky_failed.swap(true, Ordering::SeqCst) {
                        Ok(())
                    } else {
                        Err(std::io::Error::other("flaky failure").into())
                    }
                }
                "reject" => Err(HandlerError::reject("bad order")),
                "panic" => panic!("kaboom"),
                "sleep" => {
                    tokio::time::sleep(Duration::from_secs(10)).await;
                    Ok(())
                }
                _ => Ok(()),
            }
        }
    }
}

fn event(order_id: &str, event_type: &str) -> serde_json::Value {
    json!({"order_id": order_id, "event_type": event_type})
}

// ---------------------------------------------------------------------------
// Backends: the same scenarios against both stores.
// ---------------------------------------------------------------------------

/// A queue name no other test run uses.
fn unique_queue(tag: &str) -> String {
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

enum Kind {
    Memory(Arc<MemoryStore>),
    Redis(deadpool_redis::Pool),
}

/// One store under test, seen through the trait by the pipeline and
/// inspected directly by the test.
struct Backend {
    queue: String,
    kind: Kind,
    _cleanup: Option<RedisCleanup>,
}

/// Deletes every key of the test's queue, also when the test fails.
struct RedisCleanup {
    pattern: String,
}

impl Drop for RedisCleanup {
    fn drop(&mut self) {
        let Ok(client) = redis::Client::open(REDIS_URL) else {
            return;
        };
        let Ok(mut conn) = client.get_connection() else {
            return;
        };
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(&self.pattern)
            .query(&mut conn)
            .unwrap_or_default();
        if !keys.is_empty() {
            let _: Result<(), _> = redis::cmd("DEL").arg(&keys).query(&mut conn);
        }
    }
}

impl Backend {
    fn memory(tag: &str) -> Self {
        Backend {
            queue: unique_queue(tag),
            kind: Kind::Memory(Arc::new(MemoryStore::new())),
            _cleanup: None,
        }
    }

    async fn redis(tag: &str) -> Self {
        let queue = unique_queue(tag);
        let pool = deadpool_redis::Config::from_url(REDIS_URL)
            .create_pool(Some(deadpool_redis::Runtime::Tokio1))
            .unwrap();
        let mut conn = pool
            .get()
            .await
            .expect("these tests need Redis on 127.0.0.1:6379");
        let pong: String = redis::cmd("PING").query_async(&mut *conn).await.unwrap();
        assert_eq!(pong, "PONG");
        Backend {
            _cleanup: Some(RedisCleanup {
                pattern: format!("mqkit:idem:{queue}:*"),
            }),
            queue,
            kind: Kind::Redis(pool),
        }
    }

    /// The store as one more instance of the service would have it: a new
    /// [`RedisStore`] (its own connection pool) for Redis, the one shared
    /// in-process store for memory.
    fn store(&self) -> Arc<dyn IdempotencyStore> {
        match &self.kind {
            Kind::Memory(store) => store.clone(),
            Kind::Redis(_) => Arc::new(RedisStore::new(REDIS_URL).unwrap()),
        }
    }

    fn is_redis(&self) -> bool {
        matches!(self.kind, Kind::Redis(_))
    }

    /// The key for a message, spelled out by hand (`mqkit:idem:{queue}:{v1}:{v2}`).
    fn key(&self, order_id: &str, event_type: &str) -> String {
        format!("mqkit:idem:{}:{order_id}:{event_type}", self.queue)
    }

    /// The key's remaining time to live; `None` if it does not exist.
    async fn ttl(&self, key: &str) -> Option<Duration> {
        match &self.kind {
            Kind::Memory(store) => store.ttl(key),
            Kind::Redis(pool) => {
                let mut conn = pool.get().await.unwrap();
                let ttl: i64 = redis::cmd("TTL")
                    .arg(key)
                    .query_async(&mut *conn)
                    .await
                    .unwrap();
                match ttl {
                    -2 => None,
                    -1 => panic!("idempotency key {key} has no expiry"),
                    secs => Some(Duration::from_secs(secs.try_into().unwrap())),
                }
            }
        }
    }

    async fn exists(&self, key: &str) -> bool {
        self.ttl(key).await.is_some()
    }

    /// The stored value (`processing` / `done`). Redis is asked with `GET`;
    /// the memory store does not expose values, so it is asked through the
    /// trait: `Busy` means `processing`, `Done` means `done` (neither changes
    /// the record).
    async fn value(&self, key: &str) -> Option<String> {
        match &self.kind {
            Kind::Memory(store) => {
                store.ttl(key)?;
                match store.claim(key, Duration::from_secs(1)).await.unwrap() {
                    Claim::Busy => Some("processing".into()),
                    Claim::Done => Some("done".into()),
                    Claim::Acquired => panic!("claim acquired a key that had a live record"),
                }
            }
            Kind::Redis(pool) => {
                let mut conn = pool.get().await.unwrap();
                redis::cmd("GET")
                    .arg(key)
                    .query_async(&mut *conn)
                    .await
                    .unwrap()
            }
        }
    }

    /// Every key of this test's queue.
    async fn keys(&self) -> Vec<String> {
        match &self.kind {
            Kind::Memory(_) => unreachable!("only for Redis"),
            Kind::Redis(pool) => {
                let mut conn = pool.get().await.unwrap();
                let mut keys: Vec<String> = redis::cmd("KEYS")
                    .arg(format!("mqkit:idem:{}:*", self.queue))
                    .query_async(&mut *conn)
                    .await
                    .unwrap();
                keys.sort();
                keys
            }
        }
    }

    /// Deletes this test's keys now and checks they are gone.
    async fn cleanup(self) {
        if let Kind::Redis(pool) = &self.kind {
            let keys = self.keys().await;
            if !keys.is_empty() {
                let mut conn = pool.get().await.unwrap();
                let _: () = redis::cmd("DEL")
                    .arg(&keys)
                    .query_async(&mut *conn)
                    .await
                    .unwrap();
            }
            assert!(self.keys().await.is_empty());
        }
    }

    fn spec(&self) -> ConsumerSpec {
        let mut spec = ConsumerSpec::new(self.queue.clone());
        spec.idempotency = &["order_id", "event_type"];
        spec.idempotency_ttl = Duration::from_secs(3600);
        spec
    }

    /// A harness (one instance of the service) on a store from [`Backend::store`].
    fn instance(&self, shared: &Arc<Shared>, spec: ConsumerSpec) -> TestHarness<Orders> {
        let consumer = Orders {
            spec: spec.clone(),
            shared: shared.clone(),
        };
        TestHarness::with_store(consumer, spec, self.store())
    }
}

fn calls(shared: &Shared) -> usize {
    shared.calls.load(Ordering::SeqCst)
}

/// Generates `memory_store::<scenario>` and `redis_store::<scenario>` tests.
macro_rules! for_both_stores {
    ($($scenario:ident),* $(,)?) => {
        mod memory_store {
            $(
                #[tokio::test]
                async fn $scenario() {
                    super::$scenario(super::Backend::memory(stringify!($scenario))).await;
                }
            )*
        }
        mod redis_store {
            $(
                #[tokio::test]
                async fn $scenario() {
                    super::$scenario(super::Backend::redis(stringify!($scenario)).await).await;
                }
            )*
        }
    };
}

for_both_stores!(
    duplicate_after_success,
    concurrent_same_key_is_busy,
    transient_failure_releases_the_key,
    every_failure_kind_releases_the_key,
    lock_ttl_is_timeout_plus_five_seconds,
    done_record_lives_for_idempotency_ttl,
    done_record_expires,
    lock_held_by_another_instance_is_busy,
);

// ---------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------

async fn duplicate_after_success(b: Backend) {
    let shared = Arc::new(Shared::default());
    let first = b.instance(&shared, b.spec());
    let key = b.key("A-1", "created");

    assert!(!b.exists(&key).await);
    assert_eq!(
        first.deliver_json(&event("A-1", "created")).await,
        Outcome::Ack
    );
    assert_eq!(calls(&shared), 1);
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
    assert_eq!(calls(&shared), 1, "a duplicate must not run the handler");
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
    assert_eq!(calls(&shared), 3);
    b.cleanup().await;
}

async fn concurrent_same_key_is_busy(b: Backend) {
    let shared = Arc::new(Shared::default());
    let mut spec = b.spec();
    spec.retry_delay = Duration::from_millis(1500);
    let one = b.instance(&shared, spec.clone());
    let two = b.instance(&shared, spec);
    let key = b.key("A-1", "hold");

    let held = event("A-1", "hold");
    let first = one.deliver_json(&held);
    let second = async {
        shared.gate.started.notified().await;
        assert_eq!(b.value(&key).await.as_deref(), Some("processing"));
        let busy = two.deliver_json(&event("A-1", "hold")).await;
        // The busy delivery must not have removed the running one's lock.
        assert_eq!(b.value(&key).await.as_deref(), Some("processing"));
        // Another key is not blocked by this one.
        let other = two.deliver_json(&event("A-2", "created")).await;
        shared.gate.release.notify_one();
        (busy, other)
    };
    let (first, (busy, other)) = tokio::time::timeout(Duration::from_secs(20), async {
        tokio::join!(first, second)
    })
    .await
    .expect("the held handler was released");

    assert_eq!(first, Outcome::Ack);
    assert_eq!(
        busy,
        Outcome::Requeue {
            delay: Duration::from_millis(1500),
            reason: RequeueReason::KeyBusy,
        }
    );
    assert_eq!(other, Outcome::Ack);
    assert_eq!(calls(&shared), 2, "hold ran once, A-2 once");
    assert_eq!(b.value(&key).await.as_deref(), Some("done"));
    // The requeued copy comes back after the first finished: a duplicate.
    assert_eq!(
        two.deliver_json(&event("A-1", "hold")).await,
        Outcome::Duplicate
    );
    assert_eq!(calls(&shared), 2);
    b.cleanup().await;
}

async fn transient_failure_releases_the_key(b: Backend) {
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
    assert_eq!(calls(&shared), 1);
    assert!(!b.exists(&key).await, "a failed attempt deletes its lock");

    // The retry (attempt 2, possibly on another instance) runs the handler.
    let other = b.instance(&shared, b.spec());
    let retry = TestDelivery::json(&event("A-1", "flaky"))
        .unwrap()
        .attempt(2);
    assert_eq!(other.deliver(&retry).await, Outcome::Ack);
    assert_eq!(calls(&shared), 2);
    assert_eq!(b.value(&key).await.as_deref(), Some("done"));
    assert_eq!(h.deliver(&retry).await, Outcome::Duplicate);
    assert_eq!(calls(&shared), 2);
    b.cleanup().await;
}

async fn every_failure_kind_releases_the_key(b: Backend) {
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
    assert_eq!(calls(&shared), 3);
    if b.is_redis() {
        assert_eq!(b.keys().await, Vec::<String>::new());
    } else if let Kind::Memory(store) = &b.kind {
        assert!(store.is_empty());
    }
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

async fn lock_ttl_is_timeout_plus_five_seconds(b: Backend) {
    for (order_id, timeout) in [("A-1", 30), ("A-2", 90)] {
        let shared = Arc::new(Shared::default());
        let mut spec = b.spec();
        spec.timeout = Duration::from_secs(timeout);
        assert_eq!(spec.lock_ttl(), Duration::from_secs(timeout + 5));
        let h = b.instance(&shared, spec);
        let key = b.key(order_id, "hold");

        let held = event(order_id, "hold");
        let run = h.deliver_json(&held);
        let probe = async {
            shared.gate.started.notified().await;
            let ttl = b.ttl(&key).await;
            let value = b.value(&key).await;
            shared.gate.release.notify_one();
            (ttl, value)
        };
        let (outcome, (ttl, value)) =
            tokio::time::timeout(Duration::from_secs(20), async { tokio::join!(run, probe) })
                .await
                .expect("the held handler was released");
        assert_eq!(outcome, Outcome::Ack);
        assert_eq!(value.as_deref(), Some("processing"));
        assert_ttl_near(ttl, Duration::from_secs(timeout + 5));
    }
    b.cleanup().await;
}

async fn done_record_lives_for_idempotency_ttl(b: Backend) {
    let shared = Arc::new(Shared::default());
    let mut spec = b.spec();
    spec.idempotency_ttl = Duration::from_secs(2 * 3600);
    let h = b.instance(&shared, spec);
    let key = b.key("A-1", "created");

    assert_eq!(h.deliver_json(&event("A-1", "created")).await, Outcome::Ack);
    assert_eq!(b.value(&key).await.as_deref(), Some("done"));
    assert_ttl_near(b.ttl(&key).await, Duration::from_secs(2 * 3600));

    // The default is 24 h.
    let spec = {
        let mut spec = ConsumerSpec::new(b.queue.clone());
        spec.idempotency = &["order_id", "event_type"];
        spec
    };
    assert_eq!(spec.idempotency_ttl, Duration::from_secs(24 * 3600));
    let h = b.instance(&shared, spec);
    let key = b.key("A-2", "created");
    assert_eq!(h.deliver_json(&event("A-2", "created")).await, Outcome::Ack);
    assert_ttl_near(b.ttl(&key).await, Duration::from_secs(24 * 3600));
    b.cleanup().await;
}

async fn done_record_expires(b: Backend) {
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
    assert_eq!(calls(&shared), 2);
    b.cleanup().await;
}

async fn lock_held_by_another_instance_is_busy(b: Backend) {
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
    assert_eq!(calls(&shared), 0);
    assert_eq!(b.value(&key).await.as_deref(), Some("processing"));

    other.release(&key).await.unwrap();
    assert_eq!(h.deliver(&busy).await, Outcome::Ack);
    assert_eq!(calls(&shared), 1);
    b.cleanup().await;
}

// ---------------------------------------------------------------------------
// Redis only
// ---------------------------------------------------------------------------

#[tokio::test]
async fn redis_key_format_value_and_ttl() {
    let b = Backend::redis("keyfmt").await;
    let shared = Arc::new(Shared::default());
    let h = b.instance(&shared, b.spec());

    assert_eq!(h.deliver_json(&event("A-1", "created")).await, Outcome::Ack);
    // Separators inside values are escaped so field tuples never collide.
    assert_eq!(h.deliver_json(&event("B:2", "paid%")).await, Outcome::Ack);

    let exact = format!("mqkit:idem:{}:A-1:created", b.queue);
    let escaped = format!("mqkit:idem:{}:B%3A2:paid%25", b.queue);
    let mut expected = vec![exact.clone(), escaped.clone()];
    expected.sort();
    assert_eq!(b.keys().await, expected);

    let Kind::Redis(pool) = &b.kind else {
        unreachable!()
    };
    let mut conn = pool.get().await.unwrap();
    for key in [&exact, &escaped] {
        let value: String = redis::cmd("GET")
            .arg(key)
            .query_async(&mut *conn)
            .await
            .unwrap();
        assert_eq!(value, "done");
        let ttl: i64 = redis::cmd("TTL")
            .arg(key)
            .query_async(&mut *conn)
            .await
            .unwrap();
        assert!((3598..=3600).contains(&ttl), "TTL {ttl}");
    }
    drop(conn);
    b.cleanup().await;
}

#[tokio::test]
async fn redis_unexpected_value_fails_closed() {
    let b = Backend::redis("garbage").await;
    let key = b.key("A-1", "created");
    let Kind::Redis(pool) = &b.kind else {
        unreachable!()
    };
    let mut conn = pool.get().await.unwrap();
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg("garbage")
        .arg("EX")
        .arg(60)
        .query_async(&mut *conn)
        .await
        .unwrap();
    drop(conn);

    let shared = Arc::new(Shared::default());
    let h = b.instance(&shared, b.spec());
    let outcome = h.deliver_json(&event("A-1", "created")).await;
    let Outcome::Requeue {
        delay,
        reason: RequeueReason::StoreUnavailable(error),
    } = outcome
    else {
        panic!("expected Requeue(StoreUnavailable), got {outcome:?}");
    };
    assert_eq!(delay, Duration::from_secs(1));
    assert!(error.contains("unexpected value \"garbage\""), "{error}");
    assert!(error.contains(&key), "{error}");
    assert_eq!(calls(&shared), 0);
    assert_eq!(b.value(&key).await.as_deref(), Some("garbage"));
    b.cleanup().await;
}

#[tokio::test]
async fn redis_unreachable_requeues_without_calling_the_handler() {
    let store = Arc::new(RedisStore::new("redis://:s3cret@127.0.0.1:1/").unwrap());
    assert_eq!(store.url(), "redis://:****@127.0.0.1:1/");
    let shared = Arc::new(Shared::default());
    let mut spec = ConsumerSpec::new(unique_queue("unreachable"));
    spec.idempotency = &["order_id", "event_type"];
    spec.retry_delay = Duration::from_secs(3);
    let consumer = Orders {
        spec: spec.clone(),
        shared: shared.clone(),
    };
    let h = TestHarness::with_store(consumer, spec, store.clone());

    let started = Instant::now();
    let outcome = h.deliver_json(&event("A-1", "created")).await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    let Outcome::Requeue {
        delay,
        reason: RequeueReason::StoreUnavailable(error),
    } = outcome
    else {
        panic!("expected Requeue(StoreUnavailable), got {outcome:?}");
    };
    assert_eq!(delay, Duration::from_secs(3));
    assert!(error.contains("127.0.0.1:1"), "{error}");
    assert!(!error.contains("s3cret"), "password leaked: {error}");
    assert_eq!(calls(&shared), 0, "fail closed: the handler must not run");

    // Every store operation reports the error rather than hanging.
    let started = Instant::now();
    assert!(store.ping().await.is_err());
    assert!(store.claim("k", Duration::from_secs(5)).await.is_err());
    assert!(store.complete("k", Duration::from_secs(5)).await.is_err());
    assert!(store.release("k").await.is_err());
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[tokio::test]
async fn redis_store_pings_the_real_server() {
    // A ping succeeds against the real server: the unreachable test above is
    // not passing merely because no Redis works at all.
    let store = RedisStore::new(REDIS_URL).unwrap();
    store.ping().await.unwrap();
}
