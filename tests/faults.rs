//! Fault injection against the real services: broker restart, a killed
//! consumer, a Redis outage, SIGTERM during slow handlers, and a frozen
//! broker (missed heartbeats). Each test runs the `mqkit-test-service`
//! binary, which records every side effect (`INCR effects:<queue>:<key>`) in
//! a Redis that the test starts on a port of its own, so effects can be
//! counted per business key. The tests run one at a time (they stop shared
//! services) and restore every service they stop, even when they fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/http.rs"]
mod probe;

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{Broker, Cleanup, REDIS_URL, StderrLines, unique};
use deadpool_redis::redis;
use futures_util::{FutureExt as _, StreamExt as _};
use mqkit::ConsumerSpec;
use serde_json::json;

/// Fault tests stop shared services: never two at once.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

// ---------------------------------------------------------------- helpers

/// A redis-server of the test's own, on a free port, stopped on drop.
struct OwnRedis {
    port: u16,
    pool: deadpool_redis::Pool,
}

impl OwnRedis {
    fn start() -> OwnRedis {
        let port = free_port();
        let redis = OwnRedis {
            port,
            pool: deadpool_redis::Config::from_url(format!("redis://127.0.0.1:{port}"))
                .create_pool(Some(deadpool_redis::Runtime::Tokio1))
                .unwrap(),
        };
        redis.resume();
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts (or restarts) the server, empty.
    fn resume(&self) {
        let status = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "yes",
            ])
            .args([
                "--pidfile",
                &format!("/tmp/mqkit-test-redis-{}.pid", self.port),
                "--logfile",
                "",
            ])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.ping() {
            assert!(
                Instant::now() < deadline,
                "redis-server on {} did not start",
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stop(&self) {
        let _ = Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "shutdown", "nosave"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    fn ping(&self) -> bool {
        Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "ping"])
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "PONG")
    }

    /// Effect count per business key of `queue`.
    async fn effects(&self, queue: &str) -> HashMap<String, i64> {
        let mut conn = self.pool.get().await.unwrap();
        let prefix = format!("effects:{queue}:");
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}*"))
            .query_async(&mut *conn)
            .await
            .unwrap();
        if keys.is_empty() {
            return HashMap::new();
        }
        let values: Vec<i64> = redis::cmd("MGET")
            .arg(&keys)
            .query_async(&mut *conn)
            .await
            .unwrap();
        keys.into_iter()
            .map(|k| k[prefix.len()..].to_owned())
            .zip(values)
            .collect()
    }

    async fn total_effects(&self, queue: &str) -> i64 {
        self.effects(queue).await.values().sum()
    }

    /// Handler start times (ms since the epoch).
    async fn starts(&self, queue: &str) -> Vec<u128> {
        let mut conn = self.pool.get().await.unwrap();
        let v: Vec<String> = redis::cmd("LRANGE")
            .arg(format!("starts:{queue}"))
            .arg(0)
            .arg(-1)
            .query_async(&mut *conn)
            .await
            .unwrap();
        v.iter().map(|s| s.parse().unwrap()).collect()
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The test service process, with its log lines timestamped as they arrive.
struct Service {
    child: Child,
    lines: StderrLines,
}

impl Service {
    fn start(env: &[(&str, String)]) -> Service {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mqkit-test-service"));
        cmd.env("RUST_LOG", "info,mqkit=info").env("NO_COLOR", "1");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let (child, lines) = StderrLines::spawn(&mut cmd);
        Service { child, lines }
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }

    fn signal(&self, sig: &str) {
        assert!(
            Command::new("kill")
                .args([sig, &self.pid()])
                .status()
                .unwrap()
                .success()
        );
    }

    /// Waits for exit; `None` if it is still running after `timeout`.
    fn wait(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// When the first log line containing `text` arrived after `after`.
    fn logged(&self, text: &str, after: Instant) -> Option<Instant> {
        self.lines.first_after(text, after)
    }

    fn log(&self) -> String {
        self.lines.text()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Restores the broker on drop: resumes a frozen node and starts a stopped app.
struct BrokerRestorer;

impl Drop for BrokerRestorer {
    fn drop(&mut self) {
        if let Some(pid) = beam_pid() {
            let _ = Command::new("kill").args(["-CONT", &pid]).status();
        }
        let _ = Command::new("rabbitmqctl")
            .args(["start_app"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = Command::new("rabbitmqctl")
            .args(["await_startup", "--timeout", "60"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// The RabbitMQ node's OS process id.
fn beam_pid() -> Option<String> {
    let out = Command::new("pgrep")
        .args(["-f", "beam.smp.*rabbit"])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .map(str::to_owned)
}

fn rabbitmqctl(args: &[&str]) {
    let out = Command::new("rabbitmqctl").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "rabbitmqctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The spec the service declares for `queue` (for cleanup and DLQ checks).
fn service_spec(queue: &str) -> ConsumerSpec {
    let mut spec = ConsumerSpec::new(queue.to_owned());
    spec.idempotency = &["key"];
    spec
}

fn service_env(
    queue: &str,
    effects: &OwnRedis,
    idem_redis: &str,
    extra: &[(&str, &str)],
) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("TEST_QUEUE", queue.to_owned()),
        ("TEST_DLX", format!("{queue}.dlx")),
        ("TEST_EFFECTS_REDIS", effects.url()),
        ("MQKIT_REDIS_URL", idem_redis.to_owned()),
        ("MQKIT_AMQP_URL", common::AMQP_URL.to_owned()),
    ];
    for (k, v) in extra {
        let k: &'static str = match *k {
            "TEST_HANDLER_MS" => "TEST_HANDLER_MS",
            "TEST_PREFETCH" => "TEST_PREFETCH",
            "TEST_CONCURRENCY" => "TEST_CONCURRENCY",
            "TEST_TIMEOUT_MS" => "TEST_TIMEOUT_MS",
            "MQKIT_HEARTBEAT_SECS" => "MQKIT_HEARTBEAT_SECS",
            "MQKIT_SHUTDOWN_GRACE_SECS" => "MQKIT_SHUTDOWN_GRACE_SECS",
            "MQKIT_HTTP_ADDR" => "MQKIT_HTTP_ADDR",
            other => panic!("unknown test variable {other}"),
        };
        env.push((k, (*v).to_owned()));
    }
    env
}

fn spec_with_dlx(queue: &str) -> ConsumerSpec {
    let mut spec = service_spec(queue);
    spec.dlx = format!("{queue}.dlx").into();
    spec
}

/// Waits until the service has declared its queue and is consuming.
async fn wait_consuming(service: &Service, since: Instant) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while service.logged("consuming", since).is_none() {
        assert!(
            Instant::now() < deadline,
            "service did not start consuming:\n{}",
            service.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Publishes `n` events with keys `k0..k{n-1}`, 64 confirms in flight.
async fn publish_keys(queue: &str, n: usize) {
    let publisher = mqkit::Publisher::connect(common::AMQP_URL).await.unwrap();
    futures_util::stream::iter(0..n)
        .map(|i| {
            let publisher = publisher.clone();
            async move {
                publisher
                    .publish_json("", queue, &json!({"key": format!("k{i}")}))
                    .await
                    .unwrap()
            }
        })
        .buffer_unordered(64)
        .collect::<Vec<()>>()
        .await;
    publisher.close().await;
}

/// Waits until every one of `n` keys has an effect; returns the effects.
async fn wait_all_effects(
    effects: &OwnRedis,
    queue: &str,
    n: usize,
    timeout: Duration,
    service: &Service,
) -> HashMap<String, i64> {
    let deadline = Instant::now() + timeout;
    loop {
        let e = effects.effects(queue).await;
        if e.len() >= n {
            return e;
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {n} keys got an effect; service log:\n{}",
            e.len(),
            service.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn assert_effects(effects: &HashMap<String, i64>, n: usize, max_doubles: usize) {
    for i in 0..n {
        let c = effects.get(&format!("k{i}")).copied().unwrap_or(0);
        assert!(c >= 1, "key k{i} was lost");
        assert!(c <= 2, "key k{i} had {c} effects");
    }
    let doubles = effects.values().filter(|c| **c == 2).count();
    eprintln!(
        "{} keys, {doubles} with 2 effects (bound {max_doubles})",
        effects.len()
    );
    assert!(
        doubles <= max_doubles,
        "{doubles} keys had 2 effects (bound {max_doubles})"
    );
}

async fn unacked(queue: &str) -> u64 {
    let queue = queue.to_owned();
    tokio::task::spawn_blocking(move || {
        let rows: Vec<serde_json::Value> = serde_json::from_str(&common::rabbitmqctl(&[
            "list_queues",
            "name",
            "messages_unacknowledged",
        ]))
        .unwrap();
        rows.iter()
            .find(|r| r["name"] == queue.as_str())
            .and_then(|r| r["messages_unacknowledged"].as_u64())
            .unwrap_or(0)
    })
    .await
    .unwrap()
}

/// Waits until the work queue and its delay queues hold nothing, ready or
/// unacked, for 2 s in a row, so late redeliveries have shown up.
async fn quiesce(queue: &str) {
    let names: Vec<String> = service_spec(queue)
        .declared_queues()
        .into_iter()
        .filter(|n| !n.starts_with("dlq."))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut quiet_since: Option<Instant> = None;
    loop {
        let rows: Vec<serde_json::Value> = tokio::task::spawn_blocking(|| {
            serde_json::from_str(&common::rabbitmqctl(&["list_queues", "name", "messages"]))
                .unwrap()
        })
        .await
        .unwrap();
        let busy: u64 = rows
            .iter()
            .filter(|r| names.iter().any(|n| r["name"] == n.as_str()))
            .filter_map(|r| r["messages"].as_u64())
            .sum();
        if busy == 0 {
            let since = *quiet_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= Duration::from_secs(2) {
                return;
            }
        } else {
            quiet_since = None;
        }
        assert!(
            Instant::now() < deadline,
            "queues of {queue} never went quiet"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn wait_broker_accepting() -> Instant {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(c) =
            lapin::Connection::connect(common::AMQP_URL, lapin::ConnectionProperties::default())
                .await
        {
            let _ = c.close(200, "OK".into()).await;
            return Instant::now();
        }
        assert!(Instant::now() < deadline, "broker did not come back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------- tests

const N: usize = 5000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restart_loses_nothing_and_resumes_quickly() {
    let _serial = SERIAL.lock().await;
    let _restore = BrokerRestorer;
    let queue = unique("restart");
    let _cleanup = Cleanup::specs(&[&spec_with_dlx(&queue)]);
    let effects = OwnRedis::start();
    let concurrency = 10;
    let started = Instant::now();
    let service = Service::start(&service_env(
        &queue,
        &effects,
        REDIS_URL,
        &[
            ("TEST_HANDLER_MS", "3"),
            ("TEST_PREFETCH", "10"),
            ("TEST_TIMEOUT_MS", "3000"),
        ],
    ));
    wait_consuming(&service, started).await;
    publish_keys(&queue, N).await;
    while effects.total_effects(&queue).await < 500 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let stopped = Instant::now();
    tokio::task::spawn_blocking(|| rabbitmqctl(&["stop_app"]))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    tokio::task::spawn_blocking(|| rabbitmqctl(&["start_app"]))
        .await
        .unwrap();
    let accepting = wait_broker_accepting().await;
    let before = effects.total_effects(&queue).await;
    let resumed = loop {
        if effects.total_effects(&queue).await > before {
            break Instant::now();
        }
        assert!(
            accepting.elapsed() < Duration::from_secs(30),
            "consumption did not resume:\n{}",
            service.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // Prefetch is in force again on the new channel.
    let mut max_unacked = 0;
    for _ in 0..5 {
        max_unacked = max_unacked.max(unacked(&queue).await);
    }
    wait_all_effects(&effects, &queue, N, Duration::from_secs(120), &service).await;
    quiesce(&queue).await;
    let all = effects.effects(&queue).await;

    assert!(
        service
            .logged("lost the RabbitMQ connection", stopped)
            .is_some(),
        "{}",
        service.log()
    );
    assert!(
        service.logged("reconnected to RabbitMQ", stopped).is_some(),
        "{}",
        service.log()
    );
    let resume_after = resumed.saturating_duration_since(accepting);
    eprintln!(
        "consumption resumed {resume_after:?} after the broker accepted connections; max unacked after recovery {max_unacked}"
    );
    assert!(
        resume_after <= Duration::from_secs(5),
        "resumed {resume_after:?} after the broker came back"
    );
    assert!(
        max_unacked <= 10,
        "unacked {max_unacked} > prefetch after recovery"
    );
    assert_effects(&all, N, concurrency);
    assert_eq!(
        Broker::connect().await.depth(&format!("dlq.{queue}")).await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_consumer_loses_nothing() {
    let _serial = SERIAL.lock().await;
    let queue = unique("kill9");
    let _cleanup = Cleanup::specs(&[&spec_with_dlx(&queue)]);
    let effects = OwnRedis::start();
    let concurrency = 10;
    let env = service_env(
        &queue,
        &effects,
        REDIS_URL,
        &[
            ("TEST_HANDLER_MS", "3"),
            ("TEST_PREFETCH", "10"),
            ("TEST_TIMEOUT_MS", "1000"),
        ],
    );
    let started = Instant::now();
    let mut first = Service::start(&env);
    wait_consuming(&first, started).await;
    publish_keys(&queue, N).await;
    while effects.total_effects(&queue).await < 1000 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    first.signal("-KILL");
    first.wait(Duration::from_secs(5)).unwrap();
    let at_kill = effects.total_effects(&queue).await;
    assert!(at_kill < N as i64, "the kill came after all work was done");

    let restarted = Instant::now();
    let second = Service::start(&env);
    wait_consuming(&second, restarted).await;
    wait_all_effects(&effects, &queue, N, Duration::from_secs(120), &second).await;
    // Locks the killed process held expire after timeout + 5 s; until then
    // their messages cycle through the delay queue. Count once all is quiet.
    quiesce(&queue).await;
    assert_effects(&effects.effects(&queue).await, N, concurrency);
    let broker = Broker::connect().await;
    assert_eq!(
        broker.depth(&format!("dlq.{queue}")).await,
        0,
        "nothing in the DLQ"
    );
    drop(second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_fails_closed_and_loses_nothing() {
    let _serial = SERIAL.lock().await;
    let queue = unique("redis-outage");
    let _cleanup = Cleanup::specs(&[&spec_with_dlx(&queue)]);
    let effects = OwnRedis::start();
    let idem = OwnRedis::start();
    let n = 2000;
    let started = Instant::now();
    let service = Service::start(&service_env(
        &queue,
        &effects,
        &idem.url(),
        &[("TEST_HANDLER_MS", "5"), ("TEST_PREFETCH", "10")],
    ));
    wait_consuming(&service, started).await;
    publish_keys(&queue, n).await;
    while effects.total_effects(&queue).await < 300 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    idem.stop();
    let stopped = Instant::now();
    // Handlers that had claimed their key before the stop may finish.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let during_a = effects.starts(&queue).await.len();
    tokio::time::sleep(Duration::from_millis(4400)).await;
    let during_b = effects.starts(&queue).await.len();
    idem.resume();
    wait_all_effects(&effects, &queue, n, Duration::from_secs(120), &service).await;
    quiesce(&queue).await;
    let all = effects.effects(&queue).await;

    assert!(
        service
            .logged("idempotency store unavailable", stopped)
            .is_some(),
        "{}",
        service.log()
    );
    assert_eq!(during_a, during_b, "handlers ran while Redis was down");
    for i in 0..n {
        assert_eq!(all.get(&format!("k{i}")).copied(), Some(1), "key k{i}");
    }
    assert_eq!(
        Broker::connect().await.depth(&format!("dlq.{queue}")).await,
        0,
        "nothing in the DLQ"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_handlers_and_leaves_the_rest_queued() {
    let _serial = SERIAL.lock().await;
    let queue = unique("sigterm");
    let _cleanup = Cleanup::specs(&[&spec_with_dlx(&queue)]);
    let effects = OwnRedis::start();
    let n = 40;
    let env = service_env(
        &queue,
        &effects,
        REDIS_URL,
        &[
            ("TEST_HANDLER_MS", "500"),
            ("TEST_PREFETCH", "5"),
            ("MQKIT_SHUTDOWN_GRACE_SECS", "10"),
        ],
    );
    let started = Instant::now();
    let mut service = Service::start(&env);
    wait_consuming(&service, started).await;
    publish_keys(&queue, n).await;
    // Let a few handlers finish and 5 more start.
    while effects.total_effects(&queue).await < 5 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let signalled_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let signalled = Instant::now();
    service.signal("-TERM");
    let status = service
        .wait(Duration::from_secs(10))
        .expect("exits within the grace period");
    let took = signalled.elapsed();
    assert!(
        status.success(),
        "exit status {status:?}\n{}",
        service.log()
    );

    let starts = effects.starts(&queue).await;
    let done = effects.effects(&queue).await;
    let total: i64 = done.values().sum();
    // Every handler that started finished and recorded its effect once.
    assert_eq!(starts.len() as i64, total, "in-flight handlers completed");
    assert!(done.values().all(|c| *c == 1));
    // The signal reaches the consumer loop within milliseconds; no handler
    // starts after that.
    let late: Vec<u128> = starts
        .iter()
        .copied()
        .filter(|t| *t > signalled_ms + 50)
        .collect();
    assert!(
        late.is_empty(),
        "handlers started after SIGTERM at {signalled_ms}: {late:?}"
    );
    let broker = Broker::connect().await;
    let left = broker.depth(&queue).await;
    assert_eq!(left as i64, n as i64 - total, "the rest stay queued");
    assert!(
        left > 0,
        "the test needs unprocessed messages at the signal"
    );
    eprintln!("SIGTERM: exited in {took:?} with {total} handled, {left} left queued");

    // The next start handles the rest, with no duplicate effects.
    let restarted = Instant::now();
    let again = Service::start(&env);
    wait_consuming(&again, restarted).await;
    let all = wait_all_effects(&effects, &queue, n, Duration::from_secs(60), &again).await;
    assert!(all.values().all(|c| *c == 1), "{all:?}");
    assert_eq!(all.len(), n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missed_heartbeats_are_noticed_and_the_service_reconnects() {
    let _serial = SERIAL.lock().await;
    let _restore = BrokerRestorer;
    let queue = unique("heartbeat");
    let _cleanup = Cleanup::specs(&[&spec_with_dlx(&queue)]);
    let effects = OwnRedis::start();
    let heartbeat = Duration::from_secs(2);
    let started = Instant::now();
    let service = Service::start(&service_env(
        &queue,
        &effects,
        REDIS_URL,
        &[("MQKIT_HEARTBEAT_SECS", "2")],
    ));
    wait_consuming(&service, started).await;

    let pid = beam_pid().expect("RabbitMQ's beam.smp process");
    assert!(
        Command::new("kill")
            .args(["-STOP", &pid])
            .status()
            .unwrap()
            .success()
    );
    let frozen = Instant::now();
    tokio::time::sleep(heartbeat * 4).await; // longer than 2 heartbeats
    let noticed = service.logged("lost the RabbitMQ connection", frozen);
    assert!(
        Command::new("kill")
            .args(["-CONT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let resumed = Instant::now();

    let noticed = noticed
        .unwrap_or_else(|| panic!("no connection loss logged while frozen:\n{}", service.log()));
    let after = noticed - frozen;
    eprintln!("missed heartbeats noticed {after:?} after the freeze (heartbeat {heartbeat:?})");
    assert!(after <= heartbeat * 3, "noticed after {after:?}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while service.logged("reconnected to RabbitMQ", resumed).is_none() {
        assert!(
            Instant::now() < deadline,
            "no reconnect after the broker resumed:\n{}",
            service.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // And it consumes again.
    publish_keys(&queue, 10).await;
    wait_all_effects(&effects, &queue, 10, Duration::from_secs(30), &service).await;
}

/// Polls `/readyz` until its status is `code`; returns when that was seen
/// and the body, or `None` after `timeout`.
async fn readyz_becomes(
    addr: std::net::SocketAddr,
    code: u16,
    timeout: Duration,
) -> Option<(Instant, String)> {
    readyz_until(addr, timeout, |status, _| status == code).await
}

/// Polls `/readyz` until `done(status, body)`; when that was seen and the
/// body, or `None` after `timeout`.
async fn readyz_until(
    addr: std::net::SocketAddr,
    timeout: Duration,
    done: impl Fn(u16, &str) -> bool,
) -> Option<(Instant, String)> {
    let deadline = Instant::now() + timeout;
    loop {
        let (status, body) = probe::get(addr, "/readyz").await;
        if done(status, &body) {
            return Some((Instant::now(), body));
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_the_broker_and_turns_503_when_a_shutdown_begins() {
    let _serial = SERIAL.lock().await;
    let _restore = BrokerRestorer;
    let queue = unique("readyz");
    let _cleanup = Cleanup::specs(&[&spec_with_dlx(&queue)]);
    let effects = OwnRedis::start();
    let port = free_port();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let heartbeat = Duration::from_secs(2);
    let started = Instant::now();
    let mut service = Service::start(&service_env(
        &queue,
        &effects,
        REDIS_URL,
        &[
            ("MQKIT_HEARTBEAT_SECS", "2"),
            ("MQKIT_HTTP_ADDR", &addr.to_string()),
            ("TEST_HANDLER_MS", "2000"),
            ("MQKIT_SHUTDOWN_GRACE_SECS", "20"),
        ],
    ));
    wait_consuming(&service, started).await;
    let (_, body) = readyz_becomes(addr, 200, Duration::from_secs(10))
        .await
        .unwrap_or_else(|| panic!("/readyz never 200:\n{}", service.log()));
    let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ready["connection"], "connected", "{body}");
    assert_eq!(ready["consumers"][0]["queue"], queue.as_str(), "{body}");
    assert_eq!(ready["consumers"][0]["state"], "consuming", "{body}");
    assert!(!body.contains("guest"), "no credentials in /readyz: {body}");

    // The broker goes away: 503 within heartbeat + 1 s, /livez stays 200.
    rabbitmqctl(&["stop_app"]);
    let stopped = Instant::now();
    let (seen, body) = readyz_until(addr, heartbeat + Duration::from_secs(1), |code, body| {
        code == 503 && body.contains("\"reconnecting\"")
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "/readyz not 503 reconnecting {:?} after stop_app",
            stopped.elapsed()
        )
    });
    eprintln!("/readyz 503 {:?} after stop_app: {body}", seen - stopped);
    let down: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(down["connection"], "reconnecting", "{body}");
    assert_eq!(down["status"], "not-ready", "{body}");
    assert_eq!(probe::get(addr, "/livez").await.0, 200);
    assert_eq!(probe::get(addr, "/healthz").await.0, 200);
    let metrics = probe::parse(&probe::get(addr, "/metrics").await.1);
    assert_eq!(probe::value(&metrics, "mqkit_connected", &[]), Some(0.0));

    // Back: 200 within 5 s of start_app.
    rabbitmqctl(&["start_app"]);
    rabbitmqctl(&["await_startup", "--timeout", "60"]);
    let back = Instant::now();
    let (seen, _) = readyz_becomes(addr, 200, Duration::from_secs(5))
        .await
        .unwrap_or_else(|| {
            panic!(
                "/readyz not 200 within 5 s of start_app:\n{}",
                service.log()
            )
        });
    eprintln!("/readyz 200 again {:?} after start_app", seen - back);
    let metrics = probe::parse(&probe::get(addr, "/metrics").await.1);
    assert_eq!(probe::value(&metrics, "mqkit_connected", &[]), Some(1.0));
    assert_eq!(
        probe::value(&metrics, "mqkit_reconnects_total", &[]),
        Some(1.0)
    );

    // A shutdown: 503 from the signal on, while the handler still runs.
    publish_keys(&queue, 1).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while effects.starts(&queue).await.is_empty() {
        assert!(
            Instant::now() < deadline,
            "handler never started:\n{}",
            service.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    service.signal("-TERM");
    // The signal is handled asynchronously: 503 within a moment, while the
    // 2 s handler is still running.
    let (_, body) = readyz_becomes(addr, 503, Duration::from_secs(1))
        .await
        .expect("/readyz 503 after SIGTERM");
    let (live, _) = probe::get(addr, "/livez").await;
    let finished_before = effects.total_effects(&queue).await;
    assert_eq!(live, 200);
    assert_eq!(
        finished_before, 0,
        "the probe was read while the handler still ran"
    );
    let draining: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(draining["status"], "shutting-down", "{body}");
    let exit = service
        .wait(Duration::from_secs(20))
        .expect("exits after the drain");
    assert!(exit.success(), "{exit:?}\n{}", service.log());
    assert_eq!(
        effects.total_effects(&queue).await,
        1,
        "the in-flight handler finished"
    );
}

/// Restores RabbitMQ's memory high watermark on drop.
struct WatermarkRestorer;

impl Drop for WatermarkRestorer {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl")
            .args(["set_vm_memory_high_watermark", "0.4"])
            .stdout(Stdio::null())
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_connection_makes_publishing_wait_instead_of_failing() {
    let _serial = SERIAL.lock().await;
    let _restore = WatermarkRestorer;
    let broker = Broker::connect().await;
    let queue = unique("blocked");
    let _cleanup = Cleanup::specs(&[]).queue(&queue);
    broker.declare_queue(&queue, Default::default()).await;
    let publisher = mqkit::Publisher::connect(common::AMQP_URL).await.unwrap();
    publisher
        .publish_json("", &queue, &json!({"n": 1}))
        .await
        .unwrap();

    // A memory alarm: the broker blocks every connection that publishes.
    tokio::task::spawn_blocking(|| rabbitmqctl(&["set_vm_memory_high_watermark", "0.0000001"]))
        .await
        .unwrap();
    let (p, q) = (publisher.clone(), queue.clone());
    let pending = tokio::spawn(async move { p.publish_json("", &q, &json!({"n": 2})).await });
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        !pending.is_finished(),
        "publish returned while the connection was blocked: {:?}",
        pending.await
    );

    tokio::task::spawn_blocking(|| rabbitmqctl(&["set_vm_memory_high_watermark", "0.4"]))
        .await
        .unwrap();
    let result = tokio::time::timeout(Duration::from_secs(30), pending)
        .await
        .expect("publish completes once unblocked")
        .unwrap();
    result.unwrap();
    assert_eq!(broker.depth(&queue).await, 2, "both messages arrived");
    publisher.close().await;
}

#[mqkit::consumer(queue = "readiness")]
async fn readiness_handler(_evt: serde_json::Value) -> Result<(), mqkit::HandlerError> {
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_reports_not_connected_during_recovery() {
    use mqkit::{ConnectionState, Consumer as _};
    let _serial = SERIAL.lock().await;
    let mut spec = readiness_handler {}.spec();
    common::isolate(&mut spec, "readiness");
    let _cleanup = Cleanup::specs(&[&spec]);
    let s = spec.clone();
    let running = mqkit::App::new()
        .amqp_url(common::AMQP_URL)
        .consumer_with(readiness_handler {}, move |x| *x = s)
        .start()
        .await
        .unwrap();
    assert!(running.is_ready());
    let mut states = running.watch_state();

    // An operator force-closes every client connection.
    tokio::task::spawn_blocking(|| rabbitmqctl(&["close_all_connections", "mqkit readiness test"]))
        .await
        .unwrap();
    let seen = tokio::time::timeout(
        Duration::from_secs(10),
        states
            .wait_for(|s| *s == ConnectionState::Reconnecting)
            .map(|r| r.is_ok()),
    )
    .await;
    assert_eq!(seen.ok(), Some(true), "state never left Connected");
    let back = tokio::time::timeout(
        Duration::from_secs(15),
        states
            .wait_for(|s| *s == ConnectionState::Connected)
            .map(|r| r.is_ok()),
    )
    .await;
    assert_eq!(back.ok(), Some(true), "never reconnected");
    assert!(running.is_ready());

    // The recovered consumer and publisher work.
    running
        .publisher()
        .publish_json("", &spec.queue, &json!({"n": 1}))
        .await
        .unwrap();
    let broker = Broker::connect().await;
    assert!(
        common::eventually(Duration::from_secs(10), async || broker
            .depth(&spec.queue)
            .await
            == 0)
        .await
    );
    running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_exits_at_once_and_loses_nothing() {
    let _serial = SERIAL.lock().await;
    let queue = unique("second-signal");
    let _cleanup = Cleanup::specs(&[&spec_with_dlx(&queue)]);
    let effects = OwnRedis::start();
    let env = service_env(
        &queue,
        &effects,
        REDIS_URL,
        &[
            ("TEST_HANDLER_MS", "20000"),
            ("TEST_PREFETCH", "3"),
            ("MQKIT_SHUTDOWN_GRACE_SECS", "60"),
        ],
    );
    let started = Instant::now();
    let mut service = Service::start(&env);
    wait_consuming(&service, started).await;
    publish_keys(&queue, 3).await;
    while effects.starts(&queue).await.len() < 3 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    service.signal("-TERM");
    // The first signal starts a graceful drain (60 s of grace for 20 s handlers).
    assert!(
        service.wait(Duration::from_millis(500)).is_none(),
        "exited on the first signal"
    );
    let second = Instant::now();
    service.signal("-INT");
    let status = service
        .wait(Duration::from_secs(5))
        .expect("exits at once on the second signal");
    eprintln!(
        "second signal: exited after {:?} with {status:?}",
        second.elapsed()
    );
    assert_eq!(status.code(), Some(130));
    // The abandoned deliveries were never acked: all 3 are back in the queue.
    assert_eq!(effects.total_effects(&queue).await, 0);
    let broker = Broker::connect().await;
    assert!(
        common::eventually(Duration::from_secs(10), async || broker.depth(&queue).await
            == 3)
        .await
    );
}
