//! `mqkit dlq serve`, the web console over the archive, run as a child
//! process: the fixtures both console tests share (seeded archive rows,
//! the consumers of their original queues, reading the rows back), and the
//! console over plain HTTP on PostgreSQL (login, same-origin check, error
//! pages, the replay, the database gone). The browser test is in
//! `browser.rs`.

use std::collections::BTreeMap;
use std::time::SystemTime;

use super::web::{Served, http};
use super::*;

/// Deliveries the consumers below saw, by the id in the body.
static SEEN: Mutex<Vec<String>> = Mutex::new(Vec::new());

pub(crate) fn seen_with(prefix: &str) -> Vec<String> {
    let mut seen: Vec<String> = SEEN
        .lock()
        .unwrap()
        .iter()
        .filter(|id| id.starts_with(prefix))
        .cloned()
        .collect();
    seen.sort();
    seen
}

#[mqkit::consumer(queue = "console-a", prefetch = 10)]
async fn console_a(e: Event) -> Result<(), HandlerError> {
    SEEN.lock().unwrap().push(e.id);
    Ok(())
}

#[mqkit::consumer(queue = "console-b", prefetch = 10)]
async fn console_b(e: Event) -> Result<(), HandlerError> {
    SEEN.lock().unwrap().push(e.id);
    Ok(())
}

pub(crate) const KINDS: [&str; 3] = ["rejected", "decode", "retries-exhausted"];
/// The row whose body carries a script, and the one replayed before.
pub(crate) const SCRIPT: usize = 15;
pub(crate) const REPLAYED: usize = 17;
pub(crate) const SCRIPT_BODY: &str = "<script>alert(1)</script>";

fn utc(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t)
        .to_string()
        .replace('T', " ")
        .trim_end_matches('Z')
        .to_owned()
}

/// Archives `n` rows as the archiver writes them: row `i` in `qa` for
/// `i < split`, else in `qb`; kinds in turn; over 4 days; every error text
/// carries `marker`. Returns the ids by row.
pub(crate) async fn seed(
    db: &Archive,
    qa: &str,
    qb: &str,
    n: usize,
    split: usize,
    marker: &str,
) -> Vec<i64> {
    let now = SystemTime::now();
    for i in 0..n {
        let queue = if i < split { qa } else { qb };
        let kind = KINDS[i % 3];
        let failed_at = utc(now - Duration::from_secs((i % 4) as u64 * 86_400 + 60));
        let mut body = json!({"id": format!("{queue}/K-{i}")});
        if i == SCRIPT {
            body["note"] = json!(SCRIPT_BODY);
        }
        let headers = json!({
            "x-mqkit-error-kind": kind,
            "x-mqkit-error": format!("{marker} problem {i}"),
            "x-mqkit-attempts": 1,
            "x-mqkit-original-queue": queue,
        })
        .to_string();
        let properties = json!({
            "content_type": "application/json",
            "delivery_mode": 2,
            "message_id": format!("m-{i}"),
        })
        .to_string();
        let replayed = (i == REPLAYED).then(|| utc(now - Duration::from_secs(30)));
        let values = (
            queue,
            format!("m-{i}"),
            failed_at,
            format!("dlq.{queue}"),
            format!("mqkit:idem:{queue}:K-{i}"),
            kind,
            format!("{marker} problem {i}"),
            headers,
            properties,
            body.to_string().into_bytes(),
            replayed,
            i64::from(i == REPLAYED),
        );
        let columns = "original_queue, message_id, failed_at, dlq, business_key, error_kind, error_text, attempts, headers, properties, body, replayed_at, replays";
        match db {
            Archive::My(db) => {
                let sql = format!(
                    "INSERT INTO mqkit_dead_letters ({columns}) VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?)"
                );
                sqlx::query(&sql)
                    .bind(values.0)
                    .bind(values.1)
                    .bind(values.2)
                    .bind(values.3)
                    .bind(values.4)
                    .bind(values.5)
                    .bind(values.6)
                    .bind(values.7)
                    .bind(values.8)
                    .bind(values.9)
                    .bind(values.10)
                    .bind(values.11)
                    .execute(db)
                    .await
                    .unwrap();
            }
            Archive::Pg(db) => {
                let sql = format!(
                    "INSERT INTO mqkit_dead_letters ({columns}) VALUES ($1, $2, $3::timestamp, $4, $5, $6, $7, 1, $8, $9, $10, $11::timestamp, $12)"
                );
                sqlx::query(&sql)
                    .bind(values.0)
                    .bind(values.1)
                    .bind(values.2)
                    .bind(values.3)
                    .bind(values.4)
                    .bind(values.5)
                    .bind(values.6)
                    .bind(values.7)
                    .bind(values.8)
                    .bind(values.9)
                    .bind(values.10)
                    .bind(values.11 as i32)
                    .execute(db)
                    .await
                    .unwrap();
            }
        }
    }
    let mut ids = Vec::new();
    for i in 0..n {
        let queue = if i < split { qa } else { qb };
        let id: i64 = match db {
            Archive::My(db) => sqlx::query_scalar(
                "SELECT CAST(id AS SIGNED) FROM mqkit_dead_letters WHERE original_queue = ? AND message_id = ?",
            )
            .bind(queue)
            .bind(format!("m-{i}"))
            .fetch_one(db)
            .await
            .unwrap(),
            Archive::Pg(db) => sqlx::query_scalar(
                "SELECT id FROM mqkit_dead_letters WHERE original_queue = $1 AND message_id = $2",
            )
            .bind(queue)
            .bind(format!("m-{i}"))
            .fetch_one(db)
            .await
            .unwrap(),
        };
        ids.push(id);
    }
    ids
}

/// Count and replayed count per kind of `queue`, from the database.
pub(crate) async fn counts(db: &Archive, queue: &str) -> BTreeMap<String, (i64, i64)> {
    let rows: Vec<(String, i64, i64)> = match db {
        Archive::My(db) => sqlx::query_as(
            "SELECT error_kind, COUNT(*), COUNT(replayed_at) FROM mqkit_dead_letters WHERE original_queue = ? GROUP BY error_kind",
        )
        .bind(queue)
        .fetch_all(db)
        .await
        .unwrap(),
        Archive::Pg(db) => sqlx::query_as(
            "SELECT error_kind::text, COUNT(*), COUNT(replayed_at) FROM mqkit_dead_letters WHERE original_queue = $1 GROUP BY error_kind",
        )
        .bind(queue)
        .fetch_all(db)
        .await
        .unwrap(),
    };
    rows.into_iter().map(|(k, n, r)| (k, (n, r))).collect()
}

/// The ids of these queues' rows marked replayed, with their `replays`.
pub(crate) async fn marked(db: &Archive, qa: &str, qb: &str) -> BTreeMap<i64, i64> {
    let rows: Vec<(i64, i64)> = match db {
        Archive::My(db) => sqlx::query_as(
            "SELECT CAST(id AS SIGNED), CAST(replays AS SIGNED) FROM mqkit_dead_letters WHERE original_queue IN (?, ?) AND replayed_at IS NOT NULL",
        )
        .bind(qa)
        .bind(qb)
        .fetch_all(db)
        .await
        .unwrap(),
        Archive::Pg(db) => sqlx::query_as(
            "SELECT id, replays::bigint FROM mqkit_dead_letters WHERE original_queue IN ($1, $2) AND replayed_at IS NOT NULL",
        )
        .bind(qa)
        .bind(qb)
        .fetch_all(db)
        .await
        .unwrap(),
    };
    rows.into_iter().collect()
}

/// Specs of the two consumers on unique queues, their cleanup, and the
/// running app.
pub(crate) async fn consumers() -> (String, String, Cleanup, mqkit::Running) {
    let mut a = console_a {}.spec();
    isolate(&mut a, "console-a");
    let mut b = console_b {}.spec();
    isolate(&mut b, "console-b");
    let cleanup = Cleanup::specs(&[&a, &b]);
    let (sa, sb) = (a.clone(), b.clone());
    let running = app(None, None, tuning())
        .consumer_with(console_a {}, move |x| *x = sa)
        .consumer_with(console_b {}, move |x| *x = sb)
        .start()
        .await
        .unwrap();
    (a.queue.to_string(), b.queue.to_string(), cleanup, running)
}

/// Waits until `check` holds (or 20 s), polling the page.
pub(crate) async fn until(what: &str, mut check: impl AsyncFnMut() -> bool) {
    assert!(
        eventually(Duration::from_secs(20), async || check().await).await,
        "{what}"
    );
}

/// The `<tr>` of the counts table for `queue` and `kind`.
fn count_row(queue: &str, kind: &str, n: i64, replayed: i64) -> String {
    format!(
        "<tr data-queue=\"{queue}\" data-kind=\"{kind}\"><td>{queue}</td><td>{kind}</td><td class=\"n count\">{n}</td><td class=\"n replayed\">{replayed}</td></tr>"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_over_http_on_postgres() {
    let backend = Backend::Postgres;
    let url = backend.url();
    let db = db_of(backend).await;
    let (qa, qb, _cleanup, running) = consumers().await;
    let _db_cleanup = DbCleanup(vec![qa.clone(), qb.clone()]);
    let out = mqkit(&["dlq", "stats", "--archive", &url, "--queue", &qa]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let marker = common::unique("console-marker");
    let ids = seed(&db, &qa, &qb, 24, 16, &marker).await;
    let served = Served::start(&url);
    let port = served.port;
    let login = Some("guest:guest");
    let get = async |path: &str| http(port, "GET", path, login, "", None).await;
    let origin = format!("http://127.0.0.1:{port}");
    let post = async |form: &str| http(port, "POST", "/replay", login, form, Some(&origin)).await;

    assert_eq!(http(port, "GET", "/", None, "", None).await.status, 401);
    let page = get(&format!("/?text={marker}")).await;
    assert_eq!(page.status, 200, "{page:?}");
    for (queue, range) in [(&qa, 0..16), (&qb, 16..24)] {
        for (k, kind) in KINDS.iter().enumerate() {
            let n = range.clone().filter(|i| i % 3 == k).count() as i64;
            let replayed = i64::from(range.contains(&REPLAYED) && REPLAYED % 3 == k);
            assert!(
                page.body.contains(&count_row(queue, kind, n, replayed)),
                "{queue} {kind}: {}",
                page.body
            );
        }
    }
    assert_eq!(page.body.matches("<tr data-id=").count(), 24);
    let decode = get(&format!("/?text={marker}&queue={qa}&kind=decode")).await;
    assert_eq!(
        decode.body.matches("<tr data-id=").count(),
        (0..16).filter(|i| i % 3 == 1).count()
    );

    // Errors are pages that say what is wrong.
    let bad = get("/?since=yesterday").await;
    assert_eq!(bad.status, 400);
    assert!(
        bad.body.contains("since: `yesterday` is not a time"),
        "{}",
        bad.body
    );
    let missing = get("/letter/999999999999").await;
    assert_eq!(missing.status, 404);
    assert!(
        missing.body.contains("no dead letter 999999999999"),
        "{}",
        missing.body
    );

    // The script body is escaped text.
    let letter = get(&format!("/letter/{}", ids[SCRIPT])).await;
    assert_eq!(letter.status, 200);
    assert!(
        letter
            .body
            .contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{}",
        letter.body
    );
    assert!(!letter.body.contains(SCRIPT_BODY));

    // A post from another site is refused and replays nothing.
    let form = format!("scope=selected&id={}&id={}&id={}", ids[1], ids[2], ids[20]);
    let foreign = http(
        port,
        "POST",
        "/replay",
        login,
        &format!("{form}&confirm=yes"),
        Some("http://evil.example"),
    )
    .await;
    assert_eq!(foreign.status, 403, "{foreign:?}");
    assert!(marked(&db, &qa, &qb).await.len() == 1);

    // Confirmation, then the replay.
    let confirm = post(&form).await;
    assert_eq!(confirm.status, 200, "{confirm:?}");
    assert!(
        confirm.body.contains("Replay 3 dead letters?"),
        "{}",
        confirm.body
    );
    assert!(
        confirm.body.contains(&format!(
            "<tr data-queue=\"{qa}\"><td>{qa}</td><td class=\"n\">2</td></tr>"
        )),
        "{}",
        confirm.body
    );
    let done = post(&format!("{form}&confirm=yes&count=3")).await;
    assert_eq!(done.status, 200, "{done:?}");
    assert!(
        done.body.contains("Replayed 3 dead letters"),
        "{}",
        done.body
    );
    assert!(
        done.body.contains(&format!(
            "<tr data-queue=\"{qb}\"><td>{qb}</td><td class=\"n\">1</td></tr>"
        )),
        "{}",
        done.body
    );
    let mut want = vec![
        format!("{qa}/K-1"),
        format!("{qa}/K-2"),
        format!("{qb}/K-20"),
    ];
    want.sort();
    until("the replayed messages reach the consumers", async || {
        let mut got = seen_with(&qa);
        got.extend(seen_with(&qb));
        got.sort();
        got == want
    })
    .await;
    let marked_now = marked(&db, &qa, &qb).await;
    assert_eq!(marked_now.len(), 4, "{marked_now:?}");

    // "All matching" counts what the filter matches, replayed ones only
    // with "again".
    let all = format!("scope=matching&text={marker}&queue={qb}");
    let confirm = post(&all).await;
    // qb's 8 letters: row 17 was replayed before the test, row 20 above.
    assert!(
        confirm.body.contains("Replay 6 dead letters?"),
        "{}",
        confirm.body
    );
    assert!(
        confirm
            .body
            .contains("2 matching letters were replayed before"),
        "{}",
        confirm.body
    );
    let again = post(&format!("{all}&again=yes")).await;
    assert!(
        again.body.contains("Replay 8 dead letters?"),
        "{}",
        again.body
    );

    assert_eq!(served.stop(), Some(0));
    running.shutdown().await.unwrap();

    // The database gone: a page that says so, the password masked.
    let proxy = DbProxy::start_to(Backend::Postgres).await;
    let via = backend.url_via(proxy.port, "postgres:console-pw");
    let down = Served::start(&via);
    assert!(
        down.banner
            .contains("(archive postgres://postgres:****@127.0.0.1:"),
        "{}",
        down.banner
    );
    proxy.go_down().await;
    let page = http(down.port, "GET", "/", login, "", None).await;
    assert_eq!(page.status, 503, "{page:?}");
    assert!(
        page.body.contains("The archive cannot be read"),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("Check that the database is running"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("console-pw"), "{}", page.body);
    assert_eq!(down.stop(), Some(0), "stops with the database down too");
}
