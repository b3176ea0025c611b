//! `mqkit dlq replay --from-archive` and `mqkit dlq stats --archive` on
//! 1,000 archived dead letters, on MariaDB and on PostgreSQL: each filter
//! and a combination select exactly the right rows; the replayed messages
//! reach their consumers; a replay killed midway and run again loses
//! nothing and sends no marked row twice; `--again` sends again.

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::SystemTime;

use super::*;

/// Deliveries seen by the consumers below, by the id in the body.
static HANDLED: Mutex<Option<HashMap<String, u32>>> = Mutex::new(None);

fn handled(id: &str) {
    let mut seen = HANDLED.lock().unwrap();
    *seen
        .get_or_insert_with(HashMap::new)
        .entry(id.to_owned())
        .or_default() += 1;
}

/// How often each id of `prefix` was handled.
fn handled_with(prefix: &str) -> HashMap<String, u32> {
    let seen = HANDLED.lock().unwrap();
    seen.iter()
        .flatten()
        .filter(|(id, _)| id.starts_with(prefix))
        .map(|(id, n)| (id.clone(), *n))
        .collect()
}

#[mqkit::consumer(queue = "fa", prefetch = 50, concurrency = 10)]
async fn fa_handler(e: Event) -> Result<(), HandlerError> {
    handled(&e.id);
    Ok(())
}

#[mqkit::consumer(queue = "fb", prefetch = 50, concurrency = 10)]
async fn fb_handler(e: Event) -> Result<(), HandlerError> {
    handled(&e.id);
    Ok(())
}

const KINDS: [&str; 3] = ["rejected", "decode", "retries-exhausted"];
const N: usize = 1000;
const DAY: u64 = 86_400;

/// One seeded dead letter.
#[derive(Debug, Clone)]
struct Seed {
    i: usize,
    queue: String,
    kind: &'static str,
    days_ago: u64,
}

fn seeds(qa: &str, qb: &str) -> Vec<Seed> {
    (0..N)
        .map(|i| Seed {
            i,
            queue: if i % 4 == 3 { qb } else { qa }.to_owned(),
            kind: KINDS[i % 3],
            days_ago: (i % 5) as u64,
        })
        .collect()
}

fn utc(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t)
        .to_string()
        .replace('T', " ")
        .trim_end_matches('Z')
        .to_owned()
}

/// Writes the seeds as archived rows (the archiver's columns), in order.
async fn seed(db: &Archive, seeds: &[Seed]) {
    let now = SystemTime::now();
    let values: Vec<String> = seeds
        .iter()
        .map(|s| {
            let failed_at = utc(now - Duration::from_secs(s.days_ago * DAY + 60));
            let headers = json!({
                "x-mqkit-error-kind": s.kind,
                "x-mqkit-error": format!("problem {}", s.i),
                "x-mqkit-attempts": 1,
                "x-mqkit-original-queue": s.queue,
            });
            let properties = json!({
                "content_type": "application/json",
                "delivery_mode": 2,
                "message_id": format!("m-{}", s.i),
            });
            let body = json!({"id": format!("{}/K-{}", s.queue, s.i)}).to_string();
            let hex: String = body.bytes().map(|b| format!("{b:02x}")).collect();
            let body = match db {
                Archive::My(_) => format!("X'{hex}'"),
                Archive::Pg(_) => format!("'\\x{hex}'::bytea"),
            };
            format!(
                "('{q}', 'm-{i}', '{failed_at}', 'dlq.{q}', 'mqkit:idem:{q}:K-{i}', '{kind}', 'problem {i}', 1, '{headers}', '{properties}', {body})",
                q = s.queue,
                i = s.i,
                kind = s.kind,
            )
        })
        .collect();
    let sql = format!(
        "INSERT INTO mqkit_dead_letters (original_queue, message_id, failed_at, dlq, business_key, error_kind, error_text, attempts, headers, properties, body) VALUES {}",
        values.join(", ")
    );
    match db {
        Archive::My(db) => {
            sqlx::raw_sql(&sql).execute(db).await.unwrap();
        }
        Archive::Pg(db) => {
            sqlx::raw_sql(&sql).execute(db).await.unwrap();
        }
    }
}

/// The message ids a `--dry-run` printed.
fn would_replay(stdout: &str) -> BTreeSet<String> {
    stdout
        .lines()
        .filter(|l| l.starts_with("would replay row "))
        .filter_map(|l| {
            let (_, rest) = l.split_once(": message ")?;
            Some(rest.split(',').next()?.to_owned())
        })
        .collect()
}

fn ids_of<'a>(seeds: impl IntoIterator<Item = &'a Seed>) -> BTreeSet<String> {
    seeds.into_iter().map(|s| format!("m-{}", s.i)).collect()
}

/// Rows of these queues marked replayed, and the total of their `replays`.
async fn marked(db: &Archive, qa: &str, qb: &str) -> (i64, i64) {
    let sql_my = "SELECT CAST(COUNT(replayed_at) AS SIGNED), CAST(COALESCE(SUM(replays), 0) AS SIGNED) FROM mqkit_dead_letters WHERE original_queue IN (?, ?)";
    let sql_pg = "SELECT COUNT(replayed_at), COALESCE(SUM(replays), 0)::bigint FROM mqkit_dead_letters WHERE original_queue IN ($1, $2)";
    match db {
        Archive::My(db) => sqlx::query_as(sql_my)
            .bind(qa)
            .bind(qb)
            .fetch_one(db)
            .await
            .unwrap(),
        Archive::Pg(db) => sqlx::query_as(sql_pg)
            .bind(qa)
            .bind(qb)
            .fetch_one(db)
            .await
            .unwrap(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_from_the_archive_on_mariadb() {
    replay_from_the_archive(Backend::MySql).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_from_the_archive_on_postgres() {
    replay_from_the_archive(Backend::Postgres).await;
}

async fn replay_from_the_archive(backend: Backend) {
    let url = backend.url();
    let db = db_of(backend).await;
    let mut a = fa_handler {}.spec();
    isolate(&mut a, "fa");
    let mut b = fb_handler {}.spec();
    isolate(&mut b, "fb");
    let (qa, qb) = (a.queue.to_string(), b.queue.to_string());
    let _cleanup = Cleanup::specs(&[&a, &b]);
    let _db_cleanup = DbCleanup(vec![qa.clone(), qb.clone()]);

    // `stats` brings the schema up to date (a fresh database has no table).
    let out = mqkit(&["dlq", "stats", "--archive", &url, "--queue", &qa]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("no archived dead letters match"),
        "{out:?}"
    );

    let all = seeds(&qa, &qb);
    seed(&db, &all).await;

    // Each filter alone, and together, on a dry run.
    let dry = async |extra: &[&str]| {
        let mut args = vec!["dlq", "replay", "--from-archive", url.as_str(), "--dry-run"];
        args.extend_from_slice(extra);
        let out = mqkit(&args).await;
        assert_eq!(out.code, 0, "{extra:?}: {out:?}");
        would_replay(&out.stdout)
    };
    let ours = |s: &&Seed| s.queue == qa || s.queue == qb;
    let full_key = format!("mqkit:idem:{qb}:K-19");
    let cases: Vec<(Vec<&str>, BTreeSet<String>)> = vec![
        (
            vec!["--queue", &qb],
            ids_of(all.iter().filter(|s| s.queue == qb)),
        ),
        (
            vec!["--queue", &qa, "--kind", "decode"],
            ids_of(all.iter().filter(|s| s.queue == qa && s.kind == "decode")),
        ),
        (
            vec!["--queue", &qb, "--kind", "decode,rejected"],
            ids_of(
                all.iter()
                    .filter(|s| s.queue == qb && s.kind != "retries-exhausted"),
            ),
        ),
        (
            vec!["--queue", &qa, "--since", "2d"],
            ids_of(all.iter().filter(|s| s.queue == qa && s.days_ago < 2)),
        ),
        (
            vec!["--queue", &qb, "--until", "3d"],
            ids_of(all.iter().filter(|s| s.queue == qb && s.days_ago >= 3)),
        ),
        (
            vec!["--key", "K-17", "--queue", &qa],
            ids_of(all.iter().filter(|s| s.i == 17)),
        ),
        (
            vec!["--key", &full_key],
            ids_of(all.iter().filter(|s| s.i == 19)),
        ),
        (
            vec!["--queue", &qa, "--limit", "10"],
            ids_of(all.iter().filter(|s| s.queue == qa).take(10)),
        ),
        (
            vec![
                "--queue", &qa, "--kind", "rejected", "--since", "4d", "--until", "1d", "--limit",
                "40",
            ],
            ids_of(
                all.iter()
                    .filter(|s| {
                        s.queue == qa && s.kind == "rejected" && (1..4).contains(&s.days_ago)
                    })
                    .take(40),
            ),
        ),
    ];
    for (args, want) in &cases {
        assert!(!want.is_empty(), "{args:?}");
        let got = dry(&args[..]).await;
        assert_eq!(&got, want, "{args:?}: {} vs {} rows", got.len(), want.len());
    }
    // A filter that matches nothing moves nothing and exits 0.
    assert!(dry(&["--queue", &qa, "--kind", "timeout"]).await.is_empty());
    assert_eq!(
        marked(&db, &qa, &qb).await,
        (0, 0),
        "a dry run marks nothing"
    );

    // Counts by day, queue and kind.
    let out = mqkit(&["dlq", "stats", "--archive", &url, "--queue", &qb]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let total = out.stdout.lines().last().unwrap_or_default().to_owned();
    assert!(
        total.split_whitespace().collect::<Vec<_>>() == ["total", "250", "0"],
        "{}",
        out.stdout
    );
    let rows_of_qb = out
        .stdout
        .lines()
        .filter(|l| l.contains(qb.as_str()))
        .count();
    assert_eq!(rows_of_qb, 5 * 3, "5 days × 3 kinds: {}", out.stdout);

    // The consumers of the original queues.
    let (sa, sb) = (a.clone(), b.clone());
    let running = app(None, None, tuning())
        .consumer_with(fa_handler {}, move |x| *x = sa)
        .consumer_with(fb_handler {}, move |x| *x = sb)
        .start()
        .await
        .unwrap();

    // A replay killed midway (slowed to 300 rows/s), then run again.
    let mut child = cli_command(&[
        "dlq",
        "replay",
        "--from-archive",
        &url,
        "--queue",
        &qa,
        "--rate",
        "300",
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    // Killed once it has marked some rows (however long it took to start).
    assert!(
        eventually(Duration::from_secs(30), async || marked(&db, &qa, &qb)
            .await
            .0
            >= 50)
        .await,
        "the replay marked nothing"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let (at_kill, _) = marked(&db, &qa, &qb).await;
    assert!(
        at_kill > 0 && at_kill < 750,
        "killed after {at_kill} of 750 rows"
    );
    let out = mqkit(&["dlq", "replay", "--from-archive", &url, "--queue", &qa]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout
            .starts_with(&format!("replayed {} archived dead letters", 750 - at_kill)),
        "marked {at_kill} at the kill: {}",
        out.stdout
    );
    let out = mqkit(&["dlq", "replay", "--from-archive", &url, "--queue", &qb]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.starts_with("replayed 250 archived dead letters"),
        "{}",
        out.stdout
    );
    let want: BTreeSet<String> = all
        .iter()
        .filter(ours)
        .map(|s| format!("{}/K-{}", s.queue, s.i))
        .collect();
    let seen = async || {
        let mut h = handled_with(&qa);
        h.extend(handled_with(&qb));
        h
    };
    assert!(
        eventually(Duration::from_secs(60), async || seen().await.len() == N).await,
        "{} of {N} handled",
        seen().await.len()
    );
    let h = seen().await;
    assert_eq!(h.keys().cloned().collect::<BTreeSet<_>>(), want);
    // At most the row in flight at the kill (sent, not yet marked) twice.
    let twice: Vec<_> = h.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.len() <= 1 && twice.iter().all(|(_, n)| **n == 2),
        "{twice:?}"
    );
    eprintln!(
        "replay from the archive ({backend:?}): killed after {at_kill} rows marked; {} sent twice",
        twice.len()
    );
    assert_eq!(marked(&db, &qa, &qb).await, (N as i64, N as i64));

    // Marked rows are skipped; --again sends them again.
    let out = mqkit(&["dlq", "replay", "--from-archive", &url, "--queue", &qb]).await;
    assert!(
        out.stdout.starts_with("replayed 0 archived dead letters"),
        "{out:?}"
    );
    let out = mqkit(&[
        "dlq",
        "replay",
        "--from-archive",
        &url,
        "--queue",
        &qb,
        "--again",
        "--limit",
        "5",
    ])
    .await;
    assert!(
        out.stdout.starts_with("replayed 5 archived dead letters"),
        "{out:?}"
    );
    assert_eq!(marked(&db, &qa, &qb).await, (N as i64, N as i64 + 5));
    let first_five: Vec<String> = all
        .iter()
        .filter(|s| s.queue == qb)
        .take(5)
        .map(|s| format!("{qb}/K-{}", s.i))
        .collect();
    assert!(
        eventually(Duration::from_secs(20), async || first_five.iter().all(
            |id| handled_with(id).get(id).copied().unwrap_or_default() >= 2
        ))
        .await,
        "{:?}",
        first_five
            .iter()
            .map(|id| handled_with(id))
            .collect::<Vec<_>>()
    );
    running.shutdown().await.unwrap();
}

#[mqkit::consumer(queue = "again", max_retries = 0)]
async fn still_broken_handler(e: Event) -> Result<(), HandlerError> {
    Err(HandlerError::reject(format!("still no {}", e.id)))
}

on_both!(still_broken:
    a_replay_leaves_the_dead_letters_its_copies_cause_for_the_next_run_mariadb, Backend::MySql;
    a_replay_leaves_the_dead_letters_its_copies_cause_for_the_next_run_postgres, Backend::Postgres);

/// The service is not fixed yet: each replayed copy is dead-lettered and
/// archived again, as a new row, while the replay runs. The replay must not
/// pick those up (it would go round for ever); the next run does.
async fn still_broken(backend: Backend) {
    let url = backend.url();
    let db = db_of(backend).await;
    let (spec, running, _cleanup, _db_cleanup) = start(
        still_broken_handler {},
        "again",
        app(Some(url.clone()), None, tuning()),
    )
    .await;
    let broker = Broker::connect().await;
    let q = spec.queue.to_string();
    for i in 0..3 {
        let id = format!("b-{i}");
        broker
            .publish(&q, json!({"id": id}).to_string().as_bytes(), props(&id))
            .await;
    }
    assert!(
        eventually(Duration::from_secs(30), async || rows(&db, &q).await.len()
            == 3)
        .await
    );
    // Five rows a second: each copy is dead-lettered and archived again
    // long before the replay has finished.
    let replay = [
        "dlq",
        "replay",
        "--from-archive",
        url.as_str(),
        "--queue",
        q.as_str(),
        "--rate",
        "5",
    ];
    let out = mqkit(&replay).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.starts_with("replayed 3 archived dead letters"),
        "{out:?}"
    );
    assert!(
        eventually(Duration::from_secs(30), async || rows(&db, &q).await.len()
            == 6)
        .await,
        "{:?}",
        rows(&db, &q).await
    );
    let out = mqkit(&replay).await;
    assert!(
        out.stdout.starts_with("replayed 3 archived dead letters"),
        "the second run takes the three new rows: {out:?}"
    );
    running.shutdown().await.unwrap();
}
