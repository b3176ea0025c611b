//! Transactional consumers under faults, against the real broker and the
//! machine's PostgreSQL and MariaDB: the service killed with SIGKILL at
//! random points and restarted, the database stopped for 10 s, the broker
//! restarted with 1,000 outbox rows unsent, and two instances sharing a
//! queue and a database. These stop shared services, so they run one at a
//! time (`SERIAL`), each on a database of its own, and always start what
//! they stopped (`Restart` guards), even when they fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "tx/consumers.rs"]
mod consumers;
#[path = "common/db.rs"]
mod db;
#[path = "common/http.rs"]
mod probe;
#[path = "tx/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::{Broker, Cleanup, StderrLines, eventually, rabbitmqctl, unique};
use db::{Db, TestDb};
use support::{app, charge, followup_queue, receive, spec_for};

/// One fault test at a time: they stop the database or the broker.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A pseudo-random number below `n` (no RNG crate for one number).
fn random_below(n: u64) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    u64::from(nanos.wrapping_mul(2_654_435_761)) % n.max(1)
}

/// The transactional test service for `test_db` on `queue`.
fn service(
    test_db: &TestDb,
    queue: &str,
    followups: &str,
    extra: &[(&str, String)],
) -> (Child, StderrLines) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mqkit-test-tx-service"));
    cmd.env("MQKIT_DATABASE_URL", test_db.url())
        .env("TEST_QUEUE", queue)
        .env("TEST_FOLLOWUPS", followups)
        .env("TEST_PREFETCH", "20")
        .env("TEST_SWEEP_AFTER_MS", "1000")
        .env("MQKIT_SHUTDOWN_GRACE_SECS", "2")
        .env("RUST_LOG", "warn")
        .env_remove("MQKIT_REDIS_URL")
        .env_remove("MQKIT_HTTP_ADDR");
    for (k, v) in extra {
        cmd.env(k, v);
    }
    StderrLines::spawn(&mut cmd)
}

/// Waits until `queue` exists and has a consumer.
async fn consuming(broker: &Broker, queue: &str, lines: &StderrLines) {
    let up = eventually(Duration::from_secs(30), async || {
        broker.consumers(queue).await.unwrap_or(0) > 0
    })
    .await;
    assert!(
        up,
        "the service did not start consuming {queue}:\n{}",
        lines.text()
    );
}

/// SIGKILL at 5 random points while 5,000 charges are handled, restarting
/// each time: one effect row per key, every outbox row published, and
/// duplicate follow-ups only as copies with their first copy's message id.
async fn crash(db: Db) {
    let test_db = TestDb::create(db, "crash");
    test_db.effect_table();
    let broker = Broker::connect().await;
    let queue = unique("tx-crash");
    let followups = followup_queue(&broker, "tx-crash-followups").await;
    let mut spec = mqkit::ConsumerSpec::new("x");
    // The child's consumers retry after 100 ms (tests/tx/consumers.rs): the
    // same here, so that the cleanup deletes their delay queues too.
    spec.retry_delay = Duration::from_millis(100);
    spec.rename_queue(queue.clone());
    spec.dlx = format!("{queue}.dlx").into();
    let _cleanup = Cleanup::specs(&[&spec]).queue(&followups);
    let extra = [("TEST_HANDLER_MS", "2".to_owned())];
    let (mut child, mut lines) = service(&test_db, &queue, &followups, &extra);
    consuming(&broker, &queue, &lines).await;
    for i in 0..5000 {
        charge(&broker, &queue, &format!("o-{i}"), &format!("m-{i}"), None).await;
    }
    // Five kills at random points of the run: when the effect count passes
    // each of five random thresholds (handlers, commits, acks and the relay
    // are all in flight then).
    let mut thresholds: Vec<i64> = (0..5)
        .map(|k| 300 + k * 900 + i64::try_from(random_below(800)).unwrap())
        .collect();
    thresholds.sort_unstable();
    let mut kills = Vec::new();
    for threshold in thresholds {
        let reached = eventually(Duration::from_secs(60), async || {
            test_db.count("SELECT COUNT(*) FROM effects") >= threshold
        })
        .await;
        assert!(
            reached,
            "no progress to {threshold} effects:\n{}",
            lines.text()
        );
        let handled = test_db.count("SELECT COUNT(*) FROM effects");
        let unsent = test_db.count("SELECT COUNT(*) FROM mqkit_outbox WHERE sent_at IS NULL");
        child.kill().unwrap();
        let _ = child.wait();
        kills.push((handled, unsent));
        (child, lines) = service(&test_db, &queue, &followups, &extra);
        consuming(&broker, &queue, &lines).await;
    }
    let mut got = support::Received::default();
    let done = eventually(Duration::from_secs(180), async || {
        let r = receive(&broker, &followups).await;
        got.total += r.total;
        got.message_ids.extend(r.message_ids);
        got.orders.extend(r.orders);
        got.pairs.extend(r.pairs);
        got.orders.len() == 5000
            && broker.depth(&queue).await == 0
            && test_db.count("SELECT COUNT(*) FROM mqkit_outbox WHERE sent_at IS NULL") == 0
    })
    .await;
    // Late copies (a relay in flight at the last check) arrive by now.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let late = receive(&broker, &followups).await;
    got.total += late.total;
    got.message_ids.extend(late.message_ids);
    got.pairs.extend(late.pairs);
    child.kill().unwrap();
    let _ = child.wait();
    assert!(
        done,
        "follow-ups for {} orders:\n{}",
        got.orders.len(),
        lines.text()
    );
    let effects = test_db.count("SELECT COUNT(*) FROM effects");
    let keys = test_db.count("SELECT COUNT(DISTINCT order_id) FROM effects");
    assert_eq!((effects, keys), (5000, 5000), "one effect row per key");
    assert_eq!(test_db.count("SELECT COUNT(*) FROM mqkit_outbox"), 5000);
    assert_eq!(got.message_ids.len(), 5000, "one message id per outbox row");
    assert_eq!(
        got.pairs.len(),
        5000,
        "every copy of a follow-up has its first copy's id"
    );
    assert_eq!(broker.depth(&spec.dlq).await, 0, "nothing dead-lettered");
    eprintln!(
        "{db:?}: kills at (effect rows, unsent outbox rows) = {kills:?}; follow-ups received {} for 5000 rows: {} duplicate copies, all with their first copy's message id",
        got.total,
        got.total - 5000
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_points_loses_and_doubles_nothing_on_postgres() {
    let _one = SERIAL.lock().await;
    crash(Db::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_points_loses_and_doubles_nothing_on_mariadb() {
    let _one = SERIAL.lock().await;
    crash(Db::MariaDb).await;
}

/// Starts the database again when dropped (a failing test included).
struct Restart(Db);

impl Restart {
    fn stop(db: Db) -> Restart {
        let ok = match db {
            Db::Postgres => Command::new("pg_ctlcluster")
                .args(["15", "main", "stop", "-m", "fast"])
                .status(),
            Db::MariaDb => Command::new("mariadb-admin")
                .args(["-h", "127.0.0.1", "-uroot", "shutdown"])
                .status(),
        };
        assert!(ok.is_ok_and(|s| s.success()), "could not stop {db:?}");
        Restart(db)
    }
}

impl Drop for Restart {
    fn drop(&mut self) {
        let _ = match self.0 {
            Db::Postgres => Command::new("pg_ctlcluster")
                .args(["15", "main", "start"])
                .status(),
            Db::MariaDb => Command::new("start-stop-daemon")
                .args([
                    "--start",
                    "--oknodo",
                    "--background",
                    "--exec",
                    "/usr/sbin/mariadbd",
                ])
                .status(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let up = match self.0 {
                Db::Postgres => Command::new("pg_isready")
                    .args(["-h", "127.0.0.1", "-q"])
                    .status(),
                Db::MariaDb => Command::new("mariadb-admin")
                    .args(["-h", "127.0.0.1", "-uroot", "ping"])
                    .output()
                    .map(|o| o.status),
            };
            if up.is_ok_and(|s| s.success()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// The database stopped for 10 s while 3,000 charges are handled: nothing
/// dead-lettered, every effect once, every follow-up sent, and processing
/// resumes by itself.
async fn database_outage(db: Db) {
    let test_db = TestDb::create(db, "outage");
    test_db.effect_table();
    let broker = Broker::connect().await;
    let mut spec = spec_for(db, "tx-outage");
    spec.prefetch = 10;
    spec.concurrency = 10;
    let followups = followup_queue(&broker, "tx-outage-followups").await;
    let _cleanup = Cleanup::specs(&[&spec]).queue(&followups);
    let running = app(&test_db, &spec, &followups, |c| {
        c.outbox.sweep_after = Duration::from_secs(1);
        c.outbox.sweep_interval = Duration::from_millis(500);
    })
    .start()
    .await
    .unwrap();
    for i in 0..3000 {
        charge(
            &broker,
            &spec.queue,
            &format!("o-{i}"),
            &format!("m-{i}"),
            None,
        )
        .await;
    }
    let third = eventually(Duration::from_secs(60), async || {
        test_db.count("SELECT COUNT(*) FROM effects") >= 1000
    })
    .await;
    assert!(third);
    let outage = Restart::stop(db);
    let stopped_at = Instant::now();
    tokio::time::sleep(Duration::from_secs(10)).await;
    drop(outage); // starts it again
    let back = stopped_at.elapsed();
    let mut got = support::Received::default();
    let done = eventually(Duration::from_secs(120), async || {
        let r = receive(&broker, &followups).await;
        got.total += r.total;
        got.message_ids.extend(r.message_ids);
        got.orders.extend(r.orders);
        got.pairs.extend(r.pairs);
        got.orders.len() == 3000 && broker.depth(&spec.queue).await == 0
    })
    .await;
    let resumed = stopped_at.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let late = receive(&broker, &followups).await;
    got.total += late.total;
    got.message_ids.extend(late.message_ids);
    got.pairs.extend(late.pairs);
    running.shutdown().await.unwrap();
    assert!(done, "follow-ups for {} of 3000 orders", got.orders.len());
    assert_eq!(broker.depth(&spec.dlq).await, 0, "nothing dead-lettered");
    assert_eq!(test_db.count("SELECT COUNT(*) FROM effects"), 3000);
    assert_eq!(
        test_db.count("SELECT COUNT(DISTINCT order_id) FROM effects"),
        3000
    );
    assert_eq!(
        test_db.count("SELECT COUNT(*) FROM mqkit_outbox WHERE sent_at IS NULL"),
        0
    );
    assert_eq!(got.message_ids.len(), 3000);
    assert_eq!(got.pairs.len(), 3000);
    eprintln!(
        "{db:?}: database down 10 s (up again after {back:?}); all 3000 handled {resumed:?} after the stop; follow-up copies {} ({} sent again after an unconfirmed mark)",
        got.total,
        got.total - 3000
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_requeues_and_resumes_on_postgres() {
    let _one = SERIAL.lock().await;
    database_outage(Db::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_requeues_and_resumes_on_mariadb() {
    let _one = SERIAL.lock().await;
    database_outage(Db::MariaDb).await;
}

/// Starts the broker's app again when dropped.
struct BrokerBack;

impl Drop for BrokerBack {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl").arg("start_app").status();
    }
}

/// 1,000 committed outbox rows left unsent while the broker is down are
/// all published once each after it is back.
async fn broker_restart(db: Db) {
    let test_db = TestDb::create(db, "broker");
    test_db.effect_table();
    let broker = Broker::connect().await;
    let spec = spec_for(db, "tx-broker");
    let followups = followup_queue(&broker, "tx-broker-followups").await;
    let _cleanup = Cleanup::specs(&[&spec]).queue(&followups);
    drop(broker);
    let running = app(&test_db, &spec, &followups, |c| {
        c.outbox.sweep_after = Duration::from_secs(1);
        c.outbox.sweep_interval = Duration::from_millis(500);
    })
    .start()
    .await
    .unwrap();
    let down = BrokerBack;
    tokio::task::spawn_blocking(|| rabbitmqctl(&["stop_app"]))
        .await
        .unwrap();
    let (seq, n, uuid) = match db {
        Db::Postgres => (
            "generate_series(1, 1000) AS s(n)",
            "s.n::text",
            "gen_random_uuid()",
        ),
        Db::MariaDb => ("seq_1_to_1000 AS s", "s.seq", "UUID()"),
    };
    let q = &spec.queue;
    test_db.sql(&format!(
        "INSERT INTO mqkit_outbox (batch_id, consumer, message_id, exchange, routing_key, properties, body, mandatory) \
         SELECT {uuid}, '{q}', CONCAT('r-', {n}), '', '{followups}', CONCAT('{{\"message_id\":\"r-', {n}, '\"}}'), {body}, TRUE FROM {seq}",
        body = bytes(db, &format!("CONCAT('{{\"order_id\":\"r-', {n}, '\"}}')"))
    ));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        test_db.count("SELECT COUNT(*) FROM mqkit_outbox WHERE sent_at IS NULL"),
        1000
    );
    drop(down); // start_app
    let back = Instant::now();
    let broker = Broker::connect().await;
    let sent = eventually(Duration::from_secs(90), async || {
        test_db.count("SELECT COUNT(*) FROM mqkit_outbox WHERE sent_at IS NULL") == 0
    })
    .await;
    let took = back.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let got = receive(&broker, &followups).await;
    running.shutdown().await.unwrap();
    assert!(sent, "rows still unsent");
    assert_eq!(got.total, 1000, "each row once");
    assert_eq!(got.message_ids.len(), 1000);
    eprintln!("{db:?}: 1000 rows left unsent during the outage published {took:?} after start_app");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_rows_unsent_during_a_broker_restart_are_published_once_on_postgres() {
    let _one = SERIAL.lock().await;
    broker_restart(Db::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_rows_unsent_during_a_broker_restart_are_published_once_on_mariadb() {
    let _one = SERIAL.lock().await;
    broker_restart(Db::MariaDb).await;
}

/// `text` as a value for the outbox's binary `body` column.
fn bytes(db: Db, text: &str) -> String {
    match db {
        Db::Postgres => format!("convert_to({text}, 'UTF8')"),
        Db::MariaDb => text.to_owned(),
    }
}

fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// Two instances on one queue and one database: no effect twice, no
/// follow-up twice, and both sweepers publish some of 5,000 old rows.
async fn two_instances(db: Db) {
    let test_db = TestDb::create(db, "two");
    test_db.effect_table();
    let broker = Broker::connect().await;
    let queue = unique("tx-two");
    let followups = followup_queue(&broker, "tx-two-followups").await;
    let swept = followup_queue(&broker, "tx-two-swept").await;
    let mut spec = mqkit::ConsumerSpec::new("x");
    // The child's consumers retry after 100 ms (tests/tx/consumers.rs): the
    // same here, so that the cleanup deletes their delay queues too.
    spec.retry_delay = Duration::from_millis(100);
    spec.rename_queue(queue.clone());
    spec.dlx = format!("{queue}.dlx").into();
    let _cleanup = Cleanup::specs(&[&spec]).queue(&followups).queue(&swept);
    let addrs = [free_port(), free_port()];
    let mut children = Vec::new();
    for addr in addrs {
        let (child, lines) = service(
            &test_db,
            &queue,
            &followups,
            &[("MQKIT_HTTP_ADDR", addr.to_string())],
        );
        children.push((child, lines));
    }
    for addr in addrs {
        let ready = eventually(Duration::from_secs(30), async || {
            tokio::net::TcpStream::connect(addr).await.is_ok()
                && probe::get(addr, "/readyz").await.0 == 200
        })
        .await;
        assert!(ready, "instance on {addr} not ready");
    }
    for i in 0..3000 {
        charge(&broker, &queue, &format!("o-{i}"), &format!("m-{i}"), None).await;
        if i % 6 == 5 {
            charge(
                &broker,
                &queue,
                &format!("o-{}", i - 1),
                &format!("again-{i}"),
                None,
            )
            .await;
        }
    }
    let (seq, n, uuid) = match db {
        Db::Postgres => (
            "generate_series(1, 5000) AS s(n)",
            "s.n::text",
            "gen_random_uuid()",
        ),
        Db::MariaDb => ("seq_1_to_5000 AS s", "s.seq", "UUID()"),
    };
    test_db.sql(&format!(
        "INSERT INTO mqkit_outbox (batch_id, consumer, message_id, exchange, routing_key, properties, body, mandatory, created_at) \
         SELECT {uuid}, '{queue}', CONCAT('s-', {n}), '', '{swept}', CONCAT('{{\"message_id\":\"s-', {n}, '\"}}'), {body}, TRUE, {old} FROM {seq}",
        body = bytes(db, &format!("CONCAT('{{\"order_id\":\"s-', {n}, '\"}}')")),
        old = if db == Db::Postgres { "now() - interval '1 minute'" } else { "NOW(6) - INTERVAL 1 MINUTE" }
    ));
    let done = eventually(Duration::from_secs(120), async || {
        broker.depth(&followups).await >= 3000
            && broker.depth(&swept).await >= 5000
            && broker.depth(&queue).await == 0
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (child, lines) in &mut children {
        assert!(
            child.try_wait().unwrap().is_none(),
            "an instance exited:\n{}",
            lines.text()
        );
    }
    let mut per_instance = Vec::new();
    for addr in addrs {
        let (_, text) = probe::get(addr, "/metrics").await;
        let samples = probe::parse(&text);
        per_instance.push((
            probe::value(
                &samples,
                "mqkit_outbox_published_total",
                &[("path", "sweeper")],
            )
            .unwrap_or(0.0),
            probe::value(
                &samples,
                "mqkit_outbox_published_total",
                &[("path", "relay")],
            )
            .unwrap_or(0.0),
            probe::value(
                &samples,
                "mqkit_messages_total",
                &[("queue", queue.as_str()), ("outcome", "ack")],
            )
            .unwrap_or(0.0),
        ));
    }
    let events = receive(&broker, &followups).await;
    let sweeps = receive(&broker, &swept).await;
    for (child, _) in &mut children {
        child.kill().unwrap();
        let _ = child.wait();
    }
    assert!(done, "follow-ups {} swept {}", events.total, sweeps.total);
    assert_eq!(test_db.count("SELECT COUNT(*) FROM effects"), 3000);
    assert_eq!(
        test_db.count("SELECT COUNT(DISTINCT order_id) FROM effects"),
        3000
    );
    assert_eq!(
        (events.total, events.message_ids.len()),
        (3000, 3000),
        "no follow-up twice"
    );
    assert_eq!(
        (sweeps.total, sweeps.message_ids.len()),
        (5000, 5000),
        "no swept row twice"
    );
    let [(a, ra, acks_a), (b, rb, acks_b)] = [per_instance[0], per_instance[1]];
    assert!(
        a > 0.0 && b > 0.0,
        "sweeper work not split: {per_instance:?}"
    );
    assert!(
        acks_a > 0.0 && acks_b > 0.0,
        "both instances handled charges: {per_instance:?}"
    );
    eprintln!(
        "{db:?}: sweeper rows published by instance A {a}, B {b}; relayed A {ra}, B {rb}; charges acked A {acks_a}, B {acks_b}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_the_work_without_doubles_on_postgres() {
    let _one = SERIAL.lock().await;
    two_instances(Db::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_the_work_without_doubles_on_mariadb() {
    let _one = SERIAL.lock().await;
    two_instances(Db::MariaDb).await;
}
