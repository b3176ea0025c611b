//! The DLQ archiver: consumes every DLQ of the service's consumers (manual
//! ack), stores one row per dead letter in MySQL/MariaDB or PostgreSQL
//! (`super::store`), then acks; hands newly stored dead letters to the
//! [alert](super::alert) task; deletes rows past their retention
//! (`MQKIT_DLQ_ARCHIVE_RETENTION`) in batches.
//!
//! Never acks what was not stored: when the insert fails (database down,
//! refused), the delivery is held for `retry_delay` and nacked back to its
//! DLQ. Storing is idempotent (`INSERT IGNORE` on the unique key original
//! queue + message id + failed-at), so a redelivered dead letter yields no
//! second row and no second alert.
//!
//! Its DLQ consumers run on the service's one connection (ARCHITECTURE.md
//! rule 5), a channel each, through the same consume loop as the service's
//! consumers, as session tasks of the supervisor: they start with every
//! session and so come back after a reconnect. Entry point:
//! [`Archiver`], split by [`Archiver::start`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use lapin::Connection;
use lapin::options::{BasicAckOptions, BasicNackOptions};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::alert::{self, AlertEvent, AlertSettings};
use super::store::{ArchiveDb, Row};
use crate::amqp::consume::{Consumption, consume as consume_queue};
use crate::amqp::convert::properties_from;
use crate::amqp::supervisor::SessionTask;
use crate::app::config::{Config, DlqTuning};
use crate::app::error::Error;
use crate::core::backoff;
use crate::core::idempotency::BoxFuture;
use crate::core::mask::{mask_password, password_of, scrub};
use crate::core::spec::ConsumerSpec;

/// Dead letters each DLQ channel may hold unacked.
const PREFETCH: u16 = 20;
/// Connections of the archiver's pool.
const POOL_SIZE: u32 = 4;
/// How long one insert may take; a database that hangs (rather than
/// refusing) counts as down. If the row was written after all, the
/// redelivery is a no-op.
const INSERT_TIMEOUT: Duration = Duration::from_secs(30);

/// One DLQ to archive, and the work queue to name when a dead letter does
/// not say where it came from.
#[derive(Debug, Clone)]
struct Source {
    dlq: String,
    work_queue: String,
}

/// The archiver of one service, built by the add-on factory in `super` and
/// run by `App`.
pub(crate) struct Archiver {
    db: ArchiveDb,
    /// The archive URL, password masked.
    shown_url: String,
    /// The archive password, scrubbed from database errors before logging.
    password: Option<String>,
    sources: Vec<Source>,
    specs: HashMap<String, ConsumerSpec>,
    alerts: Option<AlertSettings>,
    tuning: DlqTuning,
    /// How long rows are kept (`MQKIT_DLQ_ARCHIVE_RETENTION`).
    retention: Duration,
}

impl std::fmt::Debug for Archiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Archiver")
            .field("archive", &self.shown_url)
            .field("sources", &self.sources)
            .finish_non_exhaustive()
    }
}

/// What the consumer tasks share.
struct Shared {
    db: ArchiveDb,
    shown_url: String,
    password: Option<String>,
    specs: HashMap<String, ConsumerSpec>,
    alerts: Option<mpsc::UnboundedSender<AlertEvent>>,
    retry_delay: Duration,
}

impl Archiver {
    /// Checks the settings and builds the (lazy) database pool; nothing is
    /// connected yet.
    pub(crate) fn new<'a>(
        config: &Config,
        url: &str,
        specs: impl IntoIterator<Item = &'a ConsumerSpec>,
    ) -> Result<Archiver, Error> {
        let shown_url = mask_password(url);
        let bad = |problem: String| Error::DlqConfig {
            variable: "MQKIT_DLQ_ARCHIVE_URL",
            value: shown_url.clone(),
            problem,
        };
        let password = password_of(url);
        let db = ArchiveDb::connect_lazy(url, POOL_SIZE)
            .map_err(|problem| bad(scrub(&problem, password.as_deref())))?;
        let alerts = config
            .dlq_alert_webhook
            .as_deref()
            .map(|hook| AlertSettings::from_config(config, hook))
            .transpose()?;
        let mut sources: Vec<Source> = Vec::new();
        let mut by_queue = HashMap::new();
        for spec in specs {
            if !sources.iter().any(|s| s.dlq == spec.dlq) {
                sources.push(Source {
                    dlq: spec.dlq.to_string(),
                    work_queue: spec.queue.to_string(),
                });
            }
            by_queue.insert(spec.queue.to_string(), spec.clone());
        }
        Ok(Archiver {
            db,
            shown_url,
            password,
            sources,
            specs: by_queue,
            alerts,
            tuning: config.dlq_tuning,
            retention: config.dlq_archive_retention,
        })
    }

    /// Splits the archiver into one session task per DLQ, which the broker
    /// supervisor runs on the service's own connection (and re-runs after
    /// every reconnect), and the background work: create the table
    /// (retrying while the database is unreachable; no DLQ is consumed
    /// before), then wait for `stop`, send pending alerts and close the pool.
    pub(crate) fn start(
        self,
        stop: CancellationToken,
    ) -> (Vec<SessionTask>, BoxFuture<'static, ()>) {
        let (alerts, alert_task) = match self.alerts.clone() {
            Some(settings) => {
                let (tx, task) = alert::spawn(settings);
                (Some(tx), Some(task))
            }
            None => (None, None),
        };
        let shared = Arc::new(Shared {
            db: self.db.clone(),
            shown_url: self.shown_url.clone(),
            password: self.password.clone(),
            specs: self.specs.clone(),
            alerts,
            retry_delay: self.tuning.retry_delay,
        });
        let (ready_tx, ready_rx) = watch::channel(false);
        let tasks = self
            .sources
            .iter()
            .map(|source| {
                let (source, shared, ready) = (source.clone(), shared.clone(), ready_rx.clone());
                let task: SessionTask = Arc::new(move |connection, session_stop: CancellationToken| {
                    let (source, shared, mut ready) = (source.clone(), shared.clone(), ready.clone());
                    Box::pin(async move {
                        tokio::select! {
                            r = ready.wait_for(|ready| *ready) => if r.is_err() { return Ok(()) },
                            _ = session_stop.cancelled() => return Ok(()),
                        }
                        consume(connection, source, shared, session_stop).await
                    })
                });
                task
            })
            .collect();
        let background = Box::pin(async move {
            if self.migrate_until_ready(&shared, &stop).await {
                let _ = ready_tx.send(true);
                self.expire_until_stopped(&shared, &stop).await;
            }
            // Dropping the last sender (here and in the finished session
            // tasks) lets the alert task send what is pending.
            drop(shared);
            if let Some(task) = alert_task {
                let _ = task.await;
            }
            self.db.close().await;
            info!("dead-letter archiver stopped");
        });
        (tasks, background)
    }

    /// Retention until `stop`: right away and then every
    /// `retention_interval`, deletes the rows archived more than
    /// `retention` ago, `delete_batch` at a time with a pause between
    /// batches (short transactions, no long lock on the table). A failure is
    /// logged and retried at the next round. Every instance runs it; the
    /// deletes are idempotent.
    async fn expire_until_stopped(&self, shared: &Shared, stop: &CancellationToken) {
        let t = &self.tuning;
        loop {
            let mut deleted = 0u64;
            loop {
                let batch = tokio::select! {
                    _ = stop.cancelled() => return,
                    r = self.db.delete_expired(self.retention, t.delete_batch) => r,
                };
                match batch {
                    Ok(n) => {
                        deleted += n;
                        metrics::counter!("mqkit_dlq_archive_deleted_total").increment(n);
                        if n < t.delete_batch.unsigned_abs() {
                            break;
                        }
                    }
                    Err(e) => {
                        warn!(archive = %self.shown_url, error = %shared.scrub(&e), retry_in = ?t.retention_interval, "cannot delete expired dead letters from the archive; trying again later");
                        break;
                    }
                }
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(t.delete_pause) => {}
                }
            }
            if deleted > 0 {
                info!(archive = %self.shown_url, deleted, retention = %humantime::format_duration(self.retention), "deleted expired dead letters from the archive");
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(t.retention_interval) => {}
            }
        }
    }

    /// Applies the schema migrations, retrying until they succeed; `false`
    /// if stopped first.
    async fn migrate_until_ready(&self, shared: &Shared, stop: &CancellationToken) -> bool {
        let mut backoff = backoff(self.tuning.retry_delay);
        loop {
            match self.db.migrate().await {
                Ok(()) => {
                    info!(archive = %self.shown_url, database = self.db.kind(), dlqs = ?self.sources.iter().map(|s| s.dlq.as_str()).collect::<Vec<_>>(), "dead-letter archive ready");
                    return true;
                }
                Err(e) => {
                    let delay = backoff.next().unwrap_or(self.tuning.retry_delay);
                    error!(archive = %self.shown_url, error = %shared.scrub(&e), retry_in = ?delay, "cannot prepare the dead-letter archive table; DLQs are not consumed until it is ready. Check that the database is running and the URL's host, port, user, password and database");
                    tokio::select! {
                        _ = stop.cancelled() => return false,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }
}

/// Consumes one DLQ until `stop`; `Err` when the channel or consumer is lost.
async fn consume(
    connection: Arc<Connection>,
    source: Source,
    shared: Arc<Shared>,
    stop: CancellationToken,
) -> Result<(), String> {
    let what = Consumption {
        queue: source.dlq.clone(),
        tag: format!("{}.archiver.{}", source.dlq, std::process::id()),
        prefetch: PREFETCH,
        // One at a time, as a row's insert decides its ack.
        concurrency: 1,
    };
    let source = Arc::new(source);
    let dlq = source.dlq.clone();
    consume_queue(
        &connection,
        &what,
        &stop,
        // The dead letter being stored is finished before the channel closes.
        || Some(INSERT_TIMEOUT),
        || info!(dlq = %dlq, "archiving dead letters"),
        |delivery| {
            let (shared, source, stop) = (shared.clone(), source.clone(), stop.clone());
            async move { archive_one(&shared, &source, delivery, &stop).await }
        },
    )
    .await
    // Every failure of a DLQ consumer is a lost session (the DLQ exists: its
    // consumer declared it), never a reason to stop the service.
    .map_err(|e| format!("{e} (dead-letter archiver)"))
}

async fn archive_one(
    shared: &Shared,
    source: &Source,
    delivery: lapin::message::Delivery,
    stop: &CancellationToken,
) {
    let (row, letter) = Row::build(
        &source.dlq,
        &source.work_queue,
        &shared.specs,
        &properties_from(&delivery.properties),
        &delivery.data,
    );
    let dlq = source.dlq.as_str();
    let stored = match tokio::time::timeout(INSERT_TIMEOUT, shared.db.insert(&row)).await {
        Ok(result) => result.map_err(|e| shared.scrub(&e)),
        Err(_) => Err(format!("no answer within {INSERT_TIMEOUT:?}")),
    };
    match stored {
        Ok(inserted) => {
            if !matches!(
                delivery.acker.ack(BasicAckOptions::default()).await,
                Ok(true)
            ) {
                // Stored already: the redelivery will be a duplicate no-op.
                warn!(dlq, message_id = %row.message_id, "could not ack an archived dead letter (channel closed); its redelivery is a no-op");
            }
            let outcome = if inserted { "stored" } else { "duplicate" };
            metrics::counter!("mqkit_dlq_archived_total", "dlq" => dlq.to_owned(), "outcome" => outcome).increment(1);
            if inserted {
                info!(dlq, queue = %row.original_queue, message_id = %row.message_id, kind = %row.error_kind, attempts = %row.attempts.map_or_else(|| "-".to_owned(), |a| a.to_string()), failed_at = %row.failed_at, "dead letter archived");
                if let Some(alerts) = &shared.alerts {
                    let _ = alerts.send(AlertEvent {
                        queue: row.original_queue,
                        dlq: dlq.to_owned(),
                        kind: row.error_kind,
                        error: letter.error,
                        message_id: row.message_id,
                    });
                }
            } else {
                info!(dlq, queue = %row.original_queue, message_id = %row.message_id, "dead letter already archived; acking the copy");
            }
        }
        Err(e) => {
            metrics::counter!("mqkit_dlq_archived_total", "dlq" => dlq.to_owned(), "outcome" => "failed").increment(1);
            error!(dlq, message_id = %row.message_id, archive = %shared.shown_url, error = %e, retry_in = ?shared.retry_delay, "cannot store a dead letter in the archive; leaving it in the DLQ");
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = tokio::time::sleep(shared.retry_delay) => {}
            }
            let requeue = BasicNackOptions {
                multiple: false,
                requeue: true,
            };
            if !matches!(delivery.acker.nack(requeue).await, Ok(true)) {
                warn!(
                    dlq,
                    "could not nack a dead letter (channel closed); the broker returns it to the DLQ"
                );
            }
        }
    }
}

impl Shared {
    fn scrub(&self, e: &dyn std::fmt::Display) -> String {
        scrub(&e.to_string(), self.password.as_deref())
    }
}

/// Exponential back-off from 100 ms to `max`, with jitter, forever.
fn backoff(max: Duration) -> backon::ExponentialBackoff {
    backoff::exponential(Duration::from_millis(100), max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_scrubbed() {
        let url = "mysql://root:s3cret@127.0.0.1:3306/test";
        assert_eq!(password_of(url).as_deref(), Some("s3cret"));
        assert_eq!(password_of("mysql://root@h/test"), None);
        assert_eq!(
            scrub("access denied for s3cret", password_of(url).as_deref()),
            "access denied for ****"
        );
    }
}
