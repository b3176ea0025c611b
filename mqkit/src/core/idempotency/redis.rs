//! [`RedisStore`]: idempotency records in Redis, over one multiplexed
//! connection that a deadpool-redis pool creates (and re-creates after a
//! failure).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool_redis::redis::aio::MultiplexedConnection;
use deadpool_redis::redis::{self, Value};
use deadpool_redis::{Config, Pool, PoolConfig, Runtime, Timeouts};

use super::{BoxFuture, Claim, IdempotencyStore, StoreError, no_ttl_lock, ttl_secs};
use crate::core::mask::mask_password;

/// Idempotency records in Redis, shared by every instance of a service.
///
/// Commands: `SET key processing NX EX <lock_ttl>` to claim (plus a `GET`
/// only when the key already exists, to tell `done` from `processing`),
/// `SET key done EX <ttl>` to complete, `DEL key` to release. Any Redis
/// error or timeout is a [`StoreError`], which the pipeline turns into a
/// delayed requeue without calling the handler (fail closed).
///
/// Every command goes over one shared multiplexed connection, which
/// pipelines concurrent handlers' commands: one round trip per command, and
/// no per-command pool checkout (deadpool checks a connection with
/// `UNWATCH` + `PING` on every checkout). After an error the connection is
/// dropped and the next command gets a fresh one from the pool.
#[derive(Clone)]
pub struct RedisStore {
    pool: Pool,
    shared: Arc<Mutex<Option<MultiplexedConnection>>>,
    url: String,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("url", &self.url)
            .finish()
    }
}

/// How long to wait for a pooled connection, a new one, or a recycle check.
const POOL_TIMEOUT: Duration = Duration::from_secs(2);

impl RedisStore {
    /// A store for `url` (`redis://[:password@]host:port[/db]`). Connects
    /// lazily: an unreachable server shows up as [`StoreError`]s, not here.
    pub fn new(url: &str) -> Result<Self, StoreError> {
        let masked = mask_password(url);
        let mut cfg = Config::from_url(url);
        cfg.pool = Some(PoolConfig {
            max_size: 16,
            timeouts: Timeouts {
                wait: Some(POOL_TIMEOUT),
                create: Some(POOL_TIMEOUT),
                recycle: Some(POOL_TIMEOUT),
            },
            ..PoolConfig::default()
        });
        let pool = cfg.create_pool(Some(Runtime::Tokio1)).map_err(|e| {
            let message = format!(
                "cannot use Redis URL {masked}: {e}; check MQKIT_REDIS_URL (redis://host:port/db)"
            );
            StoreError::with_source(message, e)
        })?;
        Ok(RedisStore {
            pool,
            shared: Arc::new(Mutex::new(None)),
            url: masked,
        })
    }

    /// The URL with its password masked.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Sends `PING`, to check the server at startup.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map(drop)
            .map_err(|e| self.error("PING", e))
    }

    fn cached(&self) -> std::sync::MutexGuard<'_, Option<MultiplexedConnection>> {
        // Only an Option is kept under the lock; a poisoned one is still valid.
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn conn(&self) -> Result<MultiplexedConnection, StoreError> {
        if let Some(conn) = self.cached().as_ref() {
            return Ok(conn.clone());
        }
        let pooled = self.pool.get().await.map_err(|e| {
            let message = format!(
                "cannot connect to Redis at {}: {e}; check that it is running and MQKIT_REDIS_URL",
                self.url
            );
            StoreError::with_source(message, e)
        })?;
        let conn = deadpool_redis::Connection::take(pooled);
        *self.cached() = Some(conn.clone());
        Ok(conn)
    }

    fn error(&self, command: &str, e: redis::RedisError) -> StoreError {
        // The connection may be broken: the next command gets a new one.
        *self.cached() = None;
        StoreError::with_source(format!("Redis {command} at {} failed: {e}", self.url), e)
    }
}

/// After a failed `SET NX`: what the key holds, and whether it was a
/// `processing` lock without a TTL, which is given the lock TTL here (in one
/// atomic step, so a `done` record written meanwhile keeps its own TTL).
const INSPECT: &str = r"
local v = redis.call('GET', KEYS[1])
if v == 'processing' and redis.call('TTL', KEYS[1]) == -1 then
  redis.call('EXPIRE', KEYS[1], ARGV[1])
  return {v, 1}
end
return {v, 0}
";

impl IdempotencyStore for RedisStore {
    fn claim<'a>(
        &'a self,
        key: &'a str,
        lock_ttl: Duration,
    ) -> BoxFuture<'a, Result<Claim, StoreError>> {
        Box::pin(async move {
            let mut conn = self.conn().await?;
            let set: Value = redis::cmd("SET")
                .arg(key)
                .arg("processing")
                .arg("NX")
                .arg("EX")
                .arg(ttl_secs(lock_ttl))
                .query_async(&mut conn)
                .await
                .map_err(|e| self.error("SET NX", e))?;
            if matches!(set, Value::Okay) {
                return Ok(Claim::Acquired);
            }
            let (current, expired_now): (Option<Vec<u8>>, i64) = redis::cmd("EVAL")
                .arg(INSPECT)
                .arg(1)
                .arg(key)
                .arg(ttl_secs(lock_ttl))
                .query_async(&mut conn)
                .await
                .map_err(|e| self.error("EVAL (inspect key)", e))?;
            if expired_now == 1 {
                no_ttl_lock(key, lock_ttl);
            }
            Ok(match current.as_deref() {
                Some(b"done") => Claim::Done,
                // Still processing, or it expired between the two commands:
                // either way the delivery comes back later and tries again.
                Some(b"processing") | None => Claim::Busy,
                Some(other) => Claim::Foreign {
                    value: String::from_utf8_lossy(other).into_owned(),
                },
            })
        })
    }

    fn complete<'a>(
        &'a self,
        key: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let mut conn = self.conn().await?;
            redis::cmd("SET")
                .arg(key)
                .arg("done")
                .arg("EX")
                .arg(ttl_secs(ttl))
                .query_async::<()>(&mut conn)
                .await
                .map_err(|e| self.error("SET done", e))
        })
    }

    fn release<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let mut conn = self.conn().await?;
            redis::cmd("DEL")
                .arg(key)
                .query_async::<()>(&mut conn)
                .await
                .map_err(|e| self.error("DEL", e))
        })
    }
}
