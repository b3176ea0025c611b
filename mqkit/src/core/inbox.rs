//! Transactional consumers as the pipeline sees them: the [`Inbox`] that
//! opens a database transaction holding a delivery's inbox row, the
//! [`OpenTx`] the handler's `mqkit::Tx` is taken from, and [`TxParam`],
//! what the code `#[mqkit::consumer]` generates calls for a `Tx`
//! parameter. The SQL lives in the transactional add-on
//! (`addons::tx`); this layer names no database client.

use std::any::Any;
use std::fmt;

use super::context::Context;
use super::handler::HandlerError;
use super::idempotency::BoxFuture;

/// The database a transactional consumer's `mqkit::Tx` is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DatabaseKind {
    /// PostgreSQL (`mqkit::Tx`, `postgres://…`).
    Postgres,
    /// MySQL or MariaDB (`mqkit::Tx<sqlx::MySql>`, `mysql://…`).
    MySql,
}

impl DatabaseKind {
    /// How users write it: `PostgreSQL`, `MySQL/MariaDB`.
    pub const fn name(self) -> &'static str {
        match self {
            DatabaseKind::Postgres => "PostgreSQL",
            DatabaseKind::MySql => "MySQL/MariaDB",
        }
    }
}

impl fmt::Display for DatabaseKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The database could not be asked, or did not commit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct InboxError(pub(crate) String);

/// What [`Inbox::begin`] found.
pub(crate) enum Begun {
    /// A transaction is open and holds this delivery's inbox row.
    Fresh(Box<dyn OpenTx>),
    /// The key's inbox row was committed before: this business event was
    /// handled (the transaction was rolled back).
    Duplicate,
}

/// Opens the transaction a transactional handler runs in.
pub(crate) trait Inbox: Send + Sync + 'static {
    /// Begins a transaction and inserts the inbox row (`consumer`, `key`)
    /// in it; a copy of the same key in flight elsewhere makes this wait
    /// until that one commits (then `Duplicate`) or rolls back.
    fn begin<'a>(
        &'a self,
        consumer: &'a str,
        key: &'a str,
        message_id: Option<&'a str>,
        context: &'a Context,
    ) -> BoxFuture<'a, Result<Begun, InboxError>>;
}

/// How committing went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CommitError {
    /// The commit failed or its result is unknown (connection lost): the
    /// delivery is requeued, and its inbox row decides on the next try.
    Database(String),
    /// The handler kept its `Tx` beyond its return (moved it into a task):
    /// nothing is committed, and that counts as a failed attempt.
    TxKept,
}

/// A transaction the handler is about to run in.
pub(crate) trait OpenTx: Send {
    /// The handler's `Tx`, type-erased, for [`Context`] to carry; called
    /// once, before the handler runs.
    fn hand_out(&mut self) -> Box<dyn Any + Send>;

    /// After `Ok`: commits (once the handler dropped its `Tx`) and hands
    /// the staged outbox rows to the relay.
    fn commit(self: Box<Self>) -> BoxFuture<'static, Result<(), CommitError>>;

    /// After a failure: rolls back (nothing the handler wrote stays, no
    /// inbox row, no outbox row).
    fn rollback(self: Box<Self>) -> BoxFuture<'static, ()>;
}

/// A transactional handler parameter (`mqkit::Tx`): what the code
/// `#[mqkit::consumer]` generates calls for it. Not a stable API.
#[doc(hidden)]
pub trait TxParam: Sized {
    /// The database it is a transaction of, checked at startup against the
    /// configured one.
    const DATABASE: DatabaseKind;

    /// The delivery's transaction.
    fn from_context(ctx: &Context) -> Result<Self, HandlerError>;
}
