//! Shared fixtures for the broker tests: unique names, an inspection
//! connection, reading queues back, and cleanup that runs even when a test
//! fails.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lapin::options::{
    BasicGetOptions, BasicRejectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use mqkit::ConsumerSpec;

pub(crate) const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
pub(crate) const REDIS_URL: &str = "redis://127.0.0.1:6379";

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A name no other test run uses.
pub(crate) fn unique(name: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "mqkit-test.{name}.{}.{}.{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        nanos
    )
}

/// Gives `spec` a unique queue, DLX and DLQ, and short retry delays.
pub(crate) fn isolate(spec: &mut ConsumerSpec, name: &str) {
    let q = unique(name);
    spec.dlq = format!("dlq.{q}").into();
    spec.dlx = format!("{q}.dlx").into();
    spec.queue = q.into();
}

/// A connection and channel for looking at the broker from the outside.
pub(crate) struct Broker {
    pub(crate) connection: Connection,
    pub(crate) channel: Channel,
}

impl Broker {
    pub(crate) async fn connect() -> Broker {
        Broker::connect_to(AMQP_URL).await
    }

    /// The same on another node (a test cluster's).
    pub(crate) async fn connect_to(url: &str) -> Broker {
        let connection = Connection::connect(url, ConnectionProperties::default())
            .await
            .unwrap_or_else(|e| {
                panic!("RabbitMQ at {url} (the default node starts with `rabbitmq-server -detached`): {e}")
            });
        let channel = connection.create_channel().await.unwrap();
        Broker {
            connection,
            channel,
        }
    }

    /// Declares a durable queue with `arguments`.
    pub(crate) async fn declare_queue(&self, queue: &str, arguments: FieldTable) {
        self.channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    durable: true,
                    ..QueueDeclareOptions::default()
                },
                arguments,
            )
            .await
            .unwrap_or_else(|e| panic!("declare {queue}: {e}"));
    }

    /// The queue's counts by passive declare; `None` when it does not exist.
    async fn passive(&self, queue: &str) -> Option<lapin::Queue> {
        let ch = self.connection.create_channel().await.unwrap();
        let q = ch
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .ok();
        if ch.status().connected() {
            let _ = ch.close(200, "OK".into()).await;
        }
        q
    }

    /// Ready messages in `queue`, which must exist.
    pub(crate) async fn depth(&self, queue: &str) -> u32 {
        self.passive(queue)
            .await
            .unwrap_or_else(|| panic!("queue {queue} should exist"))
            .message_count()
    }

    /// Consumers on `queue`; `None` when it does not exist.
    pub(crate) async fn consumers(&self, queue: &str) -> Option<u32> {
        self.passive(queue).await.map(|q| q.consumer_count())
    }

    /// Publishes a raw body to the default exchange, persistent.
    pub(crate) async fn publish(&self, queue: &str, body: &[u8], props: BasicProperties) {
        self.channel
            .basic_publish(
                "".into(),
                queue.into(),
                lapin::options::BasicPublishOptions::default(),
                body,
                props.with_delivery_mode(2),
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }

    /// Takes every message from `queue` (acking them).
    pub(crate) async fn drain(&self, queue: &str) -> Vec<lapin::message::BasicGetMessage> {
        let mut out = Vec::new();
        while let Some(m) = self
            .channel
            .basic_get(queue.into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
        {
            out.push(m);
        }
        out
    }

    /// Looks at every message of `queue` without consuming them.
    pub(crate) async fn peek(&self, queue: &str) -> Vec<lapin::message::BasicGetMessage> {
        let ch = self.connection.create_channel().await.unwrap();
        let mut out = Vec::new();
        while let Some(m) = ch
            .basic_get(queue.into(), BasicGetOptions { no_ack: false })
            .await
            .unwrap()
        {
            out.push(m);
        }
        for m in &out {
            m.delivery
                .acker
                .reject(BasicRejectOptions { requeue: true })
                .await
                .unwrap();
        }
        let _ = ch.close(200, "OK".into()).await;
        out
    }

    /// Deletes everything mqkit declares for `spec`.
    pub(crate) async fn cleanup(&self, spec: &ConsumerSpec) {
        for q in spec.declared_queues() {
            let _ = self
                .channel
                .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
                .await;
        }
        for e in spec.declared_exchanges() {
            let _ = self
                .channel
                .exchange_delete(
                    e.as_str().into(),
                    lapin::options::ExchangeDeleteOptions::default(),
                )
                .await;
        }
    }
}

/// Deletes what the given specs declared when dropped, so a failing test
/// leaves nothing behind. Runs on its own thread and runtime because `Drop`
/// cannot await.
pub(crate) struct Cleanup {
    pub(crate) specs: Vec<ConsumerSpec>,
    pub(crate) queues: Vec<String>,
    /// Redis key patterns (`SCAN MATCH`) to delete from the shared Redis.
    pub(crate) keys: Vec<String>,
}

impl Cleanup {
    /// Deletes what each spec declared and its idempotency keys.
    pub(crate) fn specs(specs: &[&ConsumerSpec]) -> Cleanup {
        Cleanup {
            specs: specs.iter().map(|s| (*s).clone()).collect(),
            queues: Vec::new(),
            keys: Vec::new(),
        }
    }

    /// Also deletes this queue.
    pub(crate) fn queue(mut self, queue: &str) -> Cleanup {
        self.queues.push(queue.to_owned());
        self
    }

    /// Also deletes the shared Redis's keys matching `pattern`.
    pub(crate) fn keys(mut self, pattern: &str) -> Cleanup {
        self.keys.push(pattern.to_owned());
        self
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let specs = std::mem::take(&mut self.specs);
        let queues = std::mem::take(&mut self.queues);
        let mut keys = std::mem::take(&mut self.keys);
        keys.extend(specs.iter().map(|s| format!("mqkit:idem:{}:*", s.queue)));
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                if !specs.is_empty() || !queues.is_empty() {
                    let broker = Broker::connect().await;
                    for spec in &specs {
                        broker.cleanup(spec).await;
                    }
                    for q in &queues {
                        let _ = broker
                            .channel
                            .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
                            .await;
                    }
                    let _ = broker.connection.close(200, "OK".into()).await;
                }
                for pattern in &keys {
                    delete_keys(pattern).await;
                }
            });
        });
        let _ = done.join();
    }
}

/// Deletes the keys matching `pattern` that a test left in the shared Redis.
async fn delete_keys(pattern: &str) {
    use deadpool_redis::redis;
    let Ok(client) = redis::Client::open(REDIS_URL) else {
        return;
    };
    let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
        return;
    };
    let mut cursor = 0u64;
    loop {
        let Ok((next, keys)) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async::<(u64, Vec<String>)>(&mut conn)
            .await
        else {
            return;
        };
        if !keys.is_empty() {
            let _ = redis::cmd("DEL")
                .arg(&keys)
                .query_async::<i64>(&mut conn)
                .await;
        }
        if next == 0 {
            return;
        }
        cursor = next;
    }
}

/// The value of argument `name` in a `rabbitmqctl --formatter json` row's
/// `arguments` list (`[[name, type, value], …]`).
pub(crate) fn argument(row: &serde_json::Value, name: &str) -> Option<serde_json::Value> {
    row["arguments"]
        .as_array()?
        .iter()
        .find(|a| a[0] == name)
        .map(|a| a[2].clone())
}

/// Polls `check` until it holds or `timeout` passes; returns whether it held.
pub(crate) async fn eventually(timeout: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A header value as text.
pub(crate) fn header(props: &BasicProperties, name: &str) -> Option<String> {
    let v = props.headers().as_ref()?.inner().get(name)?.clone();
    Some(match v {
        AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        AMQPValue::ShortString(s) => s.to_string(),
        AMQPValue::LongLongInt(n) => n.to_string(),
        AMQPValue::LongInt(n) => n.to_string(),
        other => format!("{other:?}"),
    })
}

/// Runs `rabbitmqctl` and returns its stdout (JSON formatter).
pub(crate) fn rabbitmqctl(args: &[&str]) -> String {
    let out = std::process::Command::new("rabbitmqctl")
        .args(args)
        .args(["--formatter", "json", "--quiet"])
        .output()
        .expect("rabbitmqctl on PATH");
    assert!(
        out.status.success(),
        "rabbitmqctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A child process's stderr, line by line with when each arrived, read by
/// a thread of its own (so a test can wait for a line while the child runs).
#[derive(Clone, Default)]
pub(crate) struct StderrLines(Arc<Mutex<Vec<(Instant, String)>>>);

impl StderrLines {
    /// Spawns `cmd` with stdout discarded and stderr collected.
    pub(crate) fn spawn(cmd: &mut Command) -> (Child, StderrLines) {
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = StderrLines::default();
        let stderr = child.stderr.take().unwrap();
        let sink = lines.0.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push((Instant::now(), line));
            }
        });
        (child, lines)
    }

    /// Everything so far, one line per line.
    pub(crate) fn text(&self) -> String {
        let lines = self.0.lock().unwrap();
        lines
            .iter()
            .map(|(_, l)| l.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The first line containing every one of `parts`.
    pub(crate) fn find(&self, parts: &[&str]) -> Option<String> {
        let lines = self.0.lock().unwrap();
        lines
            .iter()
            .find(|(_, l)| parts.iter().all(|p| l.contains(p)))
            .map(|(_, l)| l.clone())
    }

    /// How many lines contain `text`.
    pub(crate) fn count(&self, text: &str) -> usize {
        let lines = self.0.lock().unwrap();
        lines.iter().filter(|(_, l)| l.contains(text)).count()
    }

    /// When the first line containing `text` arrived after `after`.
    pub(crate) fn first_after(&self, text: &str, after: Instant) -> Option<Instant> {
        let lines = self.0.lock().unwrap();
        lines
            .iter()
            .find(|(t, l)| *t >= after && l.contains(text))
            .map(|(t, _)| *t)
    }
}
