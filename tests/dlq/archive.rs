//! The archiver, each test on MariaDB and on PostgreSQL: every kind of dead
//! letter as one row with every field, a redelivery without a second row, a
//! database outage, retention, startup checks and masked passwords.

use super::*;

#[mqkit::consumer(
    queue = "archive",
    idempotency = "id",
    max_retries = 1,
    retry_delay = "100ms"
)]
async fn archive_handler(e: Event) -> Result<(), HandlerError> {
    match e.kind.as_str() {
        "reject" => Err(HandlerError::reject(format!("order {} is invalid", e.id))),
        "fail" => Err(std::io::Error::other("ledger unavailable").into()),
        _ => Ok(()),
    }
}

on_both!(every_kind:
    dead_letters_of_every_kind_become_one_row_each_with_every_field_mariadb, Backend::MySql;
    dead_letters_of_every_kind_become_one_row_each_with_every_field_postgres, Backend::Postgres);

async fn every_kind(backend: Backend) {
    let broker = Broker::connect().await;
    let db = db_of(backend).await;
    let (spec, running, _cleanup, mut db_cleanup) = start(
        archive_handler {},
        "archive",
        app(Some(backend.url()), None, tuning()).http_addr("127.0.0.1:0"),
    )
    .await;
    let q = spec.queue.to_string();
    // A dead letter RabbitMQ makes itself: a TTL queue dead-lettering into
    // the same DLQ, and a message without a message id.
    let ttl_queue = format!("{q}.ttl");
    let _ttl_cleanup = Cleanup::specs(&[]).queue(&ttl_queue);
    db_cleanup.0.push(ttl_queue.clone());
    let mut args = FieldTable::default();
    args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(50));
    args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(spec.dlx.as_ref().into()),
    );
    args.insert(
        "x-dead-letter-routing-key".into(),
        AMQPValue::LongString(spec.dlq.as_ref().into()),
    );
    broker.declare_queue(&ttl_queue, args).await;

    let started = std::time::SystemTime::now();
    broker
        .publish(&q, br#"{"id": "d1", "kind": 5}"#, props("m-decode"))
        .await;
    broker
        .publish(&q, br#"{"id": "r1", "kind": "reject"}"#, props("m-reject"))
        .await;
    broker
        .publish(&q, br#"{"id": "f1", "kind": "fail"}"#, props("m-fail"))
        .await;
    broker
        .publish(&ttl_queue, b"expired body", BasicProperties::default())
        .await;

    assert!(
        eventually(Duration::from_secs(30), async || rows(&db, &q).await.len()
            == 3
            && rows(&db, &ttl_queue).await.len() == 1)
        .await,
        "rows: {:?} {:?}",
        rows(&db, &q).await,
        rows(&db, &ttl_queue).await
    );
    let archived = rows(&db, &q).await;
    let by_id = |id: &str| {
        archived
            .iter()
            .find(|r| r.message_id == id)
            .unwrap()
            .clone()
    };
    let expected = [
        (
            "m-decode",
            "decode",
            1,
            "d1",
            br#"{"id": "d1", "kind": 5}"#.as_slice(),
        ),
        (
            "m-reject",
            "rejected",
            1,
            "r1",
            br#"{"id": "r1", "kind": "reject"}"#,
        ),
        (
            "m-fail",
            "retries-exhausted",
            2,
            "f1",
            br#"{"id": "f1", "kind": "fail"}"#,
        ),
    ];
    for (id, kind, attempts, key, body) in expected {
        let r = by_id(id);
        assert_eq!(r.original_queue, q, "{id}");
        assert_eq!(r.dlq, spec.dlq.as_ref(), "{id}");
        assert_eq!(r.error_kind, kind, "{id}");
        assert_eq!(r.attempts, Some(attempts), "{id}");
        assert_eq!(
            r.business_key,
            Some(format!("mqkit:idem:{q}:{key}")),
            "{id}"
        );
        assert_eq!(r.body, body, "{id}");
        assert_eq!(r.headers["x-mqkit-error-kind"], kind, "{id}");
        assert_eq!(r.headers["x-mqkit-original-queue"], q.as_str(), "{id}");
        let failed_at = r.headers["x-mqkit-failed-at"].as_str().unwrap();
        // The column is the header's instant, in UTC, to the millisecond.
        assert_eq!(
            r.failed_at,
            failed_at.replace('T', " ").trim_end_matches('Z'),
            "{id}"
        );
        let t = humantime::parse_rfc3339(failed_at).unwrap();
        assert!(t >= started - Duration::from_secs(2), "{id}: {failed_at}");
        assert!(!r.error_text.is_empty(), "{id}");
    }
    assert!(
        by_id("m-decode")
            .error_text
            .starts_with("cannot decode Event")
    );
    assert_eq!(by_id("m-reject").error_text, "order r1 is invalid");
    assert_eq!(by_id("m-fail").error_text, "ledger unavailable");

    let expired = &rows(&db, &ttl_queue).await[0];
    assert_eq!(expired.error_kind, "expired");
    assert!(
        expired.error_text.contains("TTL expired"),
        "{}",
        expired.error_text
    );
    assert!(
        expired.message_id.starts_with("uuid5:"),
        "{}",
        expired.message_id
    );
    assert_eq!(expired.body, b"expired body");
    assert_eq!(expired.attempts, None);
    assert_eq!(
        expired.business_key, None,
        "no consumer spec for that queue"
    );
    assert!(
        !expired.failed_at.starts_with("1970"),
        "{}",
        expired.failed_at
    );

    // Archived means acked: the DLQ holds nothing, not even unacked.
    assert!(
        eventually(Duration::from_secs(10), async || total_messages(&spec.dlq)
            .await
            == 0)
        .await
    );

    // The same dead letter again (a redelivery): acked, no second row.
    let reject = by_id("m-reject");
    let mut headers = FieldTable::default();
    for (k, v) in reject.headers.as_object().unwrap() {
        let v = match v {
            serde_json::Value::String(s) => AMQPValue::LongString(LongString::from(s.as_str())),
            serde_json::Value::Number(n) => AMQPValue::LongLongInt(n.as_i64().unwrap()),
            other => panic!("unexpected header {k}: {other}"),
        };
        headers.insert(k.as_str().into(), v);
    }
    broker
        .publish(
            &spec.dlq,
            &reject.body,
            props("m-reject").with_headers(headers),
        )
        .await;
    assert!(
        eventually(Duration::from_secs(20), async || total_messages(&spec.dlq)
            .await
            == 0)
        .await,
        "the redelivered copy is acked"
    );
    // The archiver's counters are on the service's /metrics.
    let addr = running.http_addr().unwrap();
    let metrics = crate::probe::parse(&crate::probe::get(addr, "/metrics").await.1);
    let archived = |outcome| {
        crate::probe::value(
            &metrics,
            "mqkit_dlq_archived_total",
            &[("dlq", spec.dlq.as_ref()), ("outcome", outcome)],
        )
    };
    assert_eq!(archived("stored"), Some(4.0), "{metrics:?}");
    assert_eq!(archived("duplicate"), Some(1.0), "{metrics:?}");
    running.shutdown().await.unwrap();
    let again = rows(&db, &q).await;
    assert_eq!(again.len(), 3, "no second row: {again:?}");
    assert_eq!(
        again.iter().filter(|r| r.message_id == "m-reject").count(),
        1
    );
}

#[mqkit::consumer(queue = "outage", max_retries = 0)]
async fn outage_handler(e: Event) -> Result<(), HandlerError> {
    Err(HandlerError::reject(format!("no {}", e.id)))
}

on_both!(outage:
    with_the_database_down_nothing_is_acked_and_rows_appear_once_it_is_back_mariadb, Backend::MySql;
    with_the_database_down_nothing_is_acked_and_rows_appear_once_it_is_back_postgres, Backend::Postgres);

async fn outage(backend: Backend) {
    let db = db_of(backend).await;
    let proxy = DbProxy::start_to(backend).await;
    let (spec, running, _cleanup, _db_cleanup) = start(
        outage_handler {},
        "outage",
        app(Some(proxy.url()), None, tuning()),
    )
    .await;
    let broker = Broker::connect().await;
    let q = spec.queue.to_string();
    // One dead letter while the database is up: the archiver is running.
    broker
        .publish(&q, br#"{"id": "before"}"#, props("before"))
        .await;
    assert!(
        eventually(Duration::from_secs(30), async || rows(&db, &q).await.len()
            == 1)
        .await
    );

    proxy.go_down().await;
    for i in 0..5 {
        let id = format!("down-{i}");
        broker
            .publish(&q, json!({"id": id}).to_string().as_bytes(), props(&id))
            .await;
    }
    // All five reach the DLQ and stay there (ready or held unacked) ...
    assert!(
        eventually(Duration::from_secs(30), async || total_messages(&spec.dlq)
            .await
            == 5)
        .await,
        "DLQ holds {} messages, work queue {}; rows {:?}",
        total_messages(&spec.dlq).await,
        total_messages(&spec.queue).await,
        rows(&db, &q).await
    );
    // ... while the archiver keeps trying and is refused ...
    let refused_before = proxy.refused.load(Ordering::SeqCst);
    assert!(
        eventually(Duration::from_secs(30), async || proxy
            .refused
            .load(Ordering::SeqCst)
            >= refused_before + 3)
        .await
    );
    // ... and meanwhile nothing was stored, nothing acked, nothing lost.
    assert_eq!(rows(&db, &q).await.len(), 1);
    assert_eq!(total_messages(&spec.dlq).await, 5);

    proxy.set_up(true);
    let back = std::time::Instant::now();
    assert!(
        eventually(Duration::from_secs(60), async || rows(&db, &q).await.len()
            == 6)
        .await,
        "rows after the outage: {:?}",
        rows(&db, &q).await
    );
    eprintln!(
        "outage: {} connections refused; all rows stored {:?} after the database came back",
        proxy.refused.load(Ordering::SeqCst),
        back.elapsed()
    );

    assert!(
        eventually(Duration::from_secs(20), async || total_messages(&spec.dlq)
            .await
            == 0)
        .await
    );
    running.shutdown().await.unwrap();
    let ids: BTreeSet<String> = rows(&db, &q)
        .await
        .into_iter()
        .map(|r| r.message_id)
        .collect();
    let want: BTreeSet<String> = ["before", "down-0", "down-1", "down-2", "down-3", "down-4"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(ids, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letter_settings_are_checked_at_startup() {
    let err = app(None, Some("http://127.0.0.1:9/hook".into()), tuning())
        .consumer(outage_handler {})
        .start()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("MQKIT_DLQ_ALERT_WEBHOOK is set but MQKIT_DLQ_ARCHIVE_URL is not"),
        "{err}"
    );
    let err = app(
        Some("redis://root:pw-s3cret@127.0.0.1:6379/0".into()),
        None,
        tuning(),
    )
    .consumer(outage_handler {})
    .start()
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with(
            "MQKIT_DLQ_ARCHIVE_URL=redis://root:****@127.0.0.1:6379/0: not a MySQL/MariaDB or PostgreSQL URL; use mysql://"
        ),
        "{err}"
    );
    assert!(!err.contains("pw-s3cret"), "{err}");
}

on_both!(refused_login:
    a_refused_database_login_is_logged_with_the_password_masked_mariadb, Backend::MySql;
    a_refused_database_login_is_logged_with_the_password_masked_postgres, Backend::Postgres);

async fn refused_login(backend: Backend) {
    let url = match backend {
        Backend::MySql => "mysql://nobody:db-s3cret@127.0.0.1:3306/test",
        Backend::Postgres => "postgres://nobody:db-s3cret@127.0.0.1:5432/test",
    };
    let shown = url.replace("db-s3cret", "****");
    let queue = common::unique("masked");
    let mut spec = ConsumerSpec::new(queue.clone());
    spec.dlx = format!("{queue}.dlx").into();
    let _cleanup = Cleanup::specs(&[&spec]);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mqkit-test-service"))
        .env("MQKIT_AMQP_URL", AMQP_URL)
        .env("MQKIT_DLQ_ARCHIVE_URL", url)
        .env("TEST_QUEUE", &queue)
        .env("TEST_DLX", spec.dlx.as_ref())
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let lines = tokio::task::spawn_blocking(move || {
        use std::io::BufRead as _;
        let mut seen = Vec::new();
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let done = line.contains("cannot prepare the dead-letter archive table");
            seen.push(line);
            if done {
                break;
            }
        }
        seen
    });
    let lines = tokio::time::timeout(Duration::from_secs(60), lines)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let _ = child.kill();
    let _ = child.wait();
    let text = lines.join("\n");
    assert!(
        text.contains("cannot prepare the dead-letter archive table"),
        "{text}"
    );
    assert!(text.contains(&shown), "{text}");
    assert!(!text.contains("db-s3cret"), "password leaked: {text}");
}

#[mqkit::consumer(queue = "retention", max_retries = 0)]
async fn retention_handler(e: Event) -> Result<(), HandlerError> {
    Err(HandlerError::reject(format!("no {}", e.id)))
}

on_both!(retention:
    retention_deletes_only_rows_past_it_in_batches_mariadb, Backend::MySql;
    retention_deletes_only_rows_past_it_in_batches_postgres, Backend::Postgres);

async fn retention(backend: Backend) {
    let db = db_of(backend).await;
    // Batches of 2 rows every 200 ms: five old rows take three batches.
    let tuning = DlqTuning {
        retention_interval: Duration::from_millis(200),
        delete_batch: 2,
        delete_pause: Duration::from_millis(10),
        ..tuning()
    };
    let app = App::new().config(Config {
        amqp_urls: vec![AMQP_URL.to_owned()],
        shutdown_grace: Duration::from_secs(5),
        dlq_archive_url: Some(backend.url()),
        dlq_archive_retention: Duration::from_secs(30 * 86_400),
        dlq_tuning: tuning,
        ..Config::default()
    });
    let (spec, running, _cleanup, _db_cleanup) =
        start(retention_handler {}, "retention", app).await;
    let broker = Broker::connect().await;
    let q = spec.queue.to_string();
    let ids = [
        "old-0", "old-1", "old-2", "old-3", "old-4", "young-0", "new-0",
    ];
    for id in ids {
        broker
            .publish(&q, json!({"id": id}).to_string().as_bytes(), props(id))
            .await;
    }
    assert!(
        eventually(Duration::from_secs(30), async || rows(&db, &q).await.len()
            == ids.len())
        .await,
        "{:?}",
        rows(&db, &q).await
    );
    // Five rows archived 31 days ago, one 29 days ago, one now.
    let aged = |days: u32, pattern: &str| {
        let mysql = format!(
            "UPDATE mqkit_dead_letters SET archived_at = UTC_TIMESTAMP(3) - INTERVAL {days} DAY \
             WHERE original_queue = ? AND message_id LIKE '{pattern}'"
        );
        let postgres = format!(
            "UPDATE mqkit_dead_letters SET archived_at = (now() AT TIME ZONE 'UTC') - interval '{days} days' \
             WHERE original_queue = $1 AND message_id LIKE '{pattern}'"
        );
        (mysql, postgres)
    };
    let (m, p) = aged(29, "young-%");
    assert_eq!(exec(&db, &m, &p, &q).await, 1);
    let (m, p) = aged(31, "old-%");
    assert_eq!(exec(&db, &m, &p, &q).await, 5);
    let left = |rows: Vec<Archived>| {
        let mut ids: Vec<String> = rows.into_iter().map(|r| r.message_id).collect();
        ids.sort();
        ids
    };
    assert!(
        eventually(Duration::from_secs(30), async || rows(&db, &q).await.len()
            == 2)
        .await,
        "rows left: {:?}",
        left(rows(&db, &q).await)
    );
    // A few more rounds: nothing else goes.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(left(rows(&db, &q).await), ["new-0", "young-0"]);
    running.shutdown().await.unwrap();
}
