//! [`Tx`], the transactional handler parameter: the delivery's database
//! transaction (for the handler's queries) and its outbox (for follow-up
//! messages that are sent only if the transaction commits).

use std::fmt;
use std::sync::Arc;

use serde::Serialize;
use tokio::sync::oneshot;

use super::TxDatabase;
use super::dialect::NewRow;
use crate::core::context::Context;
use crate::core::handler::HandlerError;
use crate::core::headers::Properties;
use crate::core::inbox::{DatabaseKind, TxParam};
use crate::core::publish::{Draft, MessageBuilder, PublishError, Ready};

/// A transactional handler's database transaction, opened by mqkit for one
/// delivery and holding its inbox row. `Tx` is PostgreSQL;
/// `Tx<sqlx::MySql>` is MySQL/MariaDB.
///
/// ```no_run
/// # #[derive(serde::Deserialize)] struct Payment { payment_id: String, account: String, cents: i64 }
/// # #[derive(serde::Serialize)] struct Captured<'a> { payment_id: &'a str }
/// #[mqkit::consumer(queue = "payment", idempotency = "payment_id")]
/// async fn capture(p: Payment, mut tx: mqkit::Tx) -> Result<(), mqkit::HandlerError> {
///     sqlx::query("UPDATE accounts SET cents = cents - $1 WHERE id = $2")
///         .bind(p.cents)
///         .bind(&p.account)
///         .execute(tx.conn())
///         .await?;
///     tx.publish_json("payments", "payment.captured", &Captured { payment_id: &p.payment_id }).await?;
///     Ok(()) // mqkit commits, then acks; the relay publishes the staged message
/// }
/// ```
///
/// `Ok` commits the handler's writes, the inbox row and the staged messages
/// together; an error, a panic or a timeout rolls all of them back.
pub struct Tx<DB: TxDatabase = sqlx::Postgres> {
    /// `Some` until the handler drops it.
    open: Option<Open<DB>>,
    /// Where the transaction goes back to mqkit when the handler drops it.
    back: Option<oneshot::Sender<Open<DB>>>,
}

/// What a [`Tx`] carries while the handler holds it.
pub(super) struct Open<DB: TxDatabase> {
    pub(super) tx: sqlx::Transaction<'static, DB>,
    pub(super) consumer: Arc<str>,
    pub(super) batch: uuid::Uuid,
    /// The delivery's properties (what staged messages inherit).
    pub(super) delivery: Arc<Properties>,
    /// The rows staged so far, in order, with their ids.
    pub(super) staged: Vec<(i64, Ready)>,
}

impl<DB: TxDatabase> Tx<DB> {
    /// A handle over `open`, and where it comes back when dropped.
    pub(super) fn new(open: Open<DB>) -> (Self, oneshot::Receiver<Open<DB>>) {
        let (back, rx) = oneshot::channel();
        (
            Tx {
                open: Some(open),
                back: Some(back),
            },
            rx,
        )
    }

    /// The delivery's transaction, for a hand-written
    /// [`Consumer`](crate::Consumer) whose
    /// [`transaction`](crate::Consumer::transaction) returns `Some` (the
    /// macro calls this for a `Tx` parameter). Once per delivery.
    pub fn take(ctx: &Context) -> Result<Self, HandlerError> {
        <Self as TxParam>::from_context(ctx)
    }

    fn open(&mut self) -> &mut Open<DB> {
        // `open` is taken only in `drop`.
        match &mut self.open {
            Some(open) => open,
            None => unreachable!("a Tx is used after it was dropped"),
        }
    }

    /// The transaction's connection, for the handler's own queries:
    /// `sqlx::query(…).execute(tx.conn()).await?`.
    pub fn conn(&mut self) -> &mut DB::Connection {
        &mut self.open().tx
    }

    /// Stages `message` as JSON (content type `application/json`, a new
    /// message id) for `exchange` with `routing_key`: an outbox row in this
    /// transaction, published by the relay after the commit (confirmed,
    /// mandatory, persistent; the same message id if it is ever sent
    /// twice). [`Tx::message`] sets more. Inherits the delivery's
    /// correlation id and trace context as `Publisher::publish_json` does.
    pub async fn publish_json<T: Serialize + ?Sized>(
        &mut self,
        exchange: &str,
        routing_key: &str,
        message: &T,
    ) -> Result<(), PublishError> {
        self.message(exchange, routing_key)
            .json(message)
            .send()
            .await
    }

    /// A message to stage, to fill in and [`send`](MessageBuilder::send)
    /// (which writes its outbox row), like [`Publisher::message`](crate::Publisher::message).
    pub fn message(&mut self, exchange: &str, routing_key: &str) -> MessageBuilder<&mut Tx<DB>> {
        MessageBuilder {
            target: self,
            draft: Draft::new(exchange, routing_key),
        }
    }

    /// How many messages this transaction has staged.
    pub fn staged(&self) -> usize {
        self.open.as_ref().map_or(0, |o| o.staged.len())
    }

    async fn stage(&mut self, draft: Draft) -> Result<(), PublishError> {
        let open = self.open();
        let ready = draft.finish(Some(&open.delivery))?;
        let outbox_error = |source: crate::core::handler::BoxError| PublishError::Outbox {
            exchange: ready.exchange.clone(),
            routing_key: ready.routing_key.clone(),
            source,
        };
        let message_id = ready.properties.message_id.clone().unwrap_or_default();
        for (what, value) in [
            ("exchange", &ready.exchange),
            ("routing key", &ready.routing_key),
            ("message id", &message_id),
        ] {
            if value.len() > 255 {
                return Err(outbox_error(
                    format!("the {what} is {} bytes long; AMQP allows 255", value.len()).into(),
                ));
            }
        }
        let properties = serde_json::to_string(&ready.properties)
            .map_err(|e| outbox_error(format!("cannot store the properties: {e}").into()))?;
        // What the sweeper will read back must be what was staged (a NaN
        // or infinite float header is stored as null and would not).
        if serde_json::from_str::<Properties>(&properties)
            .ok()
            .as_ref()
            != Some(&ready.properties)
        {
            return Err(outbox_error(
                "a header value cannot be stored as it is (a NaN or infinite float?)".into(),
            ));
        }
        let row = NewRow {
            batch: open.batch,
            consumer: &open.consumer,
            message_id: &message_id,
            exchange: &ready.exchange,
            routing_key: &ready.routing_key,
            properties: &properties,
            body: &ready.body,
            mandatory: ready.mandatory,
        };
        let id = DB::insert_outbox(&mut open.tx, &row)
            .await
            .map_err(|e| outbox_error(Box::new(e)))?;
        open.staged.push((id, ready));
        Ok(())
    }
}

impl<DB: TxDatabase> MessageBuilder<&mut Tx<DB>> {
    /// Stages the message: writes its outbox row in the handler's
    /// transaction. Nothing is sent unless the transaction commits.
    pub async fn send(self) -> Result<(), PublishError> {
        self.target.stage(self.draft).await
    }
}

impl<DB: TxDatabase> Drop for Tx<DB> {
    fn drop(&mut self) {
        if let (Some(open), Some(back)) = (self.open.take(), self.back.take()) {
            // mqkit is gone only when the delivery was abandoned; the
            // transaction then rolls back as it is dropped.
            let _ = back.send(open);
        }
    }
}

impl<DB: TxDatabase> fmt::Debug for Tx<DB> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tx")
            .field("database", &DB::KIND)
            .field("staged", &self.staged())
            .finish_non_exhaustive()
    }
}

impl<DB: TxDatabase> TxParam for Tx<DB> {
    const DATABASE: DatabaseKind = DB::KIND;

    fn from_context(ctx: &Context) -> Result<Self, HandlerError> {
        let missing = || {
            HandlerError::retry(format!(
                "no {} transaction for this delivery: a hand-written Consumer that takes mqkit::Tx must return Some({:?}) from Consumer::transaction",
                DB::KIND,
                DB::KIND
            ))
        };
        let tx = ctx.take_tx().ok_or_else(missing)?;
        tx.downcast::<Tx<DB>>().map(|b| *b).map_err(|_| missing())
    }
}
