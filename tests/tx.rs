//! Transactional consumers (`mqkit::Tx`) against the real broker and the
//! machine's PostgreSQL and MariaDB, each test on both: effects and
//! follow-ups exactly once under re-published business keys, failures that
//! leave nothing behind, retention while consumption goes on, and
//! `mqkit::testing` on a real database. Each test has a database of its
//! own (`common/db.rs`). Faults (kill -9, outages, two instances) are in
//! `tx_faults.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "tx/consumers.rs"]
mod consumers;
#[path = "common/db.rs"]
mod db;
#[path = "tx/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use common::{Broker, Cleanup, eventually};
use db::{Db, TestDb};
use mqkit::Outcome;
use mqkit::testing::TestHarness;
use support::{app, charge, followup_queue, receive, spec_for};

/// 5,000 charges plus 1,000 re-publishes of the same business keys under
/// new message ids: exactly 5,000 effect rows, 5,000 inbox rows, and 5,000
/// follow-ups, each message id once, all persistent; no outbox row unsent.
async fn exactly_once(db: Db) {
    let test_db = TestDb::create(db, "once");
    test_db.effect_table();
    let broker = Broker::connect().await;
    let mut spec = spec_for(db, "tx-once");
    spec.prefetch = 50;
    spec.concurrency = 50;
    let followups = followup_queue(&broker, "tx-once-followups").await;
    let _cleanup = Cleanup::specs(&[&spec]).queue(&followups);
    let running = app(&test_db, &spec, &followups, |_| {})
        .start()
        .await
        .unwrap();
    let started = Instant::now();
    for i in 0..5000 {
        charge(
            &broker,
            &spec.queue,
            &format!("o-{i}"),
            &format!("m-{i}"),
            None,
        )
        .await;
        // Re-publishes of recent keys, so some copies arrive while the
        // first is still in its transaction.
        if i % 5 == 4 {
            let k = i - 2;
            charge(
                &broker,
                &spec.queue,
                &format!("o-{k}"),
                &format!("again-{k}"),
                None,
            )
            .await;
        }
    }
    let done = eventually(Duration::from_secs(120), async || {
        broker.depth(&followups).await >= 5000 && broker.depth(&spec.queue).await == 0
    })
    .await;
    assert!(done, "follow-ups: {}", broker.depth(&followups).await);
    // Anything doubled would arrive by now.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let took = started.elapsed();
    let got = receive(&broker, &followups).await;
    running.shutdown().await.unwrap();
    assert_eq!(test_db.count("SELECT COUNT(*) FROM effects"), 5000);
    assert_eq!(
        test_db.count("SELECT COUNT(DISTINCT order_id) FROM effects"),
        5000
    );
    assert_eq!(test_db.count("SELECT COUNT(*) FROM mqkit_inbox"), 5000);
    assert_eq!(
        test_db.count("SELECT COUNT(*) FROM mqkit_outbox WHERE sent_at IS NULL"),
        0
    );
    assert_eq!(got.total, 5000, "follow-ups received");
    assert_eq!(
        got.message_ids.len(),
        5000,
        "distinct follow-up message ids"
    );
    assert_eq!(got.orders.len(), 5000);
    assert_eq!(got.persistent, 5000);
    eprintln!("{db:?}: 6,000 deliveries (1,000 duplicates) handled in {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn effects_and_followups_exactly_once_on_postgres() {
    exactly_once(Db::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn effects_and_followups_exactly_once_on_mariadb() {
    exactly_once(Db::MariaDb).await;
}

/// A handler that fails after writing leaves no effect row, no outbox row
/// and no inbox row; retries and the DLQ work as for other consumers; a
/// rejected message can run again when replayed.
async fn failures_leave_nothing(db: Db) {
    let test_db = TestDb::create(db, "fail");
    test_db.effect_table();
    let broker = Broker::connect().await;
    let mut spec = spec_for(db, "tx-fail");
    spec.max_retries = 2;
    spec.retry_delay = Duration::from_millis(100);
    let followups = followup_queue(&broker, "tx-fail-followups").await;
    let _cleanup = Cleanup::specs(&[&spec]).queue(&followups);
    let running = app(&test_db, &spec, &followups, |_| {})
        .start()
        .await
        .unwrap();
    charge(&broker, &spec.queue, "o-retry", "m-retry", Some("retry")).await;
    charge(&broker, &spec.queue, "o-reject", "m-reject", Some("reject")).await;
    charge(&broker, &spec.queue, "o-panic", "m-panic", Some("panic")).await;
    let dead = eventually(Duration::from_secs(30), async || {
        broker.depth(&spec.dlq).await == 3
    })
    .await;
    assert!(dead, "DLQ depth {}", broker.depth(&spec.dlq).await);
    let letters = broker.drain(&spec.dlq).await;
    let mut kinds: Vec<(String, String)> = letters
        .iter()
        .map(|m| {
            let p = &m.delivery.properties;
            (
                p.message_id()
                    .as_ref()
                    .map(|s| s.to_string())
                    .unwrap_or_default(),
                common::header(p, "x-mqkit-error-kind").unwrap_or_default(),
            )
        })
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            ("m-panic".to_owned(), "retries-exhausted".to_owned()),
            ("m-reject".to_owned(), "rejected".to_owned()),
            ("m-retry".to_owned(), "retries-exhausted".to_owned()),
        ]
    );
    let attempts: Vec<String> = letters
        .iter()
        .filter_map(|m| common::header(&m.delivery.properties, "x-mqkit-attempts"))
        .collect();
    assert!(attempts.contains(&"3".to_owned()), "{attempts:?}");
    assert_eq!(test_db.count("SELECT COUNT(*) FROM effects"), 0);
    assert_eq!(test_db.count("SELECT COUNT(*) FROM mqkit_outbox"), 0);
    assert_eq!(test_db.count("SELECT COUNT(*) FROM mqkit_inbox"), 0);
    assert_eq!(broker.depth(&followups).await, 0);

    // The rejected charge, fixed and replayed under the same key, runs.
    charge(&broker, &spec.queue, "o-reject", "m-reject", None).await;
    let handled = eventually(Duration::from_secs(15), async || {
        broker.depth(&followups).await == 1
    })
    .await;
    assert!(handled, "the replayed charge was not handled");
    running.shutdown().await.unwrap();
    assert_eq!(
        test_db.count("SELECT COUNT(*) FROM effects WHERE order_id = 'o-reject'"),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_handler_leaves_no_rows_on_postgres() {
    failures_leave_nothing(Db::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_handler_leaves_no_rows_on_mariadb() {
    failures_leave_nothing(Db::MariaDb).await;
}

/// Old rows (past a 1 h retention) go in batches while 2,000 charges are
/// handled; a probe inserting into the effect table every 10 ms never
/// waits 1 s; recent rows and other services' inbox rows stay.
async fn retention(db: Db) {
    let test_db = TestDb::create(db, "keep");
    test_db.effect_table();
    let broker = Broker::connect().await;
    let mut spec = spec_for(db, "tx-keep");
    spec.idempotency_ttl = Duration::from_secs(60);
    spec.prefetch = 20;
    spec.concurrency = 20;
    let followups = followup_queue(&broker, "tx-keep-followups").await;
    let _cleanup = Cleanup::specs(&[&spec]).queue(&followups);
    // mqkit's tables first (a short-lived app), then old rows.
    let tune = |c: &mut mqkit::Config| {
        c.outbox.retention = Duration::from_secs(3600);
        c.outbox.retention_interval = Duration::from_millis(300);
        c.outbox.delete_batch = 500;
        c.outbox.delete_pause = Duration::from_millis(5);
    };
    let first = tune;
    let r = app(&test_db, &spec, &followups, |c| {
        first(c);
        c.outbox.retention_interval = Duration::from_secs(3600);
    })
    .start()
    .await
    .unwrap();
    r.shutdown().await.unwrap();
    let q = &spec.queue;
    let (old, seq) = match db {
        Db::Postgres => (
            "now() - interval '2 hours'",
            "generate_series(1, 20000) AS s(n)",
        ),
        Db::MariaDb => ("NOW(6) - INTERVAL 2 HOUR", "seq_1_to_20000 AS s"),
    };
    let n = if db == Db::Postgres {
        "s.n::text"
    } else {
        "s.seq"
    };
    let uuid = if db == Db::Postgres {
        "gen_random_uuid()"
    } else {
        "UUID()"
    };
    test_db.sql(&format!(
        "INSERT INTO mqkit_inbox (consumer, dedup_key, claim_id, received_at) SELECT '{q}', CONCAT('old-', {n}), {uuid}, {old} FROM {seq}"
    ));
    test_db.sql(&format!(
        "INSERT INTO mqkit_inbox (consumer, dedup_key, claim_id, received_at) SELECT 'another-service', CONCAT('old-', {n}), {uuid}, {old} FROM {seq}"
    ));
    test_db.sql(&format!(
        "INSERT INTO mqkit_outbox (batch_id, consumer, message_id, exchange, routing_key, properties, body, mandatory, created_at, sent_at) \
         SELECT {uuid}, '{q}', CONCAT('old-', {n}), '', 'x', '{{}}', '', TRUE, {old}, {old} FROM {seq}"
    ));
    assert_eq!(test_db.count("SELECT COUNT(*) FROM mqkit_outbox"), 20000);

    let probe_db = test_db.url();
    let stop = tokio_util_like_stop();
    let probe = tokio::spawn(probe_inserts(db, probe_db, stop.clone()));
    let running = app(&test_db, &spec, &followups, tune)
        .start()
        .await
        .unwrap();
    for i in 0..2000 {
        charge(&broker, q, &format!("new-{i}"), &format!("m-{i}"), None).await;
    }
    let done = eventually(Duration::from_secs(120), async || {
        broker.depth(&followups).await == 2000
            && test_db.count(&format!(
                "SELECT COUNT(*) FROM mqkit_inbox WHERE consumer = '{q}' AND dedup_key LIKE 'old-%'"
            )) == 0
            && test_db.count("SELECT COUNT(*) FROM mqkit_outbox WHERE message_id LIKE 'old-%'") == 0
    })
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let worst = probe.await.unwrap();
    running.shutdown().await.unwrap();
    assert!(
        done,
        "old rows left: inbox {}, outbox {}",
        test_db.count(&format!(
            "SELECT COUNT(*) FROM mqkit_inbox WHERE consumer = '{q}' AND dedup_key LIKE 'old-%'"
        )),
        test_db.count("SELECT COUNT(*) FROM mqkit_outbox WHERE message_id LIKE 'old-%'")
    );
    assert_eq!(
        test_db.count(&format!(
            "SELECT COUNT(*) FROM mqkit_inbox WHERE consumer = '{q}'"
        )),
        2000,
        "recent inbox rows stay"
    );
    assert_eq!(
        test_db.count("SELECT COUNT(*) FROM mqkit_inbox WHERE consumer = 'another-service'"),
        20000,
        "another service's inbox rows are its own"
    );
    assert_eq!(
        test_db.count("SELECT COUNT(*) FROM mqkit_outbox"),
        2000,
        "recent sent rows stay"
    );
    assert_eq!(
        test_db.count("SELECT COUNT(*) FROM effects WHERE order_id LIKE 'new-%'"),
        2000
    );
    eprintln!("{db:?}: slowest effect-table insert during retention: {worst:?}");
    assert!(
        worst < Duration::from_secs(1),
        "an insert into the effect table waited {worst:?}"
    );
}

fn tokio_util_like_stop() -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false))
}

/// Inserts into `effects` every 10 ms until `stop`; the slowest insert.
async fn probe_inserts(
    db: Db,
    url: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Duration {
    let mut worst = Duration::ZERO;
    match db {
        Db::Postgres => {
            let pool = sqlx::PgPool::connect(&url).await.unwrap();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let t = Instant::now();
                sqlx::query("INSERT INTO effects (order_id, cents) VALUES ('probe', 0)")
                    .execute(&pool)
                    .await
                    .unwrap();
                worst = worst.max(t.elapsed());
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        Db::MariaDb => {
            let pool = sqlx::MySqlPool::connect(&url).await.unwrap();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let t = Instant::now();
                sqlx::query("INSERT INTO effects (order_id, cents) VALUES ('probe', 0)")
                    .execute(&pool)
                    .await
                    .unwrap();
                worst = worst.max(t.elapsed());
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    worst
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_old_rows_in_batches_on_postgres() {
    retention(Db::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_old_rows_in_batches_on_mariadb() {
    retention(Db::MariaDb).await;
}

/// `mqkit::testing` runs a transactional handler on a real database: the
/// effect and what it staged on success, a duplicate the second time,
/// nothing on failure; without idempotency fields the message id is the
/// key, and a message with neither is rejected.
async fn harness(db: Db) {
    use mqkit::Consumer as _;
    let test_db = TestDb::create(db, "harness");
    test_db.effect_table();
    let followups = consumers::Followups("receipts".to_owned());
    let delay = consumers::HandlerDelay::default();
    macro_rules! harness_of {
        ($c:expr, $adjust:expr) => {{
            let c = $c;
            let mut spec = c.spec();
            $adjust(&mut spec);
            let store = std::sync::Arc::new(mqkit::MemoryStore::new());
            let h = TestHarness::with_store(c, spec, store)
                .state(followups.clone())
                .state(delay);
            match db {
                Db::Postgres => h
                    .database(sqlx::PgPool::connect(&test_db.url()).await.unwrap())
                    .await
                    .unwrap(),
                Db::MariaDb => h
                    .database(sqlx::MySqlPool::connect(&test_db.url()).await.unwrap())
                    .await
                    .unwrap(),
            }
        }};
    }
    let keep = |_: &mut mqkit::ConsumerSpec| {};
    let by_id = |s: &mut mqkit::ConsumerSpec| s.idempotency = &[];
    let ok = serde_json::json!({"order_id": "A-1", "cents": 5});
    let bad = serde_json::json!({"order_id": "A-2", "cents": 5, "fail": "retry"});
    let swallowed = serde_json::json!({"order_id": "A-3", "cents": 5, "fail": "swallow"});
    match db {
        Db::Postgres => {
            let h = harness_of!(consumers::charge_pg {}, keep);
            assert_eq!(h.deliver_json(&ok).await, Outcome::Ack);
            assert_eq!(h.deliver_json(&ok).await, Outcome::Duplicate);
            assert!(matches!(h.deliver_json(&bad).await, Outcome::Retry { .. }));
            // A failed statement the handler went on from aborted the
            // transaction: not committed, not acked.
            match h.deliver_json(&swallowed).await {
                Outcome::Retry { error, .. } => assert!(error.contains("aborted"), "{error}"),
                other => panic!("{other:?}"),
            }
            check_staged(&h.staged());
            let h = harness_of!(consumers::charge_pg {}, by_id);
            check_by_id(&h).await;
        }
        Db::MariaDb => {
            let h = harness_of!(consumers::charge_my {}, keep);
            assert_eq!(h.deliver_json(&ok).await, Outcome::Ack);
            assert_eq!(h.deliver_json(&ok).await, Outcome::Duplicate);
            assert!(matches!(h.deliver_json(&bad).await, Outcome::Retry { .. }));
            // MySQL rolls back only the failed statement: the rest commits.
            assert_eq!(h.deliver_json(&swallowed).await, Outcome::Ack);
            assert_eq!(h.staged().len(), 2);
            check_staged(&h.staged()[..1]);
            let h = harness_of!(consumers::charge_my {}, by_id);
            check_by_id(&h).await;
        }
    }
    assert_eq!(
        test_db.count("SELECT COUNT(*) FROM effects WHERE order_id = 'A-1'"),
        1
    );
    assert_eq!(
        test_db.count("SELECT COUNT(*) FROM effects WHERE order_id = 'A-2'"),
        0
    );
    assert_eq!(
        test_db.count("SELECT COUNT(*) FROM mqkit_outbox WHERE sent_at IS NULL"),
        0
    );
}

fn check_staged(staged: &[mqkit::testing::Published]) {
    assert_eq!(staged.len(), 1, "{staged:?}");
    assert_eq!(staged[0].routing_key, "receipts");
    assert_eq!(
        staged[0].json::<serde_json::Value>().unwrap()["order_id"],
        "A-1"
    );
    assert!(staged[0].properties.message_id.is_some());
}

async fn check_by_id<C: mqkit::Consumer>(h: &TestHarness<C>) {
    use mqkit::testing::TestDelivery;
    let d = TestDelivery::json(&serde_json::json!({"order_id": "B-1", "cents": 1})).unwrap();
    let with_id = d.clone().message_id("id-1");
    assert_eq!(h.deliver(&with_id).await, Outcome::Ack);
    assert_eq!(h.deliver(&with_id).await, Outcome::Duplicate);
    match h.deliver(&d).await {
        Outcome::DeadLetter { kind, error, .. } => {
            assert_eq!(kind, mqkit::DeadLetterKind::Rejected);
            assert!(error.contains("message id"), "{error}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_test_harness_runs_tx_handlers_on_postgres() {
    harness(Db::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_test_harness_runs_tx_handlers_on_mariadb() {
    harness(Db::MariaDb).await;
}

/// A `Tx` handler without a database fails startup naming it; one for
/// MariaDB given a PostgreSQL URL too.
#[tokio::test]
async fn startup_needs_the_right_database() {
    let spec = spec_for(Db::Postgres, "tx-nodb");
    let err = mqkit::App::new()
        .state(consumers::Followups("x".into()))
        .state(consumers::HandlerDelay::default())
        .consumer_with(consumers::charge_pg {}, |s| *s = spec.clone())
        .start()
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("handler `charge_pg` takes `mqkit::Tx`"),
        "{err}"
    );
    assert!(err.contains("MQKIT_DATABASE_URL"), "{err}");
    let err = mqkit::App::new()
        .config(mqkit::Config {
            database_url: Some("postgres://postgres:secretpw@127.0.0.1:5432/test".into()),
            ..mqkit::Config::default()
        })
        .state(consumers::Followups("x".into()))
        .state(consumers::HandlerDelay::default())
        .consumer_with(consumers::charge_my {}, |s| *s = spec.clone())
        .start()
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("handler `charge_my` takes a MySQL/MariaDB transaction"),
        "{err}"
    );
    assert!(!err.contains("secretpw"), "{err}");
    // Nothing was declared.
    let broker = Broker::connect().await;
    assert_eq!(broker.consumers(&spec.queue).await, None);
}

/// A transaction's three staged messages whose first is unroutable: none
/// is sent while it fails (it is retried with back-off, counted and logged,
/// never dropped), and once a queue is bound all three go, in order.
async fn unroutable_rows_wait_in_order(db: Db) {
    let test_db = TestDb::create(db, "order");
    test_db.effect_table();
    let broker = Broker::connect().await;
    let spec = spec_for(db, "tx-order");
    let later = common::unique("tx-order-later");
    let second = followup_queue(&broker, "tx-order-second").await;
    let _cleanup = Cleanup::specs(&[&spec]).queue(&second).queue(&later);
    let running = app(&test_db, &spec, &second, |c| {
        c.outbox.sweep_after = Duration::from_millis(500);
        c.outbox.sweep_interval = Duration::from_millis(200);
    })
    .start()
    .await
    .unwrap();
    let (batch, bytes) = match db {
        Db::Postgres => ("gen_random_uuid()", "convert_to"),
        Db::MariaDb => ("UUID()", ""),
    };
    let body = |n: u32| {
        if db == Db::Postgres {
            format!("{bytes}('{{\"n\":{n}}}', 'UTF8')")
        } else {
            format!("'{{\"n\":{n}}}'")
        }
    };
    let row = |n: u32, rk: &str| {
        format!(
            "(@b, 'x', 'o-{n}', '', '{rk}', '{{\"message_id\":\"o-{n}\"}}', {}, TRUE)",
            body(n)
        )
    };
    let values = [row(1, &later), row(2, &second), row(3, &second)].join(", ");
    match db {
        Db::Postgres => test_db.sql(&format!(
            "WITH b AS (SELECT {batch} AS id) INSERT INTO mqkit_outbox (batch_id, consumer, message_id, exchange, routing_key, properties, body, mandatory) \
             SELECT b.id, v.* FROM b, (VALUES {}) AS v(consumer, message_id, exchange, routing_key, properties, body, mandatory)",
            values.replace("(@b, ", "(")
        )),
        Db::MariaDb => test_db.sql(&format!(
            "SET @b = {batch}; INSERT INTO mqkit_outbox (batch_id, consumer, message_id, exchange, routing_key, properties, body, mandatory) VALUES {values}"
        )),
    };
    // The first is unroutable: it is tried and deferred, the others wait.
    let failed = eventually(Duration::from_secs(15), async || {
        test_db
            .count("SELECT COUNT(*) FROM mqkit_outbox WHERE message_id = 'o-1' AND attempts >= 2")
            == 1
    })
    .await;
    assert!(failed, "the unroutable row was not retried");
    assert_eq!(
        broker.depth(&second).await,
        0,
        "nothing after the unroutable row was sent"
    );
    let error = test_db.sql("SELECT last_error FROM mqkit_outbox WHERE message_id = 'o-1'");
    assert!(error.contains("unroutable"), "{error}");
    assert_eq!(
        test_db.count("SELECT COUNT(*) FROM mqkit_outbox WHERE sent_at IS NULL"),
        3
    );
    // Bound now: all three go, in order.
    let _ = followup_queue_named(&broker, &later).await;
    let sent = eventually(Duration::from_secs(30), async || {
        test_db.count("SELECT COUNT(*) FROM mqkit_outbox WHERE sent_at IS NULL") == 0
    })
    .await;
    running.shutdown().await.unwrap();
    assert!(sent, "rows still unsent after the queue was declared");
    assert_eq!(broker.drain(&later).await.len(), 1);
    let ids: Vec<String> = broker
        .drain(&second)
        .await
        .iter()
        .map(|m| {
            m.delivery
                .properties
                .message_id()
                .as_ref()
                .map(|s| s.to_string())
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(ids, ["o-2", "o-3"]);
}

async fn followup_queue_named(broker: &Broker, name: &str) -> String {
    broker
        .channel
        .queue_declare(
            name.into(),
            lapin::options::QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            lapin::types::FieldTable::default(),
        )
        .await
        .unwrap();
    name.to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unroutable_message_holds_back_the_rest_of_its_transaction_on_postgres() {
    unroutable_rows_wait_in_order(Db::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unroutable_message_holds_back_the_rest_of_its_transaction_on_mariadb() {
    unroutable_rows_wait_in_order(Db::MariaDb).await;
}
