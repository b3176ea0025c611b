//! The outbox relay: publishes what transactions staged. [`relay`] takes
//! each committed batch at once (from the inbox, after its commit);
//! [`sweeper`] publishes what is left unsent a few seconds after its commit
//! (a crash between commit and publish, a broker outage, an unroutable
//! message backing off). Both lock the rows they publish
//! (`FOR UPDATE SKIP LOCKED`), so instances sharing a database never send
//! a row twice, except one whose publish was confirmed just before a crash
//! (it is sent again with the same message id).
//!
//! Per batch (one transaction's rows) the order is kept: rows are
//! published one after the other, and a failure defers the rest of the
//! batch with it. A failure is retried with back-off (1 s doubling to
//! 1 min) and reported; a row is never dropped.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, warn};

use super::TxDatabase;
use super::dialect::OutboxRow;
use super::inbox::db_error;
use crate::app::config::OutboxTuning;
use crate::core::headers::Properties;
use crate::core::publish::{Publisher, Ready};

/// What one committed transaction staged, in order, with row ids.
#[derive(Debug)]
pub(crate) struct Committed {
    pub(crate) staged: Vec<(i64, Ready)>,
}

/// At most this many committed batches wait for the relay; beyond, the
/// sweeper sends them.
pub(crate) const RELAY_QUEUE: usize = 4096;
/// Batches the relay publishes under one lock.
const RELAY_BATCHES: usize = 64;
/// Rows the sweeper locks at a time.
const SWEEP_ROWS: i64 = 200;
/// Longest back-off of a row whose publish failed.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Committed batches handed to the relay and not yet through it: what a
/// shutdown waits for before the connection closes.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    batches: std::sync::atomic::AtomicUsize,
}

impl Pending {
    pub(crate) fn add(&self) {
        self.batches
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    pub(crate) fn done_one(&self) {
        self.done(1);
    }

    fn done(&self, n: usize) {
        self.batches
            .fetch_sub(n, std::sync::atomic::Ordering::AcqRel);
    }

    /// Waits until the relay has taken every batch handed to it, at most
    /// `limit` (what is left is the sweeper's, later).
    pub(crate) async fn drained(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let left = self.batches.load(std::sync::atomic::Ordering::Acquire);
            if left == 0 {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                warn!(
                    batches = left,
                    "shutdown: outbox relay not done in time; the sweeper of the next instance sends the rest"
                );
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// What the relay and the sweeper share.
pub(crate) struct Outbox<DB: TxDatabase> {
    pub(crate) pool: sqlx::Pool<DB>,
    pub(crate) publisher: Publisher,
    pub(crate) tuning: OutboxTuning,
}

/// A row to publish.
struct Item<'a> {
    id: i64,
    exchange: &'a str,
    routing_key: &'a str,
    body: &'a [u8],
    properties: std::borrow::Cow<'a, Properties>,
    mandatory: bool,
    attempts: i32,
}

/// What publishing a set of batches came to.
#[derive(Default)]
struct Tally {
    sent: Vec<i64>,
    /// (ids deferred together, error, back-off)
    failed: Vec<(Vec<i64>, String, Duration)>,
}

fn backoff(attempts: i32) -> Duration {
    let exp = u32::try_from(attempts.clamp(0, 6)).unwrap_or(6);
    (Duration::from_secs(1) * 2u32.pow(exp)).min(MAX_BACKOFF)
}

impl<DB: TxDatabase> Outbox<DB> {
    /// Publishes batches, each in order and stopping at its first failure;
    /// batches run side by side.
    async fn publish(&self, batches: Vec<Vec<Item<'_>>>, path: &'static str) -> Tally {
        let results = join_all(batches.into_iter().map(|batch| async move {
            let mut sent = Vec::new();
            for (i, item) in batch.iter().enumerate() {
                let result = self
                    .publisher
                    .publish_raw(
                        item.exchange,
                        item.routing_key,
                        item.body,
                        &item.properties,
                        item.mandatory,
                    )
                    .await;
                match result {
                    Ok(()) => sent.push(item.id),
                    Err(e) => {
                        let deferred: Vec<i64> = batch[i..].iter().map(|r| r.id).collect();
                        let error = e.to_string();
                        warn!(
                            outbox_id = item.id,
                            message_id = item.properties.message_id.as_deref().unwrap_or(""),
                            exchange = item.exchange,
                            routing_key = item.routing_key,
                            attempts = item.attempts + 1,
                            deferred = deferred.len(),
                            error = %error,
                            "outbox message not published; retried with back-off"
                        );
                        metrics::counter!("mqkit_outbox_failures_total").increment(1);
                        return (sent, Some((deferred, error, backoff(item.attempts))));
                    }
                }
            }
            (sent, None)
        }))
        .await;
        let mut tally = Tally::default();
        for (sent, failed) in results {
            metrics::counter!("mqkit_outbox_published_total", "path" => path)
                .increment(sent.len() as u64);
            tally.sent.extend(sent);
            tally.failed.extend(failed);
        }
        tally
    }

    /// Records what was published and what failed, in the locking
    /// transaction, and commits it (releasing the locks).
    async fn settle(
        &self,
        mut tx: sqlx::Transaction<'static, DB>,
        tally: Tally,
    ) -> Result<(), String> {
        if !tally.sent.is_empty() {
            DB::mark_sent(&mut tx, &tally.sent)
                .await
                .map_err(|e| db_error("cannot mark outbox rows sent", &e))?;
        }
        for (ids, error, retry_in) in &tally.failed {
            DB::mark_failed(&mut tx, ids, error, *retry_in)
                .await
                .map_err(|e| db_error("cannot record an outbox failure", &e))?;
        }
        tx.commit()
            .await
            .map_err(|e| db_error("cannot commit the outbox update", &e))
    }

    /// Publishes committed batches that no one else has locked.
    async fn relay_batches(&self, batches: &[Committed]) -> Result<(), String> {
        let ids: Vec<i64> = batches
            .iter()
            .flat_map(|b| b.staged.iter().map(|(id, _)| *id))
            .collect();
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| db_error("cannot begin", &e))?;
        let locked: HashSet<i64> = DB::lock_unsent(&mut tx, &ids)
            .await
            .map_err(|e| db_error("cannot lock outbox rows", &e))?
            .into_iter()
            .collect();
        if locked.len() < ids.len() {
            debug!(
                rows = ids.len(),
                locked = locked.len(),
                "outbox relay: rows sent or locked elsewhere are left to their owner"
            );
        }
        // A batch is published only by whoever locked all of its rows (a
        // sweeper may hold some of them): so its order holds.
        let work: Vec<Vec<Item<'_>>> = batches
            .iter()
            .filter(|b| b.staged.iter().all(|(id, _)| locked.contains(id)))
            .map(|b| {
                b.staged
                    .iter()
                    .map(|(id, m)| Item {
                        id: *id,
                        exchange: &m.exchange,
                        routing_key: &m.routing_key,
                        body: &m.body,
                        properties: std::borrow::Cow::Borrowed(&m.properties),
                        mandatory: m.mandatory,
                        attempts: 0,
                    })
                    .collect()
            })
            .filter(|b: &Vec<Item<'_>>| !b.is_empty())
            .collect();
        let tally = self.publish(work, "relay").await;
        self.settle(tx, tally).await
    }

    /// One sweep: up to [`SWEEP_ROWS`] due rows, batch by batch; how many
    /// candidates there were.
    async fn sweep_once(&self) -> Result<usize, String> {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| db_error("cannot begin", &e))?;
        let due = DB::lock_due(&mut tx, self.tuning.sweep_after, SWEEP_ROWS)
            .await
            .map_err(|e| db_error("cannot lock due outbox rows", &e))?;
        let count = due.len();
        if count == 0 {
            let _ = tx.rollback().await;
            return Ok(0);
        }
        // The batches of the due rows, oldest first; each is this sweep's
        // only if every unsent row of it could be locked (another relay or
        // sweeper may hold the rest; it is theirs then).
        let mut seen = HashSet::new();
        let mut owned: Vec<Vec<OutboxRow>> = Vec::new();
        for (_, batch) in &due {
            if !seen.insert(batch.as_str()) {
                continue;
            }
            let (rows, unsent) = DB::lock_batch(&mut tx, batch)
                .await
                .map_err(|e| db_error("cannot lock an outbox batch", &e))?;
            if i64::try_from(rows.len()).unwrap_or(i64::MAX) == unsent && !rows.is_empty() {
                owned.push(rows);
            }
        }
        let mut tally = Tally::default();
        let mut work: Vec<Vec<Item<'_>>> = Vec::new();
        for rows in &owned {
            let mut items = Vec::with_capacity(rows.len());
            for (i, row) in rows.iter().enumerate() {
                match serde_json::from_str::<Properties>(&row.properties) {
                    Ok(properties) => items.push(item_of(row, properties)),
                    Err(e) => {
                        let error = format!("outbox row {} has unreadable properties: {e}", row.id);
                        error!(outbox_id = row.id, error = %error, "outbox row cannot be published; fix or delete it");
                        // This row and the rest of its batch wait (in order);
                        // the rows before it go.
                        let rest: Vec<i64> = rows[i..].iter().map(|r| r.id).collect();
                        tally.failed.push((rest, error, MAX_BACKOFF));
                        break;
                    }
                }
            }
            if !items.is_empty() {
                work.push(items);
            }
        }
        let published = self.publish(work, "sweeper").await;
        tally.sent.extend(published.sent);
        tally.failed.extend(published.failed);
        self.settle(tx, tally).await?;
        Ok(count)
    }
}

fn item_of(row: &OutboxRow, properties: Properties) -> Item<'_> {
    Item {
        id: row.id,
        exchange: &row.exchange,
        routing_key: &row.routing_key,
        body: &row.body,
        properties: std::borrow::Cow::Owned(properties),
        mandatory: row.mandatory,
        attempts: row.attempts,
    }
}

/// The relay: publishes each committed batch as soon as it arrives (with
/// whatever else arrived meanwhile), until `stop`.
pub(crate) async fn relay<DB: TxDatabase>(
    outbox: Arc<Outbox<DB>>,
    mut committed: mpsc::Receiver<Committed>,
    pending: Arc<Pending>,
    stop: CancellationToken,
) {
    loop {
        let first = tokio::select! {
            () = stop.cancelled() => return,
            next = committed.recv() => match next {
                Some(batch) => batch,
                None => return,
            },
        };
        let mut batches = vec![first];
        while batches.len() < RELAY_BATCHES {
            match committed.try_recv() {
                Ok(batch) => batches.push(batch),
                Err(_) => break,
            }
        }
        if let Err(e) = outbox.relay_batches(&batches).await {
            // The rows are committed: the sweeper publishes them.
            warn!(error = %e, batches = batches.len(), "outbox relay failed; the sweeper publishes these rows");
        }
        pending.done(batches.len());
    }
}

/// The sweeper: every `sweep_interval`, publishes unsent rows older than
/// `sweep_after` (and updates `mqkit_outbox_unsent`), until `stop`.
pub(crate) async fn sweeper<DB: TxDatabase>(outbox: Arc<Outbox<DB>>, stop: CancellationToken) {
    let unsent = metrics::gauge!("mqkit_outbox_unsent");
    loop {
        loop {
            match outbox.sweep_once().await {
                Ok(n) if n as i64 == SWEEP_ROWS && !stop.is_cancelled() => {}
                Ok(n) => {
                    if n > 0 {
                        debug!(rows = n, "outbox sweep");
                    }
                    break;
                }
                Err(e) => {
                    warn!(error = %e, "outbox sweep failed; trying again");
                    break;
                }
            }
        }
        if let Ok(n) = DB::count_unsent(&outbox.pool, outbox.tuning.sweep_after).await {
            unsent.set(n as f64);
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(outbox.tuning.sweep_interval) => {}
        }
    }
}
