//! What a service shows in production, against the real broker (and
//! PostgreSQL for shared state): `/metrics` counts every outcome under the
//! DESIGN.md names, the probe server's paths and methods, follow-ups carry
//! the trace and correlation ids through the broker, state reaches
//! handlers, and the startup checks that fail before anything connects.
//! (`/readyz` across a broker stop and a SIGTERM is in `faults.rs`, which
//! runs its tests one at a time.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/http.rs"]
mod probe;

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{Broker, Cleanup, eventually, header, isolate, unique};
use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use mqkit::{App, Consumer, ConsumerSpec, HandlerError};
use probe::{parse, value};
use serde::Deserialize;
use serde_json::json;

#[test]
fn parses_the_text_format() {
    let s = parse(
        "# HELP x y\n# TYPE a counter\na_total{queue=\"q\\\"1\",outcome=\"ack\"} 3\nb 1.5\nh_bucket{le=\"+Inf\"} 2\n",
    );
    assert_eq!(
        value(&s, "a_total", &[("queue", "q\"1"), ("outcome", "ack")]),
        Some(3.0)
    );
    assert_eq!(value(&s, "b", &[]), Some(1.5));
    assert_eq!(value(&s, "h_bucket", &[("le", "+Inf")]), Some(2.0));
    assert_eq!(value(&s, "a_total", &[("outcome", "retry")]), None);
}

fn app() -> App {
    App::new()
        .amqp_url(common::AMQP_URL)
        .shutdown_grace(Duration::from_secs(5))
        .http_addr("127.0.0.1:0")
}

fn spec_of<C: Consumer>(c: &C, name: &str) -> ConsumerSpec {
    let mut spec = c.spec();
    isolate(&mut spec, name);
    spec
}

#[derive(Debug, Deserialize)]
struct Item {
    id: String,
    #[serde(default)]
    fail: bool,
    /// Where `relay` publishes its follow-up.
    #[serde(default)]
    to: String,
}

#[mqkit::consumer(
    queue = "observe-counted",
    idempotency = "id",
    max_retries = 2,
    retry_delay = "100ms"
)]
async fn counted(item: Item) -> Result<(), HandlerError> {
    if item.fail {
        return Err(HandlerError::retry("this item always fails"));
    }
    Ok(())
}

async fn scrape(addr: std::net::SocketAddr) -> Vec<probe::Sample> {
    let (status, body) = probe::get(addr, "/metrics").await;
    assert_eq!(status, 200, "{body}");
    parse(&body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_every_outcome_under_the_design_names() {
    let spec = spec_of(&counted {}, "counted");
    let _cleanup = Cleanup::specs(&[&spec]);
    let s = spec.clone();
    let running = app()
        .consumer_with(counted {}, move |x| *x = s)
        .start()
        .await
        .unwrap();
    let addr = running.http_addr().expect("the probes are served");
    let q = spec.queue.as_ref();
    let broker = Broker::connect().await;
    let json_props = || BasicProperties::default().with_content_type("application/json".into());
    for i in 0..100 {
        let body = json!({"id": format!("i{i}")}).to_string();
        broker.publish(q, body.as_bytes(), json_props()).await;
    }
    let outcome = |samples: &[probe::Sample], o: &str| {
        value(
            samples,
            "mqkit_messages_total",
            &[("queue", q), ("outcome", o)],
        )
        .unwrap_or(0.0)
    };
    assert!(
        eventually(Duration::from_secs(30), async || outcome(
            &scrape(addr).await,
            "ack"
        ) >= 100.0)
        .await,
        "100 acks"
    );
    // 3 duplicates of handled items (new message ids), 5 bodies that do not
    // decode, one item that fails every time.
    for i in 0..3 {
        let body = json!({"id": format!("i{i}")}).to_string();
        let props = json_props().with_message_id(format!("dup-{i}").into());
        broker.publish(q, body.as_bytes(), props).await;
    }
    for i in 0..5 {
        broker
            .publish(q, format!("not json {i}").as_bytes(), json_props())
            .await;
    }
    broker
        .publish(
            q,
            json!({"id": "f", "fail": true}).to_string().as_bytes(),
            json_props(),
        )
        .await;
    let settled = eventually(Duration::from_secs(30), async || {
        let s = scrape(addr).await;
        outcome(&s, "dead-letter") >= 6.0 && outcome(&s, "duplicate") >= 3.0
    })
    .await;
    let samples = scrape(addr).await;
    assert!(settled, "{samples:#?}");
    assert_eq!(outcome(&samples, "ack"), 100.0);
    assert_eq!(outcome(&samples, "duplicate"), 3.0);
    assert_eq!(outcome(&samples, "retry"), 2.0);
    assert_eq!(outcome(&samples, "dead-letter"), 6.0);
    assert_eq!(outcome(&samples, "requeue"), 0.0);
    let dead = |kind| {
        value(
            &samples,
            "mqkit_dead_letters_total",
            &[("queue", q), ("kind", kind)],
        )
    };
    assert_eq!(dead("decode"), Some(5.0));
    assert_eq!(dead("retries-exhausted"), Some(1.0));
    // 100 good calls and 3 calls of the failing item; decode failures and
    // duplicates never reach the handler.
    let calls = value(
        &samples,
        "mqkit_handler_duration_seconds_count",
        &[("queue", q)],
    );
    assert_eq!(calls, Some(103.0));
    let inf = value(
        &samples,
        "mqkit_handler_duration_seconds_bucket",
        &[("queue", q), ("le", "+Inf")],
    );
    assert_eq!(inf, Some(103.0), "a histogram with buckets, not a summary");
    assert!(
        eventually(Duration::from_secs(5), async || {
            value(&scrape(addr).await, "mqkit_in_flight", &[("queue", q)]) == Some(0.0)
        })
        .await
    );
    // Process-wide (other apps of this test process set them too; the
    // values are checked in faults.rs, one service per process).
    assert!(value(&samples, "mqkit_connected", &[]).is_some());
    assert!(value(&samples, "mqkit_reconnects_total", &[]).is_some());
    assert_eq!(
        value(
            &samples,
            "mqkit_acks_lost_total",
            &[("queue", q), ("kind", "ack")]
        ),
        Some(0.0)
    );
    // 2 retries and 6 dead letters were published (and confirmed) at least.
    let publishes = value(&samples, "mqkit_publish_duration_seconds_count", &[]).unwrap_or(0.0);
    assert!(publishes >= 8.0, "{publishes}");
    let text = probe::get(addr, "/metrics").await.1;
    assert!(
        text.contains("# TYPE mqkit_handler_duration_seconds histogram"),
        "{text}"
    );
    assert!(!text.contains("guest"), "no credentials in /metrics");
    running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_probe_server_answers_by_path_and_method_and_a_taken_address_fails_startup() {
    let spec = spec_of(&counted {}, "probes");
    let _cleanup = Cleanup::specs(&[&spec]);
    let s = spec.clone();
    let running = app()
        .consumer_with(counted {}, move |x| *x = s)
        .start()
        .await
        .unwrap();
    let addr = running.http_addr().unwrap();
    assert_eq!(probe::get(addr, "/livez").await, (200, "ok\n".to_owned()));
    assert_eq!(probe::get(addr, "/healthz").await.0, 200);
    let (status, body) = probe::get(addr, "/readyz").await;
    assert_eq!(status, 200, "{body}");
    let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["connection"], "connected");
    assert_eq!(
        ready["consumers"],
        json!([{"queue": spec.queue.as_ref(), "state": "consuming"}])
    );
    assert_eq!(probe::get(addr, "/nope").await.0, 404);
    assert_eq!(probe::request(addr, "POST", "/readyz").await.0, 405);
    assert_eq!(probe::request(addr, "DELETE", "/metrics").await.0, 405);

    // The same address again: a startup error naming it, before connecting
    // (the broker URL here is unreachable, and the error is not about it).
    let other = spec_of(&counted {}, "probes-taken");
    let o = other.clone();
    let err = App::new()
        .amqp_url("amqp://guest:guest@127.0.0.1:1/%2f")
        .http_addr(&addr.to_string())
        .consumer_with(counted {}, move |x| *x = o)
        .start()
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains(&format!("MQKIT_HTTP_ADDR={addr}")), "{err}");
    assert!(err.contains("in use"), "{err}");
    running.shutdown().await.unwrap();
}

#[mqkit::consumer(queue = "observe-relay", max_retries = 1, retry_delay = "100ms")]
async fn relay(item: Item, ctx: mqkit::Context) -> Result<(), HandlerError> {
    if item.fail {
        return Err(HandlerError::retry("relay fails on purpose"));
    }
    tracing::info!(to = %item.to, "relaying");
    ctx.publisher()
        .publish_json("", &item.to, &json!({"relayed": item.id}))
        .await?;
    Ok(())
}

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn traced(message_id: &str, correlation_id: Option<&str>) -> BasicProperties {
    let mut headers = FieldTable::default();
    headers.insert(
        ShortString::from("traceparent"),
        AMQPValue::LongString(LongString::from(TRACEPARENT)),
    );
    headers.insert(
        ShortString::from("tracestate"),
        AMQPValue::LongString(LongString::from("vendor=abc")),
    );
    let props = BasicProperties::default()
        .with_content_type("application/json".into())
        .with_message_id(message_id.into())
        .with_headers(headers);
    match correlation_id {
        Some(c) => props.with_correlation_id(c.into()),
        None => props,
    }
}

fn trace_id(traceparent: &str) -> &str {
    traceparent.split('-').nth(1).unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_ups_carry_the_trace_and_correlation_ids_and_retries_keep_the_traceparent() {
    let spec = spec_of(&relay {}, "relay");
    let follow = unique("relay-follow");
    let _cleanup = Cleanup::specs(&[&spec]).queue(&follow);
    let broker = Broker::connect().await;
    broker.declare_queue(&follow, FieldTable::default()).await;
    let s = spec.clone();
    let running = app()
        .consumer_with(relay {}, move |x| *x = s)
        .start()
        .await
        .unwrap();
    let q = spec.queue.as_ref();
    let body = |id: &str, fail: bool| json!({"id": id, "to": follow, "fail": fail}).to_string();
    broker
        .publish(
            q,
            body("a", false).as_bytes(),
            traced("m-a", Some("corr-a")),
        )
        .await;
    broker
        .publish(q, body("b", false).as_bytes(), traced("m-b", None))
        .await;
    broker
        .publish(q, body("c", true).as_bytes(), traced("m-c", Some("corr-c")))
        .await;

    let mut got = Vec::new();
    assert!(
        eventually(Duration::from_secs(20), async || {
            got.extend(broker.drain(&follow).await);
            got.len() >= 2
        })
        .await,
        "two follow-ups"
    );
    for m in &got {
        let p = &m.delivery.properties;
        let relayed: serde_json::Value = serde_json::from_slice(&m.delivery.data).unwrap();
        let expected = match relayed["relayed"].as_str() {
            Some("a") => "corr-a",
            Some("b") => "m-b", // no correlation id: the incoming message id
            other => panic!("unexpected follow-up {other:?}"),
        };
        assert_eq!(
            p.correlation_id().as_ref().map(|c| c.as_str()),
            Some(expected)
        );
        let tp = header(p, "traceparent").expect("follow-up has a traceparent");
        assert_eq!(trace_id(&tp), trace_id(TRACEPARENT), "{tp}");
        assert_eq!(header(p, "tracestate").as_deref(), Some("vendor=abc"));
        assert!(p.message_id().is_some(), "a new message id");
        assert_ne!(p.message_id().as_ref().map(|m| m.as_str()), Some("m-a"));
    }
    // The failing one was retried once, then dead-lettered: the DLQ copy
    // (made from the retried delivery) still has the incoming traceparent.
    let mut dead = Vec::new();
    assert!(
        eventually(Duration::from_secs(20), async || {
            dead.extend(broker.drain(&spec.dlq).await);
            !dead.is_empty()
        })
        .await
    );
    let p = &dead[0].delivery.properties;
    assert_eq!(header(p, "traceparent").as_deref(), Some(TRACEPARENT));
    assert_eq!(header(p, "tracestate").as_deref(), Some("vendor=abc"));
    assert_eq!(header(p, "x-mqkit-attempts").as_deref(), Some("2"));
    assert_eq!(
        p.correlation_id().as_ref().map(|c| c.as_str()),
        Some("corr-c")
    );
    running.shutdown().await.unwrap();
}

static STARTED: AtomicUsize = AtomicUsize::new(0);
static HANDLED: AtomicUsize = AtomicUsize::new(0);

#[mqkit::consumer(queue = "observe-until")]
async fn until_handler(_item: Item) -> Result<(), HandlerError> {
    STARTED.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(500)).await;
    HANDLED.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_until_stops_gracefully_when_its_future_completes() {
    let spec = spec_of(&until_handler {}, "until");
    let _cleanup = Cleanup::specs(&[&spec]);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let s = spec.clone();
    let service = tokio::spawn(
        App::new()
            .amqp_url(common::AMQP_URL)
            .consumer_with(until_handler {}, move |x| *x = s)
            .run_until(async {
                let _ = stopped.await;
            }),
    );
    let broker = Broker::connect().await;
    let q = spec.queue.as_ref();
    let consuming = eventually(Duration::from_secs(20), async || {
        broker.consumers(q).await == Some(1)
    });
    assert!(consuming.await, "the app consumes");
    let body = json!({"id": "u1"}).to_string();
    broker
        .publish(q, body.as_bytes(), BasicProperties::default())
        .await;
    let started = eventually(Duration::from_secs(20), async || {
        STARTED.load(Ordering::SeqCst) >= 1
    });
    assert!(started.await, "the handler started");
    // Stop while the handler runs: it finishes, and its message is acked.
    assert_eq!(HANDLED.load(Ordering::SeqCst), 0);
    stop.send(()).unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(10), service)
        .await
        .expect("run_until returns after its future completes")
        .unwrap();
    assert!(ended.is_ok(), "{ended:?}");
    assert_eq!(
        HANDLED.load(Ordering::SeqCst),
        1,
        "the in-flight handler finished"
    );
    assert_eq!(broker.depth(q).await, 0, "and its message was acked");
    // Nobody consumes any more: a new message stays queued.
    broker
        .publish(q, body.as_bytes(), BasicProperties::default())
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(broker.consumers(q).await, Some(0));
    assert_eq!(broker.depth(q).await, 1);
    assert_eq!(STARTED.load(Ordering::SeqCst), 1);
}

/// The test service with `env`, to its exit; its exit status and stderr.
fn service_exit(env: &[(&str, &str)]) -> (std::process::ExitStatus, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mqkit-test-service"));
    cmd.env("RUST_LOG", "info").env("NO_COLOR", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_consumer_override_fails_startup_naming_the_variable_before_connecting() {
    let queue = unique("override");
    let var = format!(
        "MQKIT_CONSUMER_{}_PREFETCH",
        queue
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            })
            .collect::<String>()
    );
    let (status, stderr) = service_exit(&[("TEST_QUEUE", &queue), (&var, "0")]);
    assert!(!status.success(), "{stderr}");
    assert!(stderr.contains(&format!("{var}=\"0\"")), "{stderr}");
    // Checked before anything connects: the queue was never declared.
    assert!(
        !common::rabbitmqctl(&["list_queues", "name"]).contains(&queue),
        "the queue was declared"
    );
}

/// What `store_row` writes with.
#[derive(Clone)]
struct Db {
    pool: sqlx::PgPool,
    table: String,
}

#[mqkit::consumer(queue = "observe-state", idempotency = "id")]
async fn store_row(item: Item, mqkit::State(db): mqkit::State<Db>) -> Result<(), HandlerError> {
    sqlx::query(&format!("INSERT INTO {} (id) VALUES ($1)", db.table))
        .bind(&item.id)
        .execute(&db.pool)
        .await?;
    Ok(())
}

const PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// Drops the test's table when dropped.
struct DropTable(String);

impl Drop for DropTable {
    fn drop(&mut self) {
        let table = self.0.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(pool) = sqlx::PgPool::connect(PG_URL).await {
                    let _ = sqlx::query(&format!("DROP TABLE IF EXISTS {table}"))
                        .execute(&pool)
                        .await;
                }
            });
        })
        .join();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_with_state_writes_to_postgres_and_missing_state_fails_startup() {
    let pool = sqlx::PgPool::connect(PG_URL)
        .await
        .expect("PostgreSQL on 127.0.0.1:5432");
    let table = format!("mqkit_state_{}", std::process::id());
    let _drop = DropTable(table.clone());
    sqlx::query(&format!("CREATE TABLE {table} (id TEXT PRIMARY KEY)"))
        .execute(&pool)
        .await
        .unwrap();

    // Without the state: a startup error naming the handler and the type,
    // before anything is declared.
    let spec = spec_of(&store_row {}, "state");
    let _cleanup = Cleanup::specs(&[&spec]);
    let s = spec.clone();
    let err = App::new()
        .amqp_url(common::AMQP_URL)
        .consumer_with(store_row {}, move |x| *x = s)
        .start()
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("handler `store_row`"), "{err}");
    assert!(err.contains("observe::Db"), "{err}");
    let broker = Broker::connect().await;
    assert_eq!(
        broker.consumers(&spec.queue).await,
        None,
        "nothing was declared"
    );

    let s = spec.clone();
    let running = App::new()
        .amqp_url(common::AMQP_URL)
        .state(Db {
            pool: pool.clone(),
            table: table.clone(),
        })
        .consumer_with(store_row {}, move |x| *x = s)
        .start()
        .await
        .unwrap();
    for i in 0..20 {
        let body = json!({"id": format!("row-{i}")}).to_string();
        broker
            .publish(&spec.queue, body.as_bytes(), BasicProperties::default())
            .await;
    }
    let count = async || -> i64 {
        sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    assert!(eventually(Duration::from_secs(20), async || count().await == 20).await);
    running.shutdown().await.unwrap();
    assert_eq!(count().await, 20);
}

#[test]
fn a_service_missing_its_state_exits_non_zero_before_declaring_anything() {
    let queue = unique("missing-state");
    let (status, stderr) = service_exit(&[("TEST_QUEUE", &queue), ("TEST_MISSING_STATE", "1")]);
    assert!(!status.success(), "{stderr}");
    assert!(stderr.contains("takes `mqkit::State<"), "{stderr}");
    assert!(
        !common::rabbitmqctl(&["list_queues", "name"]).contains(&queue),
        "the queue was declared"
    );
}

static LATE_STARTED: AtomicUsize = AtomicUsize::new(0);
static LATE_FINISHED: AtomicUsize = AtomicUsize::new(0);

#[mqkit::consumer(queue = "observe-late", timeout = "10s")]
async fn late_handler(_item: Item) -> Result<(), HandlerError> {
    LATE_STARTED.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(2)).await;
    LATE_FINISHED.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_still_running_when_the_grace_period_ends_is_dropped_not_left_running() {
    let spec = spec_of(&late_handler {}, "late");
    let _cleanup = Cleanup::specs(&[&spec]);
    let s = spec.clone();
    let running = App::new()
        .amqp_url(common::AMQP_URL)
        .shutdown_grace(Duration::from_millis(200))
        .consumer_with(late_handler {}, move |x| *x = s)
        .start()
        .await
        .unwrap();
    let broker = Broker::connect().await;
    let q = spec.queue.as_ref();
    let body = json!({"id": "late"}).to_string();
    broker
        .publish(q, body.as_bytes(), BasicProperties::default())
        .await;
    let started = eventually(Duration::from_secs(20), async || {
        LATE_STARTED.load(Ordering::SeqCst) == 1
    });
    assert!(started.await, "the handler started");
    running.shutdown().await.unwrap();
    // Well past the handler's 2 s: it was dropped at the end of the grace
    // period, so nothing of it ran after the app stopped.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(LATE_FINISHED.load(Ordering::SeqCst), 0);
    assert_eq!(broker.depth(q).await, 1, "unacked, back in the queue");
}
