//! Idempotency records mqkit never writes, and keys that stay busy, on the
//! real RabbitMQ and Redis (issue 16; the in-memory twins are in
//! `mqkit/tests/busy.rs`): a `processing` lock without TTL that a manual
//! `SET` left, a foreign value, and a key held by a live handler for longer
//! than three lock TTLs (the ERROR line, `mqkit_stuck_keys_total`, the
//! `x-mqkit-busy-*` headers).
//!
//! Logs and metrics are captured process-wide (a global tracing subscriber
//! and a global `metrics` recorder, installed once), so every assertion
//! filters by the test's own unique key or queue.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Once};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{Broker, Cleanup, REDIS_URL, eventually, header, isolate};
use deadpool_redis::redis::{self, aio::MultiplexedConnection};
use lapin::BasicProperties;
use mqkit::testing::{TestDelivery, TestHarness};
use mqkit::{
    App, Consumer as _, ConsumerSpec, Context, FieldValue, HandlerError, Outcome, RedisStore,
    Running,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

// ------------------------------------------------------------ the consumer

#[derive(Debug, Deserialize, Serialize)]
struct Payment {
    payment_id: String,
    /// Wait on the payment's gate before returning (the long handler).
    #[serde(default)]
    hold: bool,
}

/// Lock TTL = timeout + 5 s = 6 s; three lock TTLs = 18 s.
#[mqkit::consumer(
    queue = "stuck",
    idempotency = "payment_id",
    timeout = "1s",
    retry_delay = "200ms",
    idempotency_ttl = "1h"
)]
async fn on_payment(p: Payment, ctx: Context) -> Result<(), HandlerError> {
    let busy = |name| ctx.header(name).cloned();
    CALLS.lock().unwrap().push(Call {
        payment_id: p.payment_id.clone(),
        held: p.hold,
        busy_requeues: busy("x-mqkit-busy-requeues").and_then(|v| v.as_i64()),
        busy_since: busy("x-mqkit-busy-since").and_then(|v| v.as_i64()),
        busy_reported: busy("x-mqkit-busy-reported"),
    });
    if p.hold {
        let rx = GATES.lock().unwrap().get(&p.payment_id).cloned();
        let end = match rx {
            Some(mut rx) => rx
                .wait_for(|g| *g != Gate::Closed)
                .await
                .map_or(Gate::Fail, |g| *g),
            None => Gate::Fail,
        };
        if end == Gate::Fail {
            return Err(HandlerError::retry("the holder gave up"));
        }
    }
    Ok(())
}

/// One handler call, with the busy headers of the delivery that made it.
#[derive(Debug, Clone)]
struct Call {
    payment_id: String,
    held: bool,
    busy_requeues: Option<i64>,
    busy_since: Option<i64>,
    busy_reported: Option<FieldValue>,
}

static CALLS: Mutex<Vec<Call>> = Mutex::new(Vec::new());

fn calls(payment_id: &str) -> Vec<Call> {
    CALLS
        .lock()
        .unwrap()
        .iter()
        .filter(|c| c.payment_id == payment_id)
        .cloned()
        .collect()
}

/// How a held handler ends once its gate opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gate {
    Closed,
    Succeed,
    Fail,
}

static GATES: LazyLock<Mutex<HashMap<String, watch::Receiver<Gate>>>> =
    LazyLock::new(Mutex::default);

/// A closed gate for `payment_id`'s held handler. Dropping the sender (a
/// failed test) makes the handler give up.
fn gate(payment_id: &str) -> watch::Sender<Gate> {
    let (tx, rx) = watch::channel(Gate::Closed);
    GATES.lock().unwrap().insert(payment_id.to_owned(), rx);
    tx
}

// ------------------------------------------------- logs and metrics, global

static LOGS: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct LogWriter;

impl io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        LOGS.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Log lines that contain every one of `needles`.
fn log_lines(needles: &[&str]) -> Vec<String> {
    let logs = LOGS.lock().unwrap();
    String::from_utf8_lossy(&logs)
        .lines()
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .map(str::to_owned)
        .collect()
}

/// Counters by `name{label=value,…}` (labels sorted); gauges and
/// histograms are dropped.
static COUNTERS: LazyLock<Mutex<HashMap<String, Arc<AtomicU64>>>> = LazyLock::new(Mutex::default);

fn counter_id(name: &str, labels: &[(&str, &str)]) -> String {
    let mut labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    labels.sort();
    format!("{name}{{{}}}", labels.join(","))
}

fn counter(name: &str, labels: &[(&str, &str)]) -> u64 {
    COUNTERS
        .lock()
        .unwrap()
        .get(&counter_id(name, labels))
        .map_or(0, |c| c.load(Ordering::SeqCst))
}

struct CountingRecorder;

impl metrics::Recorder for CountingRecorder {
    fn describe_counter(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_gauge(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_histogram(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn register_counter(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        let labels: Vec<(&str, &str)> = key.labels().map(|l| (l.key(), l.value())).collect();
        let id = counter_id(key.name(), &labels);
        let cell = COUNTERS.lock().unwrap().entry(id).or_default().clone();
        metrics::Counter::from_arc(cell)
    }
    fn register_gauge(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        metrics::Gauge::noop()
    }
    fn register_histogram(
        &self,
        _: &metrics::Key,
        _: &metrics::Metadata<'_>,
    ) -> metrics::Histogram {
        metrics::Histogram::noop()
    }
}

/// Installs the log buffer and the recorder, once per test binary.
fn observe() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        tracing_subscriber::fmt()
            .with_writer(|| LogWriter)
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .init();
        metrics::set_global_recorder(CountingRecorder).expect("no other metrics recorder");
    });
}

// ------------------------------------------------------------------ helpers

async fn redis_conn() -> MultiplexedConnection {
    redis::Client::open(REDIS_URL)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect("these tests need Redis on 127.0.0.1:6379")
}

async fn get(conn: &mut MultiplexedConnection, key: &str) -> Option<String> {
    redis::cmd("GET").arg(key).query_async(conn).await.unwrap()
}

/// `TTL key`: seconds left, -1 without expiry, -2 when absent.
async fn ttl(conn: &mut MultiplexedConnection, key: &str) -> i64 {
    redis::cmd("TTL").arg(key).query_async(conn).await.unwrap()
}

/// `SET key value`, no expiry: what a person or another tool might do.
async fn set_forever(conn: &mut MultiplexedConnection, key: &str, value: &str) {
    redis::cmd("SET")
        .arg(key)
        .arg(value)
        .query_async::<()>(conn)
        .await
        .unwrap();
}

/// The consumer's spec on unique queue names.
fn spec(name: &str) -> ConsumerSpec {
    let mut spec = on_payment {}.spec();
    isolate(&mut spec, name);
    spec
}

fn key(spec: &ConsumerSpec, payment_id: &str) -> String {
    format!("mqkit:idem:{}:{payment_id}", spec.queue)
}

async fn start(spec: &ConsumerSpec) -> Running {
    let s = spec.clone();
    App::new()
        .amqp_url(common::AMQP_URL)
        .redis_url(REDIS_URL)
        .shutdown_grace(Duration::from_secs(5))
        .consumer_with(on_payment {}, move |x| *x = s)
        .start()
        .await
        .unwrap()
}

async fn publish(broker: &Broker, spec: &ConsumerSpec, payment_id: &str) {
    let body = serde_json::to_vec(&Payment {
        payment_id: payment_id.to_owned(),
        hold: false,
    })
    .unwrap();
    let props = BasicProperties::default()
        .with_message_id(format!("m-{payment_id}").into())
        .with_content_type("application/json".into());
    broker.publish(&spec.queue, &body, props).await;
}

fn unix_millis() -> i64 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    i64::try_from(now.as_millis()).unwrap()
}

/// The work queue and its delay queue hold nothing, and neither does the DLQ.
async fn assert_queues_empty(broker: &Broker, spec: &ConsumerSpec) {
    for q in [
        spec.queue.to_string(),
        format!("{}.retry.200", spec.queue),
        spec.dlq.to_string(),
    ] {
        assert_eq!(broker.depth(&q).await, 0, "{q} should be empty");
    }
}

// -------------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_processing_lock_without_ttl_expires_and_the_message_is_handled_once() {
    observe();
    let spec = spec("stuck-nottl");
    let _cleanup = Cleanup::specs(&[&spec]);
    let broker = Broker::connect().await;
    let mut redis = redis_conn().await;
    let key = key(&spec, "p-nottl");
    set_forever(&mut redis, &key, "processing").await;
    assert_eq!(ttl(&mut redis, &key).await, -1, "planted without expiry");

    let running = start(&spec).await;
    let published_ms = unix_millis();
    let published = Instant::now();
    publish(&broker, &spec, "p-nottl").await;

    // The first delivery gives the lock the lock TTL (6 s) and waits for it.
    assert!(
        eventually(Duration::from_secs(5), async || ttl(&mut redis, &key).await
            > 0)
        .await,
        "the lock never got a TTL"
    );
    let given = ttl(&mut redis, &key).await;
    assert!((1..=6).contains(&given), "lock TTL {given}, want at most 6");
    assert_eq!(get(&mut redis, &key).await.as_deref(), Some("processing"));

    assert!(
        eventually(Duration::from_secs(20), async || !calls("p-nottl")
            .is_empty())
        .await,
        "not handled within 20 s; logs: {:#?}",
        log_lines(&[spec.queue.as_ref()])
    );
    let waited = published.elapsed();
    assert!(
        waited >= Duration::from_secs(5),
        "handled after {waited:?}: the lock was not respected until it expired"
    );
    assert!(
        eventually(Duration::from_secs(5), async || {
            get(&mut redis, &key).await.as_deref() == Some("done")
        })
        .await,
        "key holds {:?}, want done",
        get(&mut redis, &key).await
    );
    let done_ttl = ttl(&mut redis, &key).await;
    assert!(
        (3500..=3600).contains(&done_ttl),
        "done TTL {done_ttl}, want the idempotency TTL (1h)"
    );

    // The waiting message was counted on itself while it waited.
    let handled = calls("p-nottl");
    assert_eq!(handled.len(), 1, "{handled:?}");
    let call = &handled[0];
    assert!(call.busy_requeues.unwrap_or(0) >= 1, "{call:?}");
    let since = call.busy_since.expect("x-mqkit-busy-since set");
    assert!(
        (published_ms..published_ms + 2000).contains(&since),
        "busy-since {since}, published at {published_ms}"
    );
    assert!(call.busy_reported.is_none(), "not stuck: {call:?}");

    let no_ttl = log_lines(&["ERROR", &key, "idempotency lock had no TTL"]);
    assert_eq!(no_ttl.len(), 1, "one ERROR for the lock: {no_ttl:#?}");
    assert!(log_lines(&[&key, "busy for longer than"]).is_empty());

    // Nothing more happens to it.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(calls("p-nottl").len(), 1, "handled exactly once");
    assert_queues_empty(&broker, &spec).await;
    running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_value_dead_letters_the_message_and_stays_as_it_is() {
    observe();
    let spec = spec("stuck-foreign");
    let _cleanup = Cleanup::specs(&[&spec]);
    let broker = Broker::connect().await;
    let mut redis = redis_conn().await;
    let key = key(&spec, "p-foreign");
    set_forever(&mut redis, &key, "garbage").await;

    let running = start(&spec).await;
    publish(&broker, &spec, "p-foreign").await;
    assert!(
        eventually(Duration::from_secs(10), async || broker
            .depth(&spec.dlq)
            .await
            >= 1)
        .await,
        "nothing in {}; logs: {:#?}",
        spec.dlq,
        log_lines(&[spec.queue.as_ref()])
    );
    let letters = broker.drain(&spec.dlq).await;
    assert_eq!(letters.len(), 1);
    let props = &letters[0].delivery.properties;
    assert_eq!(
        header(props, "x-mqkit-error-kind").as_deref(),
        Some("rejected")
    );
    let error = header(props, "x-mqkit-error").expect("x-mqkit-error");
    assert!(error.contains(&key), "names the key: {error}");
    assert!(error.contains("\"garbage\""), "names the value: {error}");
    assert_eq!(header(props, "x-mqkit-attempts").as_deref(), Some("1"));
    assert_eq!(
        header(props, "x-mqkit-original-queue").as_deref(),
        Some(spec.queue.as_ref())
    );
    assert_eq!(
        props.message_id().as_ref().map(|m| m.as_str()),
        Some("m-p-foreign")
    );

    assert_eq!(get(&mut redis, &key).await.as_deref(), Some("garbage"));
    assert_eq!(ttl(&mut redis, &key).await, -1, "record untouched");
    assert!(calls("p-foreign").is_empty(), "handler never ran");
    // The outcome's one line (ARCHITECTURE.md rule 9) names key and value.
    let told = log_lines(&["ERROR", &key, "dead-lettered", "a value mqkit never writes"]);
    assert_eq!(told.len(), 1, "{told:#?}");
    assert_queues_empty(&broker, &spec).await;
    running.shutdown().await.unwrap();
}

/// A live handler elsewhere (a harness on the same queue name and Redis,
/// with a 120 s timeout) holds the key for more than three of the service's
/// lock TTLs while the service gets a message with the same business key.
/// `end` is how the holder finishes once the stuck report has been checked.
/// Returns the spec, the payment id and when the message was published (ms).
async fn held_key_is_reported_once(name: &str, end: Gate) -> (ConsumerSpec, String, i64) {
    observe();
    let spec = spec(name);
    let cleanup = Cleanup::specs(&[&spec]);
    let broker = Broker::connect().await;
    let mut redis = redis_conn().await;
    let id = format!("p-{name}");
    let key = key(&spec, &id);
    let lock_ttl = spec.lock_ttl();
    assert_eq!(lock_ttl, Duration::from_secs(6));

    let open = gate(&id);
    let mut holder_spec = spec.clone();
    holder_spec.timeout = Duration::from_secs(120);
    let store = Arc::new(RedisStore::new(REDIS_URL).unwrap());
    let holder = TestHarness::with_store(on_payment {}, holder_spec, store);
    let delivery = TestDelivery::json(&Payment {
        payment_id: id.clone(),
        hold: true,
    })
    .unwrap();
    let holder = tokio::spawn(async move { holder.deliver(&delivery).await });
    assert!(
        eventually(Duration::from_secs(5), async || calls(&id).len() == 1).await,
        "the holder's handler did not start"
    );
    assert_eq!(get(&mut redis, &key).await.as_deref(), Some("processing"));
    assert!(ttl(&mut redis, &key).await > 100, "the holder's own lock");

    let running = start(&spec).await;
    let published_ms = unix_millis();
    let published = Instant::now();
    publish(&broker, &spec, &id).await;

    let stuck = ["ERROR", key.as_str(), "busy for longer than 3 lock TTLs"];
    assert!(
        eventually(3 * lock_ttl + Duration::from_secs(15), async || {
            !log_lines(&stuck).is_empty()
        })
        .await,
        "no stuck report; logs: {:#?}",
        log_lines(&[spec.queue.as_ref()])
    );
    let reported_after = published.elapsed();
    assert!(
        reported_after > 3 * lock_ttl,
        "reported after {reported_after:?}, before 3 lock TTLs"
    );
    let stuck_total = |q: &str| counter("mqkit_stuck_keys_total", &[("queue", q)]);
    assert_eq!(stuck_total(&spec.queue), 1);
    // It keeps waiting (not dead-lettered, not handled) and is reported once.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(log_lines(&stuck).len(), 1, "{:#?}", log_lines(&stuck));
    assert_eq!(stuck_total(&spec.queue), 1, "reported once");
    assert_eq!(calls(&id).len(), 1, "only the holder ran");
    assert_eq!(broker.depth(&spec.dlq).await, 0);

    open.send(end).unwrap();
    let outcome = holder.await.unwrap();
    match end {
        Gate::Succeed => assert_eq!(outcome, Outcome::Ack),
        _ => assert!(matches!(outcome, Outcome::Retry { .. }), "{outcome:?}"),
    }
    // The service takes the message on its next delivery.
    let settled = async || {
        get(&mut redis, &key).await.as_deref() == Some("done")
            && broker.depth(&spec.queue).await == 0
            && broker.depth(&format!("{}.retry.200", spec.queue)).await == 0
    };
    assert!(
        eventually(Duration::from_secs(10), settled).await,
        "not settled; logs: {:#?}",
        log_lines(&[spec.queue.as_ref()])
    );
    let done_ttl = ttl(&mut redis, &key).await;
    assert!(
        (3500..=3600).contains(&done_ttl),
        "done TTL {done_ttl}, want the idempotency TTL (1h)"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_queues_empty(&broker, &spec).await;
    running.shutdown().await.unwrap();
    drop(cleanup);
    (spec, id, published_ms)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_held_past_three_lock_ttls_is_reported_then_the_message_is_a_duplicate() {
    let (spec, id, _) = held_key_is_reported_once("stuck-held-ok", Gate::Succeed).await;
    // The holder's success handled the business event; the waiting message
    // is acked as a duplicate without calling the handler.
    let all = calls(&id);
    assert_eq!(all.len(), 1, "{all:?}");
    assert!(all[0].held);
    let q = spec.queue.as_ref();
    let outcome = |o: &str| counter("mqkit_messages_total", &[("queue", q), ("outcome", o)]);
    assert_eq!(outcome("duplicate"), 1);
    assert_eq!(outcome("ack"), 0);
    assert!(outcome("requeue") >= 10, "{} requeues", outcome("requeue"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_held_past_three_lock_ttls_is_reported_then_the_message_is_handled_once() {
    let (spec, id, published_ms) = held_key_is_reported_once("stuck-held-fail", Gate::Fail).await;
    // The holder failed and released the key: the waiting message runs the
    // handler exactly once, with what it went through on its headers.
    let all = calls(&id);
    assert_eq!(all.len(), 2, "{all:?}");
    let call = all.iter().find(|c| !c.held).unwrap();
    assert!(
        call.busy_requeues.unwrap_or(0) >= 10,
        "x-mqkit-busy-requeues: {call:?}"
    );
    let since = call.busy_since.expect("x-mqkit-busy-since set");
    assert!(
        (published_ms..published_ms + 2000).contains(&since),
        "busy-since {since}, published at {published_ms}: set once, at the first requeue"
    );
    assert_eq!(call.busy_reported, Some(FieldValue::Bool(true)), "{call:?}");
    let q = spec.queue.as_ref();
    let outcome = |o: &str| counter("mqkit_messages_total", &[("queue", q), ("outcome", o)]);
    assert_eq!(outcome("ack"), 1);
    assert_eq!(outcome("duplicate"), 0);
}
