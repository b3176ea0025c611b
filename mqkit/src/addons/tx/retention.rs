//! Retention: deletes sent outbox rows and old inbox rows in small batches
//! (each its own short statement, so the tables stay writable), every
//! `retention_interval`. An inbox row is kept at least as long as its
//! consumer's `idempotency_ttl`.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::TxDatabase;
use super::relay::Outbox;

/// The work queues of the transactional consumers, with how long each
/// keeps its inbox rows.
pub(crate) type InboxAges = Vec<(String, Duration)>;

/// Runs until `stop`.
pub(crate) async fn retention<DB: TxDatabase>(
    outbox: Arc<Outbox<DB>>,
    inboxes: InboxAges,
    stop: CancellationToken,
) {
    let mut tuning = outbox.tuning;
    tuning.delete_batch = tuning.delete_batch.max(1);
    let deleted = metrics::counter!("mqkit_outbox_retention_deleted_total");
    loop {
        let mut total = 0u64;
        let mut sweep = |n: u64| {
            total += n;
            deleted.increment(n);
        };
        // Sent outbox rows.
        loop {
            if stop.is_cancelled() {
                return;
            }
            match DB::delete_sent(&outbox.pool, tuning.retention, tuning.delete_batch).await {
                Ok(n) => {
                    sweep(n);
                    if n < tuning.delete_batch.unsigned_abs() {
                        break;
                    }
                }
                Err(e) => {
                    warn!(error = %e, "outbox retention: cannot delete sent rows; trying again later");
                    break;
                }
            }
            tokio::time::sleep(tuning.delete_pause).await;
        }
        for (consumer, age) in &inboxes {
            loop {
                if stop.is_cancelled() {
                    return;
                }
                match DB::delete_inbox(&outbox.pool, consumer, *age, tuning.delete_batch).await {
                    Ok(n) => {
                        sweep(n);
                        if n < tuning.delete_batch.unsigned_abs() {
                            break;
                        }
                    }
                    Err(e) => {
                        warn!(consumer, error = %e, "inbox retention: cannot delete old rows; trying again later");
                        break;
                    }
                }
                tokio::time::sleep(tuning.delete_pause).await;
            }
        }
        if total > 0 {
            info!(
                rows = total,
                "deleted inbox and outbox rows past their retention"
            );
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(tuning.retention_interval) => {}
        }
    }
}
