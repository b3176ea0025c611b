//! Alerts: rate-limited per queue with the folded count; each format's body
//! over HTTPS (a CA made for the test, trusted through
//! `MQKIT_DLQ_ALERT_CA_FILE`) with DingTalk's and Feishu's signatures
//! checked independently; and a failing, silent or untrusted webhook that
//! never stops archiving.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hmac::{Hmac, Mac as _};
use sha2::Sha256;

use super::*;

#[mqkit::consumer(queue = "alerts", max_retries = 0, prefetch = 50)]
async fn alert_handler(e: Event) -> Result<(), HandlerError> {
    Err(HandlerError::reject(format!("bad order {}", e.id)))
}

on_both!(fifty:
    fifty_dead_letters_in_a_window_make_at_most_two_alerts_with_the_total_count_mariadb, Backend::MySql;
    fifty_dead_letters_in_a_window_make_at_most_two_alerts_with_the_total_count_postgres, Backend::Postgres);

async fn fifty(backend: Backend) {
    let db = db_of(backend).await;
    let hook = Hook::start(HookMode::Ok).await;
    // A 15 s window stands in for the minute; 50 dead letters take far less.
    let tuning = DlqTuning {
        alert_window: Duration::from_secs(15),
        ..tuning()
    };
    let (spec, running, _cleanup, _db_cleanup) = start(
        alert_handler {},
        "alerts",
        app(Some(backend.url()), Some(hook.url()), tuning),
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
    // (what, hook, trust its CA): over http a 500 and an answer that never
    // comes; over https a handshake that never completes, and a
    // certificate nobody trusts (the platform's roots do not know the
    // test's CA).
    let hooks = [
        ("http 500", Hook::start(HookMode::Fail500).await, false),
        ("http silent", Hook::start(HookMode::Silent).await, false),
        ("https mute", Hook::start_tls(HookMode::Mute).await, true),
        (
            "https untrusted",
            Hook::start_tls(HookMode::Ok).await,
            false,
        ),
    ];
    for (mode, hook, trusted) in &hooks {
        // A 1 s window: several alerts, each failing, while archiving goes on.
        let tuning = DlqTuning {
            alert_window: Duration::from_secs(1),
            alert_timeout: Duration::from_secs(1),
            ..tuning()
        };
        let app = App::new().config(Config {
            amqp_urls: vec![AMQP_URL.to_owned()],
            shutdown_grace: Duration::from_secs(5),
            dlq_archive_url: Some(DB_URL.to_owned()),
            dlq_alert_webhook: Some(hook.url()),
            dlq_alert_ca_file: hook.ca_file().filter(|_| *trusted).map(Into::into),
            dlq_tuning: tuning,
            ..Config::default()
        });
        let (spec, running, _cleanup, _db_cleanup) =
            start(alert_handler {}, "alerts-failing", app).await;
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
        assert!(hook.accepted() > 0, "{mode:?}: the webhook was called");
        if hook.ca.is_none() {
            assert!(!hook.received().is_empty(), "{mode:?}: a request was sent");
        } else {
            // Mute: no handshake; untrusted: the client refused the
            // certificate before sending anything.
            assert!(
                hook.received().is_empty(),
                "{mode:?}: {:?}",
                hook.received()
            );
        }
        running.shutdown().await.unwrap();
    }
}

/// HMAC-SHA256 of `message` with `key`, base64: written here from the
/// robots' documentation, not taken from mqkit.
fn hmac_base64(key: &[u8], message: &[u8]) -> String {
    let mut mac = <Hmac<Sha256>>::new_from_slice(key).unwrap();
    mac.update(message);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Milliseconds since the epoch, now.
fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

/// The keys of a JSON object, sorted.
fn keys(value: &serde_json::Value) -> Vec<&str> {
    let mut keys: Vec<&str> = value
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {value}"))
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_format_arrives_over_https_with_its_body_and_a_signature_that_verifies() {
    let db = db().await;
    let hook = Hook::start_tls(HookMode::Ok).await;
    let formats = [
        ("wecom", None),
        ("dingtalk", Some("SEC0123456789abcdef-dingtalk")),
        ("feishu", Some("feishu-bot-secret-42")),
        ("slack", None),
    ];
    for (format, secret) in formats {
        let before = hook.received().len();
        let app = App::new().config(Config {
            amqp_urls: vec![AMQP_URL.to_owned()],
            shutdown_grace: Duration::from_secs(5),
            dlq_archive_url: Some(DB_URL.to_owned()),
            dlq_alert_webhook: Some(hook.url()),
            dlq_alert_format: Some(format.to_owned()),
            dlq_alert_secret: secret.map(str::to_owned),
            dlq_alert_ca_file: hook.ca_file().map(Into::into),
            dlq_tuning: tuning(),
            ..Config::default()
        });
        let (spec, running, _cleanup, _db_cleanup) =
            start(alert_handler {}, &format!("alerts-{format}"), app).await;
        running
            .publisher()
            .publish_json("", &spec.queue, &json!({"id": format!("{format}-1")}))
            .await
            .unwrap();
        assert!(
            eventually(Duration::from_secs(30), async || hook.received().len()
                > before)
            .await,
            "{format}: no alert"
        );
        running.shutdown().await.unwrap();
        assert_eq!(rows(&db, &spec.queue).await.len(), 1, "{format}");
        let alerts = hook.received();
        assert_eq!(alerts.len(), before + 1, "{format}: {alerts:?}");
        let alert = &alerts[before];
        eprintln!(
            "{format} alert: POST {}\n{}",
            alert.target(),
            String::from_utf8_lossy(&alert.body)
        );
        assert!(alert.tls, "{format}: not over TLS");
        assert!(
            alert.head.starts_with("POST /hook?key=hook-secret"),
            "{}",
            alert.head
        );
        assert_eq!(
            alert.header("content-type").as_deref(),
            Some("application/json")
        );
        let body = alert.json();
        let content = match format {
            "wecom" | "dingtalk" => {
                assert_eq!(keys(&body), ["msgtype", "text"], "{body}");
                assert_eq!(body["msgtype"], "text");
                assert_eq!(keys(&body["text"]), ["content"], "{body}");
                body["text"]["content"].as_str().unwrap().to_owned()
            }
            "feishu" => {
                assert_eq!(
                    keys(&body),
                    ["content", "msg_type", "sign", "timestamp"],
                    "{body}"
                );
                assert_eq!(body["msg_type"], "text");
                assert_eq!(keys(&body["content"]), ["text"], "{body}");
                body["content"]["text"].as_str().unwrap().to_owned()
            }
            _ => {
                assert_eq!(keys(&body), ["text"], "{body}");
                body["text"].as_str().unwrap().to_owned()
            }
        };
        assert!(
            content.starts_with(&format!(
                "mqkit: 1 dead letter from queue `{}` (archived from `{}`); kinds: rejected ×1.",
                spec.queue, spec.dlq
            )),
            "{content}"
        );
        assert!(
            content.contains(&format!("error: bad order {format}-1")),
            "{content}"
        );

        let query = alert.query();
        let names: Vec<&str> = query.iter().map(|(k, _)| k.as_str()).collect();
        match (format, secret) {
            ("dingtalk", Some(secret)) => {
                // timestamp (ms) and sign = urlencode(base64(HMAC-SHA256(
                // key = secret, timestamp + "\n" + secret))).
                assert_eq!(names, ["key", "timestamp", "sign"], "{}", alert.target());
                let timestamp = &query[1].1;
                let ms: u128 = timestamp.parse().unwrap();
                assert!(now_ms().abs_diff(ms) < 60_000, "timestamp {ms}");
                let expected = hmac_base64(
                    secret.as_bytes(),
                    format!("{timestamp}\n{secret}").as_bytes(),
                );
                assert_eq!(query[2].1, expected, "{}", alert.target());
            }
            ("feishu", Some(secret)) => {
                // timestamp (s, a string) and sign = base64(HMAC-SHA256(
                // key = timestamp + "\n" + secret, message = nothing)).
                assert_eq!(names, ["key"], "{}", alert.target());
                let timestamp = body["timestamp"].as_str().unwrap();
                let secs: u128 = timestamp.parse().unwrap();
                assert!((now_ms() / 1000).abs_diff(secs) < 60, "timestamp {secs}");
                let expected = hmac_base64(format!("{timestamp}\n{secret}").as_bytes(), b"");
                assert_eq!(body["sign"].as_str(), Some(expected.as_str()), "{body}");
            }
            _ => assert_eq!(names, ["key"], "{}", alert.target()),
        }
    }
}
