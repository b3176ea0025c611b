//! Feature `otel` against the real broker: the delivery span is exported
//! with the incoming `traceparent` as its parent and the messaging
//! semantic-convention attributes; a follow-up's `traceparent` names that
//! span as its parent; a failure sets `error.type`; a handler's own log
//! line carries the queue and the message id. Spans go to the SDK's
//! in-memory exporter through `tracing-opentelemetry`, as they would go to
//! OTLP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Broker, Cleanup, eventually, header, isolate, unique};
use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use mqkit::{App, Consumer, HandlerError};
use opentelemetry::trace::{SpanId, SpanKind, TraceId, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use serde::Deserialize;
use serde_json::json;
use tracing_subscriber::layer::SubscriberExt as _;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";

#[derive(Debug, Deserialize)]
struct Hop {
    to: String,
}

#[mqkit::consumer(queue = "otel-hop", max_retries = 0)]
async fn hop(msg: Hop, ctx: mqkit::Context) -> Result<(), HandlerError> {
    tracing::info!("handler says hello");
    ctx.publisher()
        .publish_json("", &msg.to, &json!({"hopped": true}))
        .await?;
    Ok(())
}

/// Log output captured in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

fn attribute(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_delivery_span_continues_the_incoming_trace_with_messaging_attributes() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let logs = Captured::default();
    let sink = logs.clone();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new("info"))
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")))
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(move || sink.clone()),
        );
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let mut spec = hop {}.spec();
    isolate(&mut spec, "otel");
    let follow = unique("otel-follow");
    let _cleanup = Cleanup::specs(&[&spec]).queue(&follow);
    let broker = Broker::connect().await;
    broker.declare_queue(&follow, FieldTable::default()).await;
    let s = spec.clone();
    let running = App::new()
        .amqp_url(common::AMQP_URL)
        .consumer_with(hop {}, move |x| *x = s)
        .start()
        .await
        .unwrap();
    let q = spec.queue.to_string();
    let mut headers = FieldTable::default();
    headers.insert(
        ShortString::from("traceparent"),
        AMQPValue::LongString(LongString::from(format!("00-{TRACE}-{PARENT}-01"))),
    );
    let props = BasicProperties::default()
        .with_message_id("m-otel".into())
        .with_headers(headers);
    broker
        .publish(&q, json!({"to": follow}).to_string().as_bytes(), props)
        .await;
    broker
        .publish(
            &q,
            b"not json",
            BasicProperties::default().with_message_id("m-bad".into()),
        )
        .await;

    let mut followed = Vec::new();
    assert!(
        eventually(Duration::from_secs(20), async || {
            followed.extend(broker.drain(&follow).await);
            !followed.is_empty()
        })
        .await
    );
    let mut spans = Vec::new();
    assert!(
        eventually(Duration::from_secs(10), async || {
            let _ = provider.force_flush();
            spans = exporter.get_finished_spans().unwrap();
            spans
                .iter()
                .filter(|s| s.name == format!("{q} process"))
                .count()
                >= 2
        })
        .await,
        "{spans:#?}"
    );
    let ours: Vec<&SpanData> = spans
        .iter()
        .filter(|s| s.name == format!("{q} process"))
        .collect();
    let traced = ours
        .iter()
        .find(|s| attribute(s, "messaging.message.id").as_deref() == Some("m-otel"))
        .expect("the span of the traced delivery");
    assert_eq!(
        traced.span_context.trace_id(),
        TraceId::from_hex(TRACE).unwrap()
    );
    assert_eq!(traced.parent_span_id, SpanId::from_hex(PARENT).unwrap());
    assert!(traced.parent_span_is_remote);
    assert_eq!(traced.span_kind, SpanKind::Consumer);
    assert_eq!(
        attribute(traced, "messaging.system").as_deref(),
        Some("rabbitmq")
    );
    assert_eq!(
        attribute(traced, "messaging.destination.name").as_deref(),
        Some(q.as_str())
    );
    assert_eq!(
        attribute(traced, "messaging.operation.type").as_deref(),
        Some("process")
    );
    assert_eq!(attribute(traced, "error.type"), None);

    // The follow-up's parent is the delivery span (a new parent id).
    let tp = header(&followed[0].delivery.properties, "traceparent").unwrap();
    let span_id = traced.span_context.span_id();
    assert_eq!(tp, format!("00-{TRACE}-{span_id}-01"));

    // The undecodable one: its own trace, and error.type = decode.
    let bad = ours
        .iter()
        .find(|s| attribute(s, "messaging.message.id").as_deref() == Some("m-bad"))
        .expect("the span of the bad delivery");
    assert_eq!(attribute(bad, "error.type").as_deref(), Some("decode"));
    assert_ne!(
        bad.span_context.trace_id(),
        TraceId::from_hex(TRACE).unwrap()
    );

    // The handler's own line carries the delivery's queue and message id.
    let text = logs.text();
    let line = text
        .lines()
        .find(|l| l.contains("handler says hello"))
        .unwrap_or_else(|| panic!("no handler line in:\n{text}"));
    assert!(line.contains(&format!("queue=\"{q}\"")), "{line}");
    assert!(line.contains("message_id=\"m-otel\""), "{line}");
    running.shutdown().await.unwrap();
}

/// With `dlq` and `cli` in the build (as here), reqwest has rustls without
/// a bundled crypto provider, and the OTLP exporter's client would panic
/// when built; `init_logging` installs ring's provider first. Run in a
/// child process, since the subscriber and the provider are process-wide.
#[test]
fn the_otlp_exporter_builds_in_a_build_with_the_dead_letter_features() {
    const NAME: &str = "the_otlp_exporter_builds_in_a_build_with_the_dead_letter_features";
    if std::env::var_os("MQKIT_TEST_OTLP_CHILD").is_some() {
        mqkit::init_logging();
        tracing::info!("logging with OTLP export installed");
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", NAME, "--nocapture", "--test-threads", "1"])
        .env("MQKIT_TEST_OTLP_CHILD", "1")
        // Nothing listens there; spans are dropped, startup must not fail.
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stdout.contains("1 passed"), "{stdout}");
}
