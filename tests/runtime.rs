//! The RabbitMQ runtime against the real broker on 127.0.0.1:5672 (and Redis
//! on 6379): topology, ack/retry/DLQ, prefetch and concurrency bounds,
//! duplicates, the publisher, and startup failure. Every test uses unique
//! queue names and deletes what it declared.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{
    Broker, Cleanup, REDIS_URL, argument, eventually, header, isolate, rabbitmqctl, unique,
};
use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable};
use mqkit::{App, Consumer, ConsumerSpec, HandlerError};
use serde::Deserialize;
use serde_json::json;

#[derive(Debug, Deserialize)]
struct Event {
    id: String,
    #[serde(default)]
    kind: String,
    #[allow(dead_code)]
    amount: i64,
}

fn app() -> App {
    App::new()
        .amqp_url(common::AMQP_URL)
        .shutdown_grace(Duration::from_secs(5))
}

/// Starts `consumer` alone on unique queue names; the guard deletes them.
async fn start<C: Consumer>(
    consumer: C,
    name: &str,
    app: App,
) -> (ConsumerSpec, mqkit::Running, Cleanup) {
    let spec = spec_of(&consumer, name, |_| {});
    let cleanup = Cleanup::specs(&[&spec]);
    let s = spec.clone();
    let running = app
        .consumer_with(consumer, move |x| *x = s)
        .start()
        .await
        .unwrap();
    (spec, running, cleanup)
}

fn spec_of<C: Consumer>(c: &C, name: &str, adjust: impl FnOnce(&mut ConsumerSpec)) -> ConsumerSpec {
    let mut spec = c.spec();
    isolate(&mut spec, name);
    adjust(&mut spec);
    spec
}

// ---------------------------------------------------------------- topology

#[mqkit::consumer(
    queue = "topo",
    max_retries = 3,
    retry_delay = "200ms",
    exchange = "x",
    routing_key = "order.#"
)]
async fn topo(_e: Event) -> Result<(), HandlerError> {
    Ok(())
}

#[mqkit::consumer(queue = "topo-quorum", queue_type = "quorum", max_retries = 0)]
async fn topo_quorum(_e: Event) -> Result<(), HandlerError> {
    Ok(())
}

fn json_rows(text: &str) -> Vec<serde_json::Value> {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("rabbitmqctl JSON: {e}: {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topology_matches_the_design_table() {
    let exchange = unique("src");
    let classic = spec_of(&topo {}, "topo", |s| {
        if let Some(b) = &mut s.binding {
            b.exchange = exchange.clone().into();
        }
    });
    let quorum = spec_of(&topo_quorum {}, "topo-quorum", |_| {});
    let _cleanup = Cleanup::specs(&[&classic, &quorum]);
    let (c, q) = (classic.clone(), quorum.clone());
    let running = app()
        .consumer_with(topo {}, move |s| *s = c)
        .consumer_with(topo_quorum {}, move |s| *s = q)
        .start()
        .await
        .unwrap();

    let queues = json_rows(&rabbitmqctl(&[
        "list_queues",
        "name",
        "durable",
        "arguments",
        "type",
    ]));
    let find = |name: &str| {
        queues
            .iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("queue {name} not declared; have {queues:?}"))
            .clone()
    };
    let work = find(&classic.queue);
    assert_eq!(work["durable"], true);
    assert_eq!(
        argument(&work, "x-dead-letter-exchange"),
        Some(json!(classic.dlx))
    );
    assert_eq!(
        argument(&work, "x-dead-letter-routing-key"),
        Some(json!(classic.dlq))
    );
    assert_eq!(argument(&work, "x-queue-type"), None);
    assert_eq!(find(&classic.dlq)["durable"], true);
    for ms in [200, 400, 800] {
        let d = find(&format!("{}.retry.{ms}", classic.queue));
        assert_eq!(d["durable"], true);
        assert_eq!(argument(&d, "x-message-ttl"), Some(json!(ms)));
        assert_eq!(argument(&d, "x-dead-letter-exchange"), Some(json!("")));
        assert_eq!(
            argument(&d, "x-dead-letter-routing-key"),
            Some(json!(classic.queue))
        );
    }
    assert!(
        !queues
            .iter()
            .any(|r| r["name"] == format!("{}.retry.1600", classic.queue))
    );
    let qw = find(&quorum.queue);
    assert_eq!(qw["type"], "quorum");
    assert_eq!(argument(&qw, "x-queue-type"), Some(json!("quorum")));
    // max_retries = 0 still declares the requeue delay queue.
    assert_eq!(
        argument(
            &find(&format!("{}.retry.1000", quorum.queue)),
            "x-message-ttl"
        ),
        Some(json!(1000))
    );

    let exchanges = json_rows(&rabbitmqctl(&["list_exchanges", "name", "type", "durable"]));
    let ex = |name: &str| exchanges.iter().find(|r| r["name"] == name).cloned();
    assert_eq!(
        ex(&classic.dlx).map(|r| (r["type"].clone(), r["durable"].clone())),
        Some((json!("direct"), json!(true)))
    );
    assert_eq!(
        ex(&exchange).map(|r| (r["type"].clone(), r["durable"].clone())),
        Some((json!("topic"), json!(true)))
    );

    let bindings = json_rows(&rabbitmqctl(&[
        "list_bindings",
        "source_name",
        "destination_name",
        "routing_key",
    ]));
    let bound = |src: &str, dst: &str, key: &str| {
        bindings.iter().any(|r| {
            r["source_name"] == src && r["destination_name"] == dst && r["routing_key"] == key
        })
    };
    assert!(
        bound(&classic.dlx, &classic.dlq, &classic.dlq),
        "DLQ bound to DLX with its name"
    );
    assert!(
        bound(&exchange, &classic.queue, "order.#"),
        "work queue bound to the source exchange"
    );

    running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_queue_with_other_arguments_is_a_clear_startup_error() {
    let broker = Broker::connect().await;
    let spec = spec_of(&topo {}, "inequivalent", |s| s.binding = None);
    let _cleanup = Cleanup::specs(&[&spec]);
    // Someone declared the queue earlier without a dead-letter exchange.
    broker
        .declare_queue(&spec.queue, FieldTable::default())
        .await;
    let s = spec.clone();
    let err = app()
        .consumer_with(topo {}, move |x| *x = s)
        .start()
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains(&format!("queue `{}`", spec.queue)), "{err}");
    assert!(err.contains("x-dead-letter-exchange"), "{err}");
    assert!(err.contains("is none on the broker"), "{err}");
    assert!(err.contains(&format!("'{}'", spec.dlx)), "{err}");
}

// ---------------------------------------------------------------- 1,000 good messages

static GOOD_SEEN: Mutex<Vec<String>> = Mutex::new(Vec::new());

#[mqkit::consumer(queue = "good", prefetch = 50)]
async fn good(e: Event) -> Result<(), HandlerError> {
    GOOD_SEEN.lock().unwrap().push(e.id);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_good_messages_are_each_handled_once_and_acked() {
    let broker = Broker::connect().await;
    let (spec, running, _cleanup) = start(good {}, "good", app()).await;
    let publisher = running.publisher().clone();
    for i in 0..1000 {
        publisher
            .publish_json(
                "",
                &spec.queue,
                &json!({"id": format!("g{i}"), "amount": i}),
            )
            .await
            .unwrap();
    }
    assert!(
        eventually(Duration::from_secs(60), async || GOOD_SEEN
            .lock()
            .unwrap()
            .len()
            >= 1000)
        .await
    );
    // Let any stray redelivery show up before counting.
    tokio::time::sleep(Duration::from_millis(300)).await;
    running.shutdown().await.unwrap();

    let seen = GOOD_SEEN.lock().unwrap().clone();
    assert_eq!(seen.len(), 1000, "each message handled exactly once");
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 1000);
    // After the consumer's channel closed, anything unacked would be ready again.
    assert_eq!(
        broker.depth(&spec.queue).await,
        0,
        "nothing left or unacked"
    );
    assert_eq!(broker.depth(&spec.dlq).await, 0, "nothing dead-lettered");
}

// ---------------------------------------------------------------- retries

static ALWAYS_CALLS: Mutex<Vec<Instant>> = Mutex::new(Vec::new());

#[mqkit::consumer(queue = "always-fails", max_retries = 2, retry_delay = "300ms")]
async fn always_fails(_e: Event) -> Result<(), HandlerError> {
    ALWAYS_CALLS.lock().unwrap().push(Instant::now());
    Err(std::io::Error::other("ledger unavailable").into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_failure_is_retried_with_growing_delays_then_dead_lettered() {
    let broker = Broker::connect().await;
    let (spec, running, _cleanup) = start(always_fails {}, "always-fails", app()).await;
    let started = std::time::SystemTime::now();
    running
        .publisher()
        .publish_json("", &spec.queue, &json!({"id": "r1", "amount": 1}))
        .await
        .unwrap();
    assert!(
        eventually(Duration::from_secs(20), async || broker
            .depth(&spec.dlq)
            .await
            == 1)
        .await
    );
    tokio::time::sleep(Duration::from_millis(700)).await; // no further attempt may follow
    running.shutdown().await.unwrap();

    let calls = ALWAYS_CALLS.lock().unwrap().clone();
    assert_eq!(calls.len(), 3, "max_retries + 1 runs");
    assert!(
        calls[1] - calls[0] >= Duration::from_millis(300),
        "{:?}",
        calls[1] - calls[0]
    );
    assert!(
        calls[2] - calls[1] >= Duration::from_millis(600),
        "{:?}",
        calls[2] - calls[1]
    );

    let dead = broker.drain(&spec.dlq).await;
    assert_eq!(dead.len(), 1);
    let p = &dead[0].delivery.properties;
    assert_eq!(
        header(p, "x-mqkit-error-kind").as_deref(),
        Some("retries-exhausted")
    );
    assert_eq!(header(p, "x-mqkit-attempts").as_deref(), Some("3"));
    assert_eq!(
        header(p, "x-mqkit-error").as_deref(),
        Some("ledger unavailable")
    );
    assert_eq!(
        header(p, "x-mqkit-original-queue").as_deref(),
        Some(spec.queue.as_ref())
    );
    let failed_at = header(p, "x-mqkit-failed-at").unwrap();
    let failed_at = humantime_parse(&failed_at);
    assert!(
        failed_at >= started - Duration::from_secs(1),
        "failed-at {failed_at:?} is a real time"
    );
    assert_eq!(broker.depth(&spec.queue).await, 0);
}

fn humantime_parse(s: &str) -> std::time::SystemTime {
    // RFC 3339 with milliseconds, UTC: 2026-11-26T01:47:06.091Z
    let secs = |a: &str| a.parse::<u64>().unwrap();
    let (date, time) = s.trim_end_matches('Z').split_once('T').unwrap();
    let d: Vec<u64> = date.split('-').map(secs).collect();
    let (hms, _ms) = time.split_once('.').unwrap_or((time, "0"));
    let t: Vec<u64> = hms.split(':').map(secs).collect();
    // Days from civil (Howard Hinnant's algorithm), enough for a sanity check.
    let (y, m, day) = (d[0] as i64 - i64::from(d[1] <= 2), d[1] as i64, d[2] as i64);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    std::time::UNIX_EPOCH
        + Duration::from_secs(days as u64 * 86_400 + t[0] * 3600 + t[1] * 60 + t[2])
}

static FLAKY_CALLS: AtomicUsize = AtomicUsize::new(0);

#[mqkit::consumer(queue = "flaky", retry_delay = "200ms")]
async fn flaky(_e: Event, ctx: mqkit::Context) -> Result<(), HandlerError> {
    FLAKY_CALLS.fetch_add(1, Ordering::SeqCst);
    if ctx.attempt() == 1 {
        return Err(HandlerError::retry("first attempt fails"));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_fails_once_then_succeeds_runs_twice() {
    let broker = Broker::connect().await;
    let (spec, running, _cleanup) = start(flaky {}, "flaky", app()).await;
    running
        .publisher()
        .publish_json("", &spec.queue, &json!({"id": "f1", "amount": 1}))
        .await
        .unwrap();
    assert!(
        eventually(Duration::from_secs(10), async || FLAKY_CALLS
            .load(Ordering::SeqCst)
            >= 2)
        .await
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    running.shutdown().await.unwrap();
    assert_eq!(FLAKY_CALLS.load(Ordering::SeqCst), 2);
    assert_eq!(broker.depth(&spec.dlq).await, 0);
    assert_eq!(broker.depth(&spec.queue).await, 0);
    assert_eq!(broker.depth(&format!("{}.retry.200", spec.queue)).await, 0);
}

// ---------------------------------------------------------------- reject, decode, panic

static STRICT_OK: Mutex<Vec<String>> = Mutex::new(Vec::new());
static STRICT_CALLS: AtomicUsize = AtomicUsize::new(0);

#[mqkit::consumer(queue = "strict", max_retries = 1, retry_delay = "100ms")]
async fn strict(e: Event) -> Result<(), HandlerError> {
    STRICT_CALLS.fetch_add(1, Ordering::SeqCst);
    match e.kind.as_str() {
        "reject" => Err(HandlerError::reject(format!("order {} is invalid", e.id))),
        "panic" => panic!("kaboom"),
        _ => {
            STRICT_OK.lock().unwrap().push(e.id);
            Ok(())
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejects_and_undecodable_bodies_go_to_the_dlq_after_one_attempt() {
    let broker = Broker::connect().await;
    let (spec, running, _cleanup) = start(strict {}, "strict", app()).await;

    let bodies: [(&str, &[u8]); 6] = [
        ("invalid-json", b"{\"id\": \"x\", "),
        ("wrong-type", b"{\"id\": \"x\", \"amount\": \"ten\"}"),
        ("missing-field", b"{\"id\": \"x\"}"),
        ("non-utf8", b"{\"id\": \"\xff\xfe\", \"amount\": 1}"),
        ("empty", b""),
        ("array", b"[1, 2, 3]"),
    ];
    for (name, body) in bodies {
        let props = BasicProperties::default().with_message_id(name.into());
        broker.publish(&spec.queue, body, props).await;
    }
    broker
        .publish(
            &spec.queue,
            br#"{"id": "bad", "kind": "reject", "amount": 1}"#,
            BasicProperties::default().with_message_id("reject".into()),
        )
        .await;
    broker
        .publish(
            &spec.queue,
            br#"{"id": "p", "kind": "panic", "amount": 1}"#,
            BasicProperties::default().with_message_id("panic".into()),
        )
        .await;
    broker
        .publish(
            &spec.queue,
            br#"{"id": "after", "amount": 1}"#,
            BasicProperties::default(),
        )
        .await;

    // 6 decode + 1 reject + 1 panic (retried once, then exhausted).
    assert!(
        eventually(Duration::from_secs(15), async || broker
            .depth(&spec.dlq)
            .await
            == 8)
        .await
    );
    running.shutdown().await.unwrap();

    assert_eq!(
        STRICT_OK.lock().unwrap().as_slice(),
        ["after"],
        "the good message after them is handled"
    );
    assert_eq!(
        STRICT_CALLS.load(Ordering::SeqCst),
        1 + 2 + 1,
        "decode failures never reach the handler"
    );
    let dead = broker.drain(&spec.dlq).await;
    let by_id = |id: &str| {
        dead.iter()
            .find(|m| {
                m.delivery
                    .properties
                    .message_id()
                    .as_ref()
                    .map(|s| s.as_str())
                    == Some(id)
            })
            .unwrap_or_else(|| panic!("{id} not in the DLQ"))
    };
    for (name, body) in bodies {
        let m = by_id(name);
        let p = &m.delivery.properties;
        assert_eq!(
            header(p, "x-mqkit-error-kind").as_deref(),
            Some("decode"),
            "{name}"
        );
        assert_eq!(
            header(p, "x-mqkit-attempts").as_deref(),
            Some("1"),
            "{name}"
        );
        assert!(
            header(p, "x-mqkit-error")
                .unwrap()
                .starts_with("cannot decode Event"),
            "{name}"
        );
        assert_eq!(m.delivery.data, body, "{name}: body unchanged");
    }
    let r = &by_id("reject").delivery.properties;
    assert_eq!(header(r, "x-mqkit-error-kind").as_deref(), Some("rejected"));
    assert_eq!(header(r, "x-mqkit-attempts").as_deref(), Some("1"));
    assert_eq!(
        header(r, "x-mqkit-error").as_deref(),
        Some("order bad is invalid")
    );
    let p = &by_id("panic").delivery.properties;
    assert_eq!(
        header(p, "x-mqkit-error-kind").as_deref(),
        Some("retries-exhausted")
    );
    assert_eq!(header(p, "x-mqkit-error").as_deref(), Some("panic: kaboom"));
    assert_eq!(header(p, "x-mqkit-attempts").as_deref(), Some("2"));
}

#[mqkit::consumer(queue = "keeps", max_retries = 0)]
async fn keeps(_e: Event) -> Result<(), HandlerError> {
    Err(HandlerError::reject("no"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dlq_copy_is_persistent_and_keeps_body_and_properties() {
    let broker = Broker::connect().await;
    let (spec, running, _cleanup) = start(keeps {}, "keeps", app()).await;
    let mut headers = FieldTable::default();
    headers.insert("tenant".into(), AMQPValue::LongString("acme".into()));
    let props = BasicProperties::default()
        .with_content_type("application/json".into())
        .with_message_id("m-42".into())
        .with_correlation_id("c-7".into())
        .with_timestamp(1_700_000_000)
        .with_headers(headers)
        .with_delivery_mode(1); // transient on purpose
    let body = br#"{"id": "k1", "amount": 5}"#;
    broker
        .channel
        .basic_publish(
            "".into(),
            spec.queue.as_ref().into(),
            Default::default(),
            body,
            props,
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(
        eventually(Duration::from_secs(10), async || broker
            .depth(&spec.dlq)
            .await
            == 1)
        .await
    );
    running.shutdown().await.unwrap();
    let dead = broker.drain(&spec.dlq).await;
    let d = &dead[0].delivery;
    assert_eq!(d.data, body);
    let p = &d.properties;
    assert_eq!(
        *p.delivery_mode(),
        Some(2),
        "persistent whatever the original was"
    );
    assert_eq!(
        p.content_type().as_ref().map(|s| s.as_str()),
        Some("application/json")
    );
    assert_eq!(p.message_id().as_ref().map(|s| s.as_str()), Some("m-42"));
    assert_eq!(p.correlation_id().as_ref().map(|s| s.as_str()), Some("c-7"));
    assert_eq!(*p.timestamp(), Some(1_700_000_000));
    assert_eq!(header(p, "tenant").as_deref(), Some("acme"));
    assert_eq!(header(p, "x-mqkit-error-kind").as_deref(), Some("rejected"));
}

// ---------------------------------------------------------------- prefetch and concurrency

static SLOW_NOW: AtomicUsize = AtomicUsize::new(0);
static SLOW_MAX: AtomicUsize = AtomicUsize::new(0);
static SLOW_DONE: AtomicUsize = AtomicUsize::new(0);

#[mqkit::consumer(queue = "slow", prefetch = 5, concurrency = 5)]
async fn slow(_e: Event) -> Result<(), HandlerError> {
    let now = SLOW_NOW.fetch_add(1, Ordering::SeqCst) + 1;
    SLOW_MAX.fetch_max(now, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(150)).await;
    SLOW_NOW.fetch_sub(1, Ordering::SeqCst);
    SLOW_DONE.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefetch_and_concurrency_bound_unacked_messages_and_running_handlers() {
    let (spec, running, _cleanup) = start(slow {}, "slow", app()).await;
    // 100 waiting messages: the consumer could take far more than 5.
    for i in 0..100 {
        running
            .publisher()
            .publish_json(
                "",
                &spec.queue,
                &json!({"id": format!("s{i}"), "amount": i}),
            )
            .await
            .unwrap();
    }
    let mut max_unacked = 0u64;
    while SLOW_DONE.load(Ordering::SeqCst) < 100 {
        let text = tokio::task::spawn_blocking(|| {
            rabbitmqctl(&["list_queues", "name", "messages_unacknowledged"])
        })
        .await
        .unwrap();
        let rows = json_rows(&text);
        if let Some(n) = rows
            .iter()
            .find(|r| r["name"] == spec.queue.as_ref())
            .and_then(|r| r["messages_unacknowledged"].as_u64())
        {
            max_unacked = max_unacked.max(n);
        }
    }
    running.shutdown().await.unwrap();
    assert!(max_unacked <= 5, "unacked peaked at {max_unacked}");
    assert!(max_unacked >= 1, "the sampler saw the consumer at work");
    assert_eq!(
        SLOW_MAX.load(Ordering::SeqCst),
        5,
        "handlers ran 5 at once, never more"
    );
}

// ---------------------------------------------------------------- duplicates with Redis

static DEDUP_CALLS: AtomicUsize = AtomicUsize::new(0);

#[mqkit::consumer(queue = "dedup", idempotency = "id,kind")]
async fn dedup(_e: Event) -> Result<(), HandlerError> {
    DEDUP_CALLS.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_business_events_with_new_message_ids_run_the_handler_once() {
    let broker = Broker::connect().await;
    let (spec, running, _cleanup) = start(dedup {}, "dedup", app().redis_url(REDIS_URL)).await;
    // publish_json gives each copy a fresh message id.
    for _ in 0..3 {
        running
            .publisher()
            .publish_json(
                "",
                &spec.queue,
                &json!({"id": "o-1", "kind": "created", "amount": 1}),
            )
            .await
            .unwrap();
    }
    running
        .publisher()
        .publish_json(
            "",
            &spec.queue,
            &json!({"id": "o-1", "kind": "paid", "amount": 1}),
        )
        .await
        .unwrap();
    assert!(
        eventually(Duration::from_secs(10), async || broker
            .depth(&spec.queue)
            .await
            == 0
            && DEDUP_CALLS.load(Ordering::SeqCst) >= 2)
        .await
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    running.shutdown().await.unwrap();
    assert_eq!(DEDUP_CALLS.load(Ordering::SeqCst), 2, "once per (id, kind)");
    assert_eq!(broker.depth(&spec.dlq).await, 0);

    let pool = deadpool_redis::Config::from_url(REDIS_URL)
        .create_pool(Some(deadpool_redis::Runtime::Tokio1))
        .unwrap();
    let mut conn = pool.get().await.unwrap();
    for kind in ["created", "paid"] {
        let key = format!("mqkit:idem:{}:o-1:{kind}", spec.queue);
        let v: Option<String> = deadpool_redis::redis::cmd("GET")
            .arg(&key)
            .query_async(&mut *conn)
            .await
            .unwrap();
        assert_eq!(v.as_deref(), Some("done"), "{key}");
        let _: () = deadpool_redis::redis::cmd("DEL")
            .arg(&key)
            .query_async(&mut *conn)
            .await
            .unwrap();
    }
}

// ---------------------------------------------------------------- publisher

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_json_is_confirmed_persistent_and_unroutable_is_an_error() {
    let broker = Broker::connect().await;
    let queue = unique("publish-target");
    let _cleanup = Cleanup::specs(&[]).queue(&queue);
    broker.declare_queue(&queue, FieldTable::default()).await;
    let publisher = mqkit::Publisher::connect(common::AMQP_URL).await.unwrap();

    publisher
        .publish_json("", &queue, &json!({"id": "p1"}))
        .await
        .unwrap();
    let got = broker.drain(&queue).await;
    assert_eq!(got.len(), 1);
    let p = &got[0].delivery.properties;
    assert_eq!(*p.delivery_mode(), Some(2));
    assert_eq!(
        p.content_type().as_ref().map(|s| s.as_str()),
        Some("application/json")
    );
    assert!(p.message_id().is_some());
    assert_eq!(got[0].delivery.data, br#"{"id":"p1"}"#);

    let nowhere = unique("nowhere");
    let err = publisher
        .publish_json("", &nowhere, &json!({"id": "p2"}))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            mqkit::PublishError::Unroutable {
                reply_code: 312,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains(&nowhere), "{err}");
    // A missing exchange closes the publisher's channel; the next publish reopens it.
    let missing = unique("missing-exchange");
    assert!(
        publisher
            .publish_json(&missing, "k", &json!({}))
            .await
            .is_err()
    );
    publisher
        .publish_json("", &queue, &json!({"id": "p3"}))
        .await
        .unwrap();
    assert_eq!(broker.drain(&queue).await.len(), 1);

    publisher.close().await;
}

// ---------------------------------------------------------------- startup failure

#[test]
fn an_unreachable_broker_fails_startup_with_the_url_masked() {
    let started = Instant::now();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mqkit-test-service"))
        .env("MQKIT_AMQP_URL", "amqp://user:secret@127.0.0.1:1/%2f")
        .env("TEST_QUEUE", unique("unreachable"))
        .env("RUST_LOG", "debug")
        .output()
        .unwrap();
    let elapsed = started.elapsed();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "exit code must be non-zero: {text}");
    assert!(elapsed < Duration::from_secs(30), "took {elapsed:?}");
    assert!(text.contains("amqp://user:****@127.0.0.1:1/%2f"), "{text}");
    assert!(text.contains("Check that RabbitMQ is running"), "{text}");
    assert!(!text.contains("secret"), "password leaked: {text}");
}
