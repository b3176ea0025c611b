//! [`SqlInbox`]: the core's [`Inbox`] over a sqlx pool. Opens a delivery's
//! transaction with its inbox row, lends it to the handler as a [`Tx`], and
//! commits or rolls it back; what a committed transaction staged goes to
//! the [relay](super::relay) at once.

use std::any::Any;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::TxDatabase;
use super::handle::{Open, Tx};
use super::relay::{Committed, Pending};
use crate::core::context::Context;
use crate::core::idempotency::BoxFuture;
use crate::core::inbox::{Begun, CommitError, Inbox, InboxError, OpenTx};

/// The longest mqkit waits for a commit or a rollback (a statement the
/// handler's timeout cancelled may still run on the server).
const DB_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The inbox of one database.
pub(crate) struct SqlInbox<DB: TxDatabase> {
    pool: sqlx::Pool<DB>,
    pending: Arc<Pending>,
    /// Committed batches for the relay; when it is full, the sweeper
    /// publishes them instead (a little later), so a handler never waits
    /// for the relay.
    relay: mpsc::Sender<Committed>,
}

impl<DB: TxDatabase> SqlInbox<DB> {
    pub(crate) fn new(
        pool: sqlx::Pool<DB>,
        relay: mpsc::Sender<Committed>,
        pending: Arc<Pending>,
    ) -> Self {
        SqlInbox {
            pool,
            pending,
            relay,
        }
    }
}

/// The text of a database error for a requeue reason and the logs (sqlx's
/// texts carry no password).
pub(crate) fn db_error(what: &str, e: &sqlx::Error) -> String {
    format!("{what}: {e}")
}

impl<DB: TxDatabase> Inbox for SqlInbox<DB> {
    fn begin<'a>(
        &'a self,
        consumer: &'a str,
        key: &'a str,
        message_id: Option<&'a str>,
        context: &'a Context,
    ) -> BoxFuture<'a, Result<Begun, InboxError>> {
        Box::pin(async move {
            let mut tx = self
                .pool
                .begin()
                .await
                .map_err(|e| InboxError(db_error("cannot begin a transaction", &e)))?;
            let batch = uuid::Uuid::new_v4();
            let claim = batch.to_string();
            match DB::insert_inbox(&mut tx, consumer, key, message_id, &claim).await {
                Ok(true) => {}
                Ok(false) => {
                    let _ = tx.rollback().await;
                    return Ok(Begun::Duplicate);
                }
                Err(e) => {
                    let _ = tx.rollback().await;
                    return Err(InboxError(db_error("cannot insert the inbox row", &e)));
                }
            }
            let open = Open {
                tx,
                consumer: Arc::from(consumer),
                batch,
                delivery: context.shared_properties(),
                staged: Vec::new(),
            };
            let (handle, back) = Tx::new(open);
            Ok(Begun::Fresh(Box::new(Lent {
                handle: Some(handle),
                back,
                key: key.to_owned(),
                claim,
                relay: self.relay.clone(),
                pending: self.pending.clone(),
            })))
        })
    }
}

/// A transaction lent to a handler.
struct Lent<DB: TxDatabase> {
    handle: Option<Tx<DB>>,
    back: oneshot::Receiver<Open<DB>>,
    /// The inbox key, and the id the row was inserted with.
    key: String,
    claim: String,
    relay: mpsc::Sender<Committed>,
    pending: Arc<Pending>,
}

impl<DB: TxDatabase> OpenTx for Lent<DB> {
    fn hand_out(&mut self) -> Box<dyn Any + Send> {
        match self.handle.take() {
            Some(tx) => Box::new(tx),
            // Handed out twice: the second taker finds nothing to downcast.
            None => Box::new(()),
        }
    }

    fn commit(mut self: Box<Self>) -> BoxFuture<'static, Result<(), CommitError>> {
        // Not handed out (a consumer that never asks for its Tx): drop it
        // here, so it comes back below.
        drop(self.handle.take());
        Box::pin(async move {
            let Ok(open) = self.back.try_recv() else {
                return Err(CommitError::TxKept);
            };
            let Open {
                mut tx,
                staged,
                consumer,
                ..
            } = open;
            // A transaction the handler aborted (a failed statement it went
            // on from) or ended (a deadlock, its own COMMIT or ROLLBACK)
            // no longer holds the inbox row it began with; committing it
            // would ack a message whose effects are gone.
            match DB::holds_claim(&mut tx, &consumer, &self.key, &self.claim).await {
                Ok(true) => {}
                Ok(false) | Err(sqlx::Error::Database(_)) => {
                    let _ = tx.rollback().await;
                    return Err(CommitError::Aborted(
                        "the handler's transaction was aborted or ended before it returned (a statement failed and the handler went on, or it ran COMMIT/ROLLBACK itself): nothing was committed; return the database's errors with `?`".to_owned(),
                    ));
                }
                Err(e) => {
                    return Err(CommitError::Database(db_error(
                        "cannot check the transaction before committing",
                        &e,
                    )));
                }
            }
            match tokio::time::timeout(DB_WAIT, tx.commit()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(CommitError::Database(db_error("commit failed", &e))),
                Err(_) => {
                    return Err(CommitError::Database(format!(
                        "the commit did not answer within {}s",
                        DB_WAIT.as_secs()
                    )));
                }
            }
            if !staged.is_empty() {
                self.pending.add();
                if self.relay.try_send(Committed { staged }).is_err() {
                    // Full (the relay is behind) or stopped: the sweeper
                    // sends them a few seconds later.
                    self.pending.done_one();
                    tracing::debug!(
                        "outbox relay is behind; the sweeper sends this transaction's messages"
                    );
                }
            }
            Ok(())
        })
    }

    fn rollback(mut self: Box<Self>) -> BoxFuture<'static, bool> {
        drop(self.handle.take());
        Box::pin(async move {
            match self.back.try_recv() {
                Ok(open) => matches!(
                    tokio::time::timeout(DB_WAIT, open.tx.rollback()).await,
                    Ok(Ok(()))
                ),
                // Kept by the handler: it rolls back when dropped.
                Err(_) => true,
            }
        })
    }
}
