//! Alerts: rate-limited per queue with the folded count, and a failing or
//! silent webhook that never stops archiving.

use super::*;

#[mqkit::consumer(queue = "alerts", max_retries = 0, prefetch = 50)]
async fn alert_handler(e: Event) -> Result<(), HandlerError> {
    Err(HandlerError::reject(format!("bad order {}", e.id)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_dead_letters_in_a_window_make_at_most_two_alerts_with_the_total_count() {
    let db = db().await;
    let hook = Hook::start(HookMode::Ok).await;
    // A 15 s window stands in for the minute; 50 dead letters take far less.
    let tuning = DlqTuning {
        alert_window: Duration::from_secs(15),
        ..tuning()
    };
    let (spec, running, _cleanup, _db_cleanup) = start(
        alert_handler {},
        "alerts",
        app(Some(DB_URL.to_owned()), Some(hook.url()), tuning),
    )
    .await;
    let publisher = running.publisher().clone();
    for i in 0..50 {
        publisher
            .publish_json("", &spec.queue, &json!({"id": format!("a{i}")}))
            .await
            .unwrap();
    }
    assert!(
        eventually(Duration::from_secs(60), async || hook
            .received()
            .iter()
            .map(|r| r.count())
            .sum::<u64>()
            >= 50)
        .await,
        "alerts: {:?}",
        hook.received()
    );
    assert_eq!(rows(&db, &spec.queue).await.len(), 50);
    running.shutdown().await.unwrap();

    let alerts = hook.received();
    eprintln!(
        "alerts for 50 dead letters: counts {:?}",
        alerts.iter().map(|a| a.count()).collect::<Vec<_>>()
    );
    assert!(alerts.len() <= 2, "{} alerts: {alerts:?}", alerts.len());
    assert_eq!(alerts.iter().map(|a| a.count()).sum::<u64>(), 50);
    for a in &alerts {
        assert!(
            a.head
                .starts_with("POST /hook?key=hook-secret HTTP/1.1\r\n"),
            "{}",
            a.head
        );
        assert_eq!(
            a.header("content-type").as_deref(),
            Some("application/json")
        );
        let body = a.json();
        assert_eq!(body["msgtype"], "text");
        assert_eq!(body.as_object().map(|o| o.len()), Some(2), "{body}");
        let content = body["text"]["content"].as_str().unwrap();
        assert!(
            content.contains(&format!("from queue `{}`", spec.queue)),
            "{content}"
        );
        assert!(content.contains("kind `rejected`"), "{content}");
        assert!(content.contains("error: bad order a"), "{content}");
        assert!(content.contains("message id `"), "{content}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_that_fails_or_never_answers_does_not_stop_archiving() {
    let db = db().await;
    for mode in [HookMode::Fail500, HookMode::Silent] {
        let hook = Hook::start(mode).await;
        // A 1 s window: several alerts, each failing, while archiving goes on.
        let tuning = DlqTuning {
            alert_window: Duration::from_secs(1),
            alert_timeout: Duration::from_secs(1),
            ..tuning()
        };
        let (spec, running, _cleanup, _db_cleanup) = start(
            alert_handler {},
            "alerts-failing",
            app(Some(DB_URL.to_owned()), Some(hook.url()), tuning),
        )
        .await;
        let publisher = running.publisher().clone();
        for i in 0..30 {
            publisher
                .publish_json("", &spec.queue, &json!({"id": format!("f{i}")}))
                .await
                .unwrap();
            if i == 10 {
                tokio::time::sleep(Duration::from_millis(1200)).await;
            }
        }
        assert!(
            eventually(Duration::from_secs(60), async || rows(&db, &spec.queue)
                .await
                .len()
                == 30)
            .await,
            "{mode:?}: {} rows",
            rows(&db, &spec.queue).await.len()
        );
        assert!(
            eventually(Duration::from_secs(10), async || total_messages(&spec.dlq)
                .await
                == 0)
            .await,
            "{mode:?}: all acked"
        );
        assert!(
            !hook.received().is_empty(),
            "{mode:?}: the webhook was called"
        );
        running.shutdown().await.unwrap();
    }
}
