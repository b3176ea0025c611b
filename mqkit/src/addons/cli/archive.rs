//! The dead-letter archive from the command line: `mqkit dlq replay
//! --from-archive URL` and `mqkit dlq stats --archive URL`, and the replay
//! itself ([`replay_rows`]), which the web console runs too.
//!
//! Replay, row by row in id order (the order they were archived): publish
//! the replayed copy (see [`replay_copy`]) to the row's original queue on
//! the default exchange, `mandatory`, and wait for the confirm; only then
//! mark the row replayed (time, count). A crash between the two sends that
//! one row again on the next run (the consumer's idempotency absorbs it);
//! a marked row is skipped unless `--again`. An unroutable row is reported
//! and left unmarked. A run takes only the rows archived when it started:
//! a replayed copy that fails again is archived as a new row, which the
//! next run (not this one) sees.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use lapin::Connection;

use super::inspect::plural;
use super::{CliError, ReplayArgs, StatsArgs, shown};
use crate::addons::dlq::letter::{DeadLetter, properties_from_archive, replay_properties};
use crate::addons::dlq::store::{ArchiveDb, Filter, Stored};
use crate::amqp::publisher::BrokerPublisher;
use crate::core::headers::{self, Properties};
use crate::core::mask::{password_of, scrub};
use crate::core::publish::{PublishError, Publisher};

/// Rows read from the archive per query.
const PAGE: i64 = 200;

/// What to replay from the archive.
#[derive(Debug, Clone, Default)]
pub(crate) struct ReplayRequest {
    pub(crate) filter: Filter,
    /// At most this many rows.
    pub(crate) limit: Option<u64>,
    /// Count what would be replayed; send and mark nothing.
    pub(crate) dry_run: bool,
    /// At most this many rows per second.
    pub(crate) rate: Option<u32>,
}

/// What a replay from the archive did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct ReplayReport {
    /// Replayed (or, on a dry run, would be) per original queue.
    pub(crate) moved: BTreeMap<String, u64>,
    pub(crate) moved_total: u64,
    /// Rows whose original queue does not exist (not marked).
    pub(crate) unroutable: u64,
}

/// Why a replay stopped early; what was replayed before stays replayed and
/// marked.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReplayFailure {
    /// Reading or marking rows failed.
    #[error("{0}")]
    Archive(String),
    /// Publishing failed for a reason other than routing.
    #[error(
        "publishing row {id} to `{target}` failed: {source}; the row is not marked, run the replay again when the broker is healthy"
    )]
    Publish {
        id: i64,
        target: String,
        source: PublishError,
    },
}

/// The replayed copy of an archived dead letter: its properties as
/// archived, without the attempt counter and failure headers, persistent,
/// and `x-mqkit-replays` = the count it carried + the row's earlier
/// replays + 1.
pub(crate) fn replay_copy(row: &Stored) -> Properties {
    let archived = properties_from_archive(&row.properties, &row.headers);
    let carried = DeadLetter::read(&archived).replays;
    let mut copy = replay_properties(&archived);
    let replays = i64::from(carried)
        .saturating_add(row.replays.max(0))
        .saturating_add(1);
    copy.headers_mut().insert(headers::REPLAYS, replays);
    copy
}

/// Replays the rows `request` selects through `publisher`; `on_row` hears of
/// each row as it is done (`Ok` replayed, `Err` left with the reason).
pub(crate) async fn replay_rows(
    db: &ArchiveDb,
    publisher: &Publisher,
    request: &ReplayRequest,
    scrub: &(dyn Fn(&sqlx::Error) -> String + Sync),
    mut on_row: impl FnMut(&Stored, Result<(), String>),
) -> Result<ReplayReport, (ReplayReport, ReplayFailure)> {
    let mut report = ReplayReport::default();
    let limit = request.limit.unwrap_or(u64::MAX);
    let started = Instant::now();
    // Only what is archived now: a copy that fails again is archived as a
    // new row while this runs, and must not be replayed again in this run.
    let up_to = match db.max_id().await {
        Ok(id) => id,
        Err(e) => return Err((report, ReplayFailure::Archive(scrub(&e)))),
    };
    let mut after = 0i64;
    while report.moved_total < limit {
        let want = i64::try_from(limit - report.moved_total)
            .unwrap_or(PAGE)
            .min(PAGE);
        let page = match db.select(&request.filter, after, up_to, want).await {
            Ok(page) => page,
            Err(e) => return Err((report, ReplayFailure::Archive(scrub(&e)))),
        };
        if page.is_empty() {
            break;
        }
        for row in &page {
            after = row.id;
            if report.moved_total >= limit {
                break;
            }
            if !request.dry_run {
                let copy = replay_copy(row);
                match publisher
                    .publish_raw("", &row.original_queue, &row.body, &copy, true)
                    .await
                {
                    Ok(()) => {}
                    Err(PublishError::Unroutable { reply_text, .. }) => {
                        report.unroutable += 1;
                        on_row(
                            row,
                            Err(format!(
                                "unroutable to queue `{}` ({reply_text}); does the queue still exist?",
                                row.original_queue
                            )),
                        );
                        continue;
                    }
                    Err(source) => {
                        let failure = ReplayFailure::Publish {
                            id: row.id,
                            target: row.original_queue.clone(),
                            source,
                        };
                        return Err((report, failure));
                    }
                }
                if let Err(e) = db.mark_replayed(row.id).await {
                    // Sent but not marked: the next run sends it again.
                    let failure = ReplayFailure::Archive(format!(
                        "row {} was replayed but could not be marked ({}); the next run replays it again",
                        row.id,
                        scrub(&e)
                    ));
                    return Err((report, failure));
                }
            }
            *report.moved.entry(row.original_queue.clone()).or_default() += 1;
            report.moved_total += 1;
            on_row(row, Ok(()));
            if let Some(rate) = request.rate.filter(|r| *r > 0) {
                let due =
                    started + Duration::from_secs_f64(report.moved_total as f64 / f64::from(rate));
                tokio::time::sleep_until(due.into()).await;
            }
        }
    }
    Ok(report)
}

/// Opens the archive at `url` (one connection) and brings its schema up to
/// date, so that an archive written by an older mqkit has the replay
/// columns.
pub(crate) async fn open_archive(url: &str) -> Result<(ArchiveDb, Scrubber), CliError> {
    let scrubber = Scrubber {
        password: password_of(url),
    };
    let bad = |problem: String| CliError::Archive {
        url: shown(url),
        problem,
    };
    let db = ArchiveDb::connect_lazy(url, 2).map_err(|p| bad(scrubber.text(&p)))?;
    db.check().await.map_err(|e| bad(scrubber.scrub(&e)))?;
    db.migrate().await.map_err(|e| bad(scrubber.scrub(&e)))?;
    Ok((db, scrubber))
}

/// Removes the archive password from database errors.
#[derive(Debug, Clone)]
pub(crate) struct Scrubber {
    password: Option<String>,
}

impl Scrubber {
    pub(crate) fn scrub(&self, e: &sqlx::Error) -> String {
        self.text(&e.to_string())
    }

    fn text(&self, text: &str) -> String {
        scrub(text, self.password.as_deref())
    }
}

/// `mqkit dlq replay --from-archive URL …`
pub(super) async fn replay(
    connection: &Arc<Connection>,
    url: &str,
    args: &ReplayArgs,
) -> Result<ExitCode, CliError> {
    let (db, scrubber) = open_archive(url).await?;
    let request = ReplayRequest {
        filter: Filter {
            queue: args.queue.clone(),
            kinds: args.kind.clone(),
            since: args.time.since.clone(),
            until: args.time.until.clone(),
            key: args.key.clone(),
            text: None,
            include_replayed: args.again,
            ids: Vec::new(),
        },
        limit: args.limit,
        dry_run: args.dry_run,
        rate: args.rate,
    };
    let broker = BrokerPublisher::new();
    broker.attach(connection.clone()).await;
    let publisher = Publisher::new(broker.clone());
    let started = Instant::now();
    let scrub = |e: &sqlx::Error| scrubber.scrub(e);
    let result = replay_rows(&db, &publisher, &request, &scrub, |row, outcome| {
        if let Err(why) = outcome {
            eprintln!(
                "not replayed: row {} (message {}): {why}",
                row.id, row.message_id
            );
        } else if args.dry_run {
            println!(
                "would replay row {} -> {}: message {}, {} at {}",
                row.id, row.original_queue, row.message_id, row.error_kind, row.failed_at
            );
        }
    })
    .await;
    broker.detach().await;
    db.close().await;
    let (report, failure) = match result {
        Ok(report) => (report, None),
        Err((report, failure)) => (report, Some(failure)),
    };
    let verb = if args.dry_run {
        "dry run: would replay"
    } else {
        "replayed"
    };
    println!(
        "{verb} {} archived dead letter{} from {} in {:.1}s",
        report.moved_total,
        plural(report.moved_total),
        shown(url),
        started.elapsed().as_secs_f64()
    );
    for (target, n) in &report.moved {
        println!("  {n:>8} -> {target}");
    }
    if report.unroutable > 0 {
        println!(
            "left unmarked: {} unroutable (their queues do not exist)",
            report.unroutable
        );
    }
    if let Some(failure) = failure {
        return Err(CliError::Archive {
            url: shown(url),
            problem: format!("replay stopped: {failure}"),
        });
    }
    Ok(if report.unroutable > 0 {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    })
}

/// `mqkit dlq stats --archive URL`
pub(super) async fn stats(args: &StatsArgs) -> Result<ExitCode, CliError> {
    let (db, scrubber) = open_archive(&args.archive).await?;
    let filter = Filter {
        queue: args.queue.clone(),
        kinds: args.kind.clone(),
        since: args.time.since.clone(),
        until: args.time.until.clone(),
        include_replayed: true,
        ..Filter::default()
    };
    let rows = db.stats(&filter).await.map_err(|e| CliError::Archive {
        url: shown(&args.archive),
        problem: scrubber.scrub(&e),
    });
    db.close().await;
    let rows = rows?;
    if rows.is_empty() {
        println!("no archived dead letters match");
        return Ok(ExitCode::SUCCESS);
    }
    let qw = rows.iter().map(|r| r.queue.len()).max().unwrap_or(5).max(5);
    let kw = rows.iter().map(|r| r.kind.len()).max().unwrap_or(4).max(4);
    println!(
        "{:<10}  {:<qw$}  {:<kw$}  {:>8}  {:>8}",
        "DAY", "QUEUE", "KIND", "COUNT", "REPLAYED"
    );
    let (mut total, mut replayed) = (0i64, 0i64);
    for r in &rows {
        println!(
            "{:<10}  {:<qw$}  {:<kw$}  {:>8}  {:>8}",
            r.day, r.queue, r.kind, r.count, r.replayed
        );
        total += r.count;
        replayed += r.replayed;
    }
    println!(
        "{:<10}  {:<qw$}  {:<kw$}  {total:>8}  {replayed:>8}",
        "total", "", ""
    );
    Ok(ExitCode::SUCCESS)
}

/// Parses `--since` / `--until`: RFC 3339, `YYYY-MM-DD[ HH:MM[:SS[.fff]]]`
/// (UTC), or a duration ago (`90m`, `2h`, `3d`); returns
/// `YYYY-MM-DD HH:MM:SS.mmm` UTC, as the archive stores times.
pub(crate) fn parse_time(text: &str) -> Result<String, String> {
    parse_time_at(text, SystemTime::now())
}

fn parse_time_at(text: &str, now: SystemTime) -> Result<String, String> {
    let t = text.trim();
    let instant = if let Ok(ago) = humantime::parse_duration(t) {
        now.checked_sub(ago)
            .ok_or_else(|| format!("`{t}` ago is before 1970"))?
    } else if let Ok(at) = humantime::parse_rfc3339_weak(&with_seconds(t)) {
        at
    } else if let Ok(at) = humantime::parse_rfc3339(t) {
        at
    } else {
        return Err(format!(
            "`{t}` is not a time: use RFC 3339 (2026-12-01T08:00:00Z), YYYY-MM-DD[ HH:MM[:SS]] in UTC, or a duration ago (2h, 3d)"
        ));
    };
    Ok(humantime::format_rfc3339_millis(instant)
        .to_string()
        .replace('T', " ")
        .trim_end_matches('Z')
        .to_owned())
}

/// `YYYY-MM-DD` and `YYYY-MM-DD HH:MM` completed to seconds.
fn with_seconds(t: &str) -> String {
    let t = t.trim_end_matches('Z');
    match t.len() {
        10 => format!("{t} 00:00:00"),
        16 => format!("{t}:00"),
        _ => t.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_in_every_accepted_form() {
        let now =
            humantime::parse_rfc3339("2026-12-01T12:00:00Z").unwrap_or(SystemTime::UNIX_EPOCH);
        let at = |t: &str| parse_time_at(t, now);
        assert_eq!(at("2026-11-30").as_deref(), Ok("2026-11-30 00:00:00.000"));
        assert_eq!(
            at("2026-11-30 08:15").as_deref(),
            Ok("2026-11-30 08:15:00.000")
        );
        assert_eq!(
            at("2026-11-30 08:15:07.25").as_deref(),
            Ok("2026-11-30 08:15:07.250")
        );
        assert_eq!(
            at("2026-11-30T08:15:07Z").as_deref(),
            Ok("2026-11-30 08:15:07.000")
        );
        assert_eq!(at("2h").as_deref(), Ok("2026-12-01 10:00:00.000"));
        assert_eq!(at("3d").as_deref(), Ok("2026-11-28 12:00:00.000"));
        let err = at("yesterday").err().unwrap_or_default();
        assert!(err.contains("is not a time"), "{err}");
    }

    #[test]
    fn the_replayed_copy_counts_the_rows_replays_and_drops_failure_headers() {
        let row = Stored {
            id: 1,
            original_queue: "order".into(),
            message_id: "m-1".into(),
            failed_at: "2026-12-01 10:00:00.000".into(),
            dlq: "dlq.order".into(),
            business_key: None,
            error_kind: "rejected".into(),
            error_text: "bad".into(),
            attempts: Some(1),
            headers: r#"{"x-mqkit-error-kind":"rejected","x-mqkit-attempt":1,"x-mqkit-replays":2,"tenant":"t1","n":[1,2.5,{"a":true}]}"#.into(),
            properties: r#"{"content_type":"application/json","message_id":"m-1","correlation_id":"c-9","delivery_mode":2}"#.into(),
            body: b"{}".to_vec(),
            archived_at: "2026-12-01 10:00:01.000".into(),
            replayed_at: Some("2026-12-01 11:00:00.000".into()),
            replays: 1,
        };
        let copy = replay_copy(&row);
        assert_eq!(copy.message_id.as_deref(), Some("m-1"));
        assert_eq!(copy.correlation_id.as_deref(), Some("c-9"));
        assert_eq!(copy.content_type.as_deref(), Some("application/json"));
        assert_eq!(copy.delivery_mode, Some(2));
        let h = copy.headers.clone().unwrap_or_default();
        // 2 carried + 1 earlier replay of this row + this one.
        assert_eq!(h.get(headers::REPLAYS), Some(&headers::FieldValue::I64(4)));
        assert!(h.get("x-mqkit-error-kind").is_none());
        assert!(h.get("x-mqkit-attempt").is_none());
        assert_eq!(
            h.get("tenant").and_then(|v| v.as_str()),
            Some("t1"),
            "{h:?}"
        );
        // Unreadable columns: no properties, and still a count.
        let broken = Stored {
            headers: "not json".into(),
            properties: "[]".into(),
            replays: 0,
            ..row
        };
        let copy = replay_copy(&broken);
        assert_eq!(copy.message_id, None);
        assert_eq!(
            copy.headers.unwrap_or_default().get(headers::REPLAYS),
            Some(&headers::FieldValue::I64(1))
        );
    }
}
