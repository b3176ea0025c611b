//! The idempotency scenarios of `mqkit/tests/support/idempotency.rs` against
//! a real Redis on 127.0.0.1:6379 ([`RedisStore`]), plus Redis-only checks:
//! key format, stored values, TTLs through `TTL`, an unexpected value, an
//! unreachable server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_redis::redis;
use mqkit::{DeadLetterKind, IdempotencyStore, Outcome, RedisStore};

mod common;
#[path = "../mqkit/tests/support/orders.rs"]
mod orders;
#[path = "../mqkit/tests/support/idempotency.rs"]
mod scenarios;

use common::Cleanup;
use orders::{Orders, Shared, store_unavailable};
use scenarios::{Backend, event, unique_queue};

use common::REDIS_URL;

/// The test's queue on the shared Redis, with a pool for inspecting it.
struct Redis {
    queue: String,
    pool: deadpool_redis::Pool,
    /// Deletes every key of the test's queue, also when the test fails.
    _cleanup: Cleanup,
}

impl Redis {
    async fn new(tag: &str) -> Self {
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
        Redis {
            _cleanup: Cleanup::specs(&[]).keys(&format!("mqkit:idem:{queue}:*")),
            queue,
            pool,
        }
    }

    /// Every key of this test's queue.
    async fn keys(&self) -> Vec<String> {
        let mut conn = self.pool.get().await.unwrap();
        let mut keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("mqkit:idem:{}:*", self.queue))
            .query_async(&mut *conn)
            .await
            .unwrap();
        keys.sort();
        keys
    }
}

impl Backend for Redis {
    fn queue(&self) -> &str {
        &self.queue
    }

    /// A new [`RedisStore`] (its own connection pool), as one more instance
    /// of the service would have it.
    fn store(&self) -> Arc<dyn IdempotencyStore> {
        Arc::new(RedisStore::new(REDIS_URL).unwrap())
    }

    async fn ttl(&self, key: &str) -> Option<Duration> {
        let mut conn = self.pool.get().await.unwrap();
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

    /// Asked with `GET`.
    async fn value(&self, key: &str) -> Option<String> {
        let mut conn = self.pool.get().await.unwrap();
        redis::cmd("GET")
            .arg(key)
            .query_async(&mut *conn)
            .await
            .unwrap()
    }

    async fn assert_no_keys(&self) {
        assert_eq!(self.keys().await, Vec::<String>::new());
    }

    async fn cleanup(self) {
        let keys = self.keys().await;
        if !keys.is_empty() {
            let mut conn = self.pool.get().await.unwrap();
            let _: () = redis::cmd("DEL")
                .arg(&keys)
                .query_async(&mut *conn)
                .await
                .unwrap();
        }
        assert!(self.keys().await.is_empty());
    }
}

mod redis_store {
    crate::scenarios::store_scenarios!(super::Redis::new);
}

// ---------------------------------------------------------------------------
// Redis only
// ---------------------------------------------------------------------------

#[tokio::test]
async fn redis_key_format_value_and_ttl() {
    let b = Redis::new("keyfmt").await;
    let shared = Arc::new(Shared::default());
    let h = b.instance(&shared, b.spec());

    assert_eq!(h.deliver_json(&event("A-1", "created")).await, Outcome::Ack);
    // Separators inside values are escaped so field tuples never collide.
    assert_eq!(h.deliver_json(&event("B:2", "paid%")).await, Outcome::Ack);

    let exact = format!("mqkit:idem:{}:A-1:created", b.queue());
    let escaped = format!("mqkit:idem:{}:B%3A2:paid%25", b.queue());
    let mut expected = vec![exact.clone(), escaped.clone()];
    expected.sort();
    assert_eq!(b.keys().await, expected);

    let mut conn = b.pool.get().await.unwrap();
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
    let b = Redis::new("garbage").await;
    let key = b.key("A-1", "created");
    let mut conn = b.pool.get().await.unwrap();
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
    // A value mqkit never writes dead-letters the message at once (issue 16)
    // rather than requeueing it forever; the record is left as it is.
    let outcome = h.deliver_json(&event("A-1", "created")).await;
    assert!(
        matches!(
            &outcome,
            Outcome::DeadLetter {
                kind: DeadLetterKind::Rejected,
                error,
                attempts: 1,
            } if error.contains("\"garbage\"") && error.contains(&key)
        ),
        "{outcome:?}"
    );
    assert_eq!(shared.calls(), 0);
    assert_eq!(b.value(&key).await.as_deref(), Some("garbage"));
    let ttl = b.ttl(&key).await.expect("the record is still there");
    assert!(
        ttl <= Duration::from_secs(60) && ttl >= Duration::from_secs(58),
        "its expiry (EX 60) is unchanged: {ttl:?}"
    );
    b.cleanup().await;
}

#[tokio::test]
async fn redis_unreachable_requeues_without_calling_the_handler() {
    let store = Arc::new(RedisStore::new("redis://:s3cret@127.0.0.1:1/").unwrap());
    assert_eq!(store.url(), "redis://:****@127.0.0.1:1/");
    let shared = Arc::new(Shared::default());
    let mut spec = orders::spec(unique_queue("unreachable"));
    spec.retry_delay = Duration::from_secs(3);
    let h = Orders::harness(spec, &shared, store.clone());

    let started = Instant::now();
    let outcome = h.deliver_json(&event("A-1", "created")).await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    let (delay, error) = store_unavailable(outcome);
    assert_eq!(delay, Duration::from_secs(3));
    assert!(error.contains("127.0.0.1:1"), "{error}");
    assert!(!error.contains("s3cret"), "password leaked: {error}");
    assert_eq!(shared.calls(), 0, "fail closed: the handler must not run");

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
