//! A test service: consumes one queue with mqkit and records each side
//! effect outside the broker and outside the idempotency store (`INCR` in a
//! separate Redis), so fault-injection tests can count effects per key.
//!
//! Environment: the `MQKIT_*` variables, plus
//! `TEST_QUEUE` (required), `TEST_MISSING_STATE` (run a consumer whose
//! state is never given, instead), `TEST_DLX`, `TEST_PREFETCH`, `TEST_CONCURRENCY`,
//! `TEST_HANDLER_MS` (handler duration), `TEST_TIMEOUT_MS` (handler timeout,
//! and so the idempotency lock TTL), `TEST_EFFECTS_REDIS` (Redis URL for
//! effect counters `effects:<queue>:<key>` and handler start times
//! `starts:<queue>` in ms since the epoch; unset = no recording).

use std::time::Duration;

use deadpool_redis::redis;
use serde::Deserialize;

/// A test event; `key` is the business key.
#[derive(Debug, Deserialize)]
struct Event {
    key: String,
}

#[mqkit::consumer(queue = "mqkit-test-service", idempotency = "key")]
async fn on_event(evt: Event, ctx: mqkit::Context) -> Result<(), mqkit::HandlerError> {
    if let Some(pool) = EFFECTS.get() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let mut conn = pool.get().await.map_err(mqkit::HandlerError::retry)?;
        redis::cmd("RPUSH")
            .arg(format!("starts:{}", ctx.queue()))
            .arg(now.to_string())
            .query_async::<i64>(&mut *conn)
            .await?;
    }
    let ms: u64 = std::env::var("TEST_HANDLER_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if ms > 0 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if let Some(pool) = EFFECTS.get() {
        let mut conn = pool.get().await.map_err(mqkit::HandlerError::retry)?;
        redis::cmd("INCR")
            .arg(format!("effects:{}:{}", ctx.queue(), evt.key))
            .query_async::<i64>(&mut *conn)
            .await?;
    }
    Ok(())
}

/// A dependency `needs_state` takes and the service never gives
/// (`TEST_MISSING_STATE`): startup must fail before anything connects.
#[derive(Clone)]
struct NeverGiven;

#[mqkit::consumer(queue = "mqkit-test-service-state")]
async fn needs_state(
    _evt: Event,
    mqkit::State(_never): mqkit::State<NeverGiven>,
) -> Result<(), mqkit::HandlerError> {
    Ok(())
}

static EFFECTS: std::sync::OnceLock<deadpool_redis::Pool> = std::sync::OnceLock::new();

fn env_num<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[tokio::main]
async fn main() -> Result<(), mqkit::Error> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Ok(url) = std::env::var("TEST_EFFECTS_REDIS") {
        let pool = deadpool_redis::Config::from_url(url)
            .create_pool(Some(deadpool_redis::Runtime::Tokio1))
            .map_err(|e| mqkit::Error::Config(format!("TEST_EFFECTS_REDIS: {e}")))?;
        let _ = EFFECTS.set(pool);
    }
    let queue = std::env::var("TEST_QUEUE").unwrap_or_else(|_| "mqkit-test-service".to_owned());
    if std::env::var_os("TEST_MISSING_STATE").is_some() {
        return mqkit::App::new()
            .config(mqkit::Config::from_env()?)
            .consumer_with(needs_state {}, |spec| spec.rename_queue(queue))
            .run()
            .await;
    }
    mqkit::App::new()
        .config(mqkit::Config::from_env()?)
        .consumer_with(on_event {}, |spec| {
            spec.rename_queue(queue);
            if let Ok(dlx) = std::env::var("TEST_DLX") {
                spec.dlx = dlx.into();
            }
            if let Some(p) = env_num("TEST_PREFETCH") {
                spec.prefetch = p;
                spec.concurrency = p;
            }
            if let Some(c) = env_num("TEST_CONCURRENCY") {
                spec.concurrency = c;
            }
            if let Some(ms) = env_num("TEST_TIMEOUT_MS") {
                spec.timeout = Duration::from_millis(ms);
            }
        })
        .run()
        .await
}
