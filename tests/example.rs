//! The README's complete service (`examples/order_service.rs`) as a user
//! runs it, against the real broker and PostgreSQL: without
//! `MQKIT_REDIS_URL` it warns about the in-process store, charges an order
//! once (a row in `order_charges`), its follow-up reaches the receipt
//! consumer with the order's message id as correlation id, the probes
//! answer, and SIGTERM ends it with exit 0; a bad per-consumer override
//! makes it exit non-zero naming the variable. The README's copy of the
//! example is the file itself.
//!
//! Queue `order` (and `receipts`, exchange `billing`) are the example's
//! fixed topology; it stays declared. Each test's orders have unique ids,
//! and the rows and any message of theirs left behind are deleted.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/http.rs"]
mod probe;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{Broker, StderrLines, unique};
use lapin::BasicProperties;
use lapin::options::{BasicAckOptions, BasicGetOptions, BasicNackOptions};
use serde_json::json;

const PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// Two copies of the service would share queue `order` (and race on
/// `CREATE TABLE IF NOT EXISTS`): one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The example's binary, built by the Cargo running this test (so it is
/// current even when this test runs alone) as the README's
/// `cargo run -p mqkit-examples --example order_service` builds it; cached
/// after the first time. The path comes from Cargo's own report, wherever
/// the target directory is.
fn example_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| build_example("order_service"))
}

/// `examples/payment_service.rs`, built as `example_binary` builds its.
fn payment_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| build_example("payment_service"))
}

fn build_example(name: &str) -> PathBuf {
    let out = Command::new(env!("CARGO"))
        .args(["build", "-p", "mqkit-examples"])
        .args(["--example", name])
        .args(["--message-format", "json-render-diagnostics"])
        .current_dir(workspace())
        .stderr(Stdio::piped())
        .output()
        .expect("run cargo");
    assert!(
        out.status.success(),
        "cargo build --example {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == name)
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .expect("cargo reports the example's executable")
}

/// The example running as a child process, its stderr collected line by line.
struct Service {
    child: Child,
    lines: StderrLines,
}

impl Service {
    /// Starts the example with `env` on top of an environment cleared of
    /// every `MQKIT_*` variable and `DATABASE_URL` (so the defaults apply).
    fn start(env: &[(&str, &str)]) -> Service {
        Service::start_binary(example_binary(), env)
    }

    fn start_binary(binary: &Path, env: &[(&str, &str)]) -> Service {
        let mut cmd = Command::new(binary);
        for (k, _) in std::env::vars() {
            if k.starts_with("MQKIT_") || k == "DATABASE_URL" {
                cmd.env_remove(k);
            }
        }
        cmd.env("RUST_LOG", "info").env("NO_COLOR", "1");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let (child, lines) = StderrLines::spawn(&mut cmd);
        Service { child, lines }
    }

    fn log(&self) -> String {
        self.lines.text()
    }

    /// The first stderr line containing every one of `parts`, waiting up to
    /// `timeout` for it.
    async fn line(&self, parts: &[&str], timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let found = self.lines.find(parts);
            if found.is_some() || Instant::now() > deadline {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for exit; `None` if it is still running after `timeout`.
    async fn exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Let the reader thread take the last lines.
                tokio::time::sleep(Duration::from_millis(100)).await;
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Deletes, when dropped (after the service it guards is gone), the rows
/// of the test's orders; after a failure also any message mentioning them
/// still in the example's queues (other messages are put back; a passing
/// test leaves none, so it touches no one else's).
struct Leftovers {
    order_ids: Vec<String>,
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        let ids = std::mem::take(&mut self.order_ids);
        let failed = std::thread::panicking();
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                if let Ok(pool) = sqlx::PgPool::connect(PG_URL).await {
                    let _ = sqlx::query("DELETE FROM order_charges WHERE order_id = ANY($1)")
                        .bind(&ids)
                        .execute(&pool)
                        .await;
                }
                if !failed {
                    return;
                }
                let broker = Broker::connect().await;
                for queue in ["order", "receipts", "dlq.order", "dlq.receipts"] {
                    remove_messages(&broker, queue, &ids).await;
                }
                let _ = broker.connection.close(200, "OK".into()).await;
            });
        });
        let _ = done.join();
    }
}

/// Acks the messages of `queue` whose body names one of `ids`, and
/// requeues the others.
async fn remove_messages(broker: &Broker, queue: &str, ids: &[String]) {
    let Ok(ch) = broker.connection.create_channel().await else {
        return;
    };
    let mut others = Vec::new();
    while let Ok(Some(m)) = ch
        .basic_get(queue.into(), BasicGetOptions { no_ack: false })
        .await
    {
        let body = String::from_utf8_lossy(&m.delivery.data).into_owned();
        if ids.iter().any(|id| body.contains(id.as_str())) {
            let _ = m.delivery.acker.ack(BasicAckOptions::default()).await;
        } else {
            others.push(m);
        }
    }
    for m in others {
        let _ = m
            .delivery
            .acker
            .nack(BasicNackOptions {
                requeue: true,
                ..BasicNackOptions::default()
            })
            .await;
    }
    let _ = ch.close(200, "OK".into()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_it_warns_charges_once_serves_probes_and_sigterm_exits_0() {
    let _one = ONE_AT_A_TIME.lock().await;
    let order_id = unique("example-order");
    let _leftovers = Leftovers {
        order_ids: vec![order_id.clone()],
    };
    let mut service = Service::start(&[("MQKIT_HTTP_ADDR", "127.0.0.1:0")]);

    let warning = service
        .line(&["MQKIT_REDIS_URL is not set"], Duration::from_secs(60))
        .await;
    assert!(
        warning.as_deref().is_some_and(|l| l.contains("WARN")),
        "no in-process store warning on stderr:\n{}",
        service.log()
    );
    let serving = service
        .line(&["serving /livez"], Duration::from_secs(60))
        .await
        .unwrap_or_else(|| panic!("no probe address logged:\n{}", service.log()));
    let addr: std::net::SocketAddr = serving
        .split("addr=")
        .nth(1)
        .and_then(|a| a.split_whitespace().next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {serving:?}"));
    for queue in ["order", "receipts"] {
        assert!(
            service
                .line(
                    &["consuming", &format!("queue=\"{queue}\"")],
                    Duration::from_secs(60)
                )
                .await
                .is_some(),
            "not consuming {queue}:\n{}",
            service.log()
        );
    }
    let (status, body) = probe::get(addr, "/readyz").await;
    assert_eq!(status, 200, "{body}");
    let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
    for queue in ["order", "receipts"] {
        assert!(
            ready["consumers"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["queue"] == queue && c["state"] == "consuming"),
            "{body}"
        );
    }

    // One order, published as a checkout would: charged once, then the
    // receipt consumer gets the follow-up, correlated with the order.
    let broker = Broker::connect().await;
    let message_id = unique("example-msg");
    let order = json!({"order_id": order_id, "event_type": "created", "amount_cents": 1234});
    broker
        .publish(
            "order",
            order.to_string().as_bytes(),
            BasicProperties::default()
                .with_content_type("application/json".into())
                .with_message_id(message_id.as_str().into()),
        )
        .await;
    let receipt = service
        .line(
            &["receipt sent", &format!("order_id={order_id} ")],
            Duration::from_secs(30),
        )
        .await
        .unwrap_or_else(|| panic!("no receipt for {order_id}:\n{}", service.log()));
    assert!(
        receipt.contains(&format!("correlation_id=\"{message_id}\"")),
        "{receipt}"
    );
    assert!(
        receipt.contains(&format!("message_id=\"charged:{order_id}:created\"")),
        "{receipt}"
    );
    let pool = sqlx::PgPool::connect(PG_URL)
        .await
        .expect("PostgreSQL on 127.0.0.1:5432");
    let rows: Vec<(i64, Option<String>)> =
        sqlx::query_as("SELECT amount_cents, message_id FROM order_charges WHERE order_id = $1")
            .bind(&order_id)
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(rows, vec![(1234, Some(message_id.clone()))]);
    let (status, metrics) = probe::get(addr, "/metrics").await;
    assert_eq!(status, 200);
    let samples = probe::parse(&metrics);
    for queue in ["order", "receipts"] {
        let acks = probe::value(
            &samples,
            "mqkit_messages_total",
            &[("queue", queue), ("outcome", "ack")],
        );
        assert!(acks.is_some_and(|n| n >= 1.0), "{queue}: {acks:?}");
    }

    assert!(
        Command::new("kill")
            .args(["-TERM", &service.child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let status = service.exit(Duration::from_secs(40)).await;
    assert!(
        status.is_some_and(|s| s.code() == Some(0)),
        "SIGTERM should end it with exit 0, got {status:?}:\n{}",
        service.log()
    );
    assert!(
        service.log().contains("shutdown signal received"),
        "{}",
        service.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefetch_override_of_0_fails_startup_naming_the_variable() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut service = Service::start(&[("MQKIT_CONSUMER_ORDER_PREFETCH", "0")]);
    let status = service
        .exit(Duration::from_secs(60))
        .await
        .unwrap_or_else(|| panic!("still running with prefetch 0:\n{}", service.log()));
    let stderr = service.log();
    assert!(!status.success(), "{status:?}\n{stderr}");
    assert!(
        stderr.contains("MQKIT_CONSUMER_ORDER_PREFETCH=\"0\""),
        "{stderr}"
    );
    assert!(
        !stderr.contains("connected to RabbitMQ"),
        "checked before connecting:\n{stderr}"
    );
}

/// README "A complete service" shows `examples/order_service.rs` as it is,
/// and "Exactly-once effects on a database" `examples/payment_service.rs`.
#[test]
fn the_readme_shows_the_examples_verbatim() {
    let readme = std::fs::read_to_string(workspace().join("README.md")).unwrap();
    for (file, marker) in [
        ("examples/order_service.rs", "async fn on_order("),
        ("examples/payment_service.rs", "async fn capture("),
    ] {
        let example = std::fs::read_to_string(workspace().join(file)).unwrap();
        let block = readme
            .split("```rust,ignore\n")
            .filter_map(|rest| rest.split_once("\n```\n").map(|(code, _)| code))
            .find(|code| code.contains(marker))
            .unwrap_or_else(|| panic!("README has {file} in a ```rust,ignore block"));
        assert_eq!(
            block.trim_end(),
            example.trim_end(),
            "README.md's copy differs from {file}: copy the file into the block"
        );
    }
}

/// The transactional example end to end: a payment debits its account
/// once (a second copy under a new message id is a duplicate), its
/// `payment.captured` reaches `payment-receipts` once, and a payment the
/// account cannot cover is rejected with no debit and no event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_payment_service_debits_once_and_announces_once() {
    let service = Service::start_binary(payment_binary(), &[]);
    service
        .line(&["consuming", "payment-receipts"], Duration::from_secs(60))
        .await
        .unwrap_or_else(|| panic!("payment_service did not start:\n{}", service.log()));
    let account = unique("acct").replace('.', "-");
    let pay = unique("pay").replace('.', "-");
    let big = unique("big").replace('.', "-");
    let _rows = PaymentRows(account.clone());
    let pg = sqlx::PgPool::connect(PG_URL).await.unwrap();
    sqlx::query("INSERT INTO accounts (id, balance_cents) VALUES ($1, 1000)")
        .bind(&account)
        .execute(&pg)
        .await
        .unwrap();
    let broker = Broker::connect().await;
    let props = |id: &str| {
        BasicProperties::default()
            .with_message_id(id.into())
            .with_content_type("application/json".into())
    };
    let ok = json!({"payment_id": pay, "account": account, "amount_cents": 300}).to_string();
    let too_big = json!({"payment_id": big, "account": account, "amount_cents": 5000}).to_string();
    broker
        .publish("payment", ok.as_bytes(), props(&format!("{pay}-1")))
        .await;
    broker
        .publish("payment", ok.as_bytes(), props(&format!("{pay}-2")))
        .await;
    broker
        .publish("payment", too_big.as_bytes(), props(&big))
        .await;
    let captured = service
        .line(
            &["payment.captured received", &pay],
            Duration::from_secs(30),
        )
        .await;
    assert!(
        captured.is_some(),
        "no payment.captured:\n{}",
        service.log()
    );
    let rejected = service
        .line(
            &["dead-lettered", "kind=rejected", "has less than 5000 cents"],
            Duration::from_secs(30),
        )
        .await;
    assert!(
        rejected.is_some(),
        "the big payment was not rejected:\n{}",
        service.log()
    );
    service
        .line(&["duplicate", &format!("{pay}-")], Duration::from_secs(30))
        .await
        .unwrap_or_else(|| panic!("no duplicate line:\n{}", service.log()));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let balance: i64 = sqlx::query_scalar("SELECT balance_cents FROM accounts WHERE id = $1")
        .bind(&account)
        .fetch_one(&pg)
        .await
        .unwrap();
    assert_eq!(balance, 700, "debited once");
    assert_eq!(
        service
            .lines
            .count(&format!("payment_id={pay} balance_cents=700")),
        1,
        "{}",
        service.log()
    );
    let dlq = broker.drain("dlq.payment").await;
    let ours: Vec<_> = dlq
        .iter()
        .filter(|m| String::from_utf8_lossy(&m.delivery.data).contains(&big))
        .collect();
    assert_eq!(ours.len(), 1, "the rejected payment is in dlq.payment");
    // Not ours: back where they were.
    for m in dlq
        .iter()
        .filter(|m| !String::from_utf8_lossy(&m.delivery.data).contains(&big))
    {
        broker
            .publish(
                "dlq.payment",
                &m.delivery.data,
                m.delivery.properties.clone(),
            )
            .await;
    }
    let inbox: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM mqkit_inbox WHERE consumer = 'payment' AND dedup_key = $1",
    )
    .bind(&pay)
    .fetch_one(&pg)
    .await
    .unwrap();
    assert_eq!(inbox, 1);
    let rejected_inbox: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM mqkit_inbox WHERE consumer = 'payment' AND dedup_key = $1",
    )
    .bind(&big)
    .fetch_one(&pg)
    .await
    .unwrap();
    assert_eq!(rejected_inbox, 0, "a rejected payment leaves no inbox row");
}

/// Deletes the test's account and its payments' rows when dropped.
struct PaymentRows(String);

impl Drop for PaymentRows {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-qc"])
            .arg(format!(
                "DELETE FROM accounts WHERE id = '{0}'; DELETE FROM mqkit_inbox WHERE consumer = 'payment' AND (dedup_key LIKE 'mqkit-test-pay-%' OR dedup_key LIKE 'mqkit-test-big-%'); DELETE FROM mqkit_outbox WHERE consumer = 'payment' AND convert_from(body, 'UTF8') LIKE '%{0}%'",
                self.0
            ))
            .status();
    }
}
