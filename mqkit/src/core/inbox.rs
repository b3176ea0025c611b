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
#[cfg_attr(not(feature = "tx"), allow(dead_code))]
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
#[cfg_attr(not(feature = "tx"), allow(dead_code))]
pub(crate) enum CommitError {
    /// The commit failed or its result is unknown (connection lost): the
    /// delivery is requeued, and its inbox row decides on the next try.
    Database(String),
    /// The handler kept its `Tx` beyond its return (moved it into a task):
    /// nothing is committed, and that counts as a failed attempt.
    TxKept,
    /// The transaction was aborted or ended inside the handler (a failed
    /// statement it went on from, its own `COMMIT`): nothing is committed,
    /// and that counts as a failed attempt.
    Aborted(String),
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
    /// inbox row, no outbox row). `false` when the database could not be
    /// told (the connection is gone, so the transaction is over anyway):
    /// the failure was likely the database's, not the handler's.
    fn rollback(self: Box<Self>) -> BoxFuture<'static, bool>;
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

#[cfg(test)]
mod tests {
    //! The pipeline's transactional branch over a scripted inbox: which
    //! outcome each database answer and handler result leads to, and that
    //! a failure rolls back. (The SQL itself is tested against the real
    //! databases in `tests/tx.rs`.)

    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::core::consumer::{Consumer, DecodeError};
    use crate::core::headers::Properties;
    use crate::core::idempotency::{KeyBuilder, MemoryStore};
    use crate::core::outcome::{DeadLetterKind, Outcome, RequeueReason};
    use crate::core::pipeline::{Delivery, Deps, Pipeline};
    use crate::core::publish::Publisher;
    use crate::core::spec::ConsumerSpec;

    /// A delivery in memory (the test harness is a layer above).
    struct Bytes(Vec<u8>, Properties);

    impl Delivery for Bytes {
        fn body(&self) -> &[u8] {
            &self.0
        }
        fn properties(&self) -> &Properties {
            &self.1
        }
        fn redelivered(&self) -> bool {
            false
        }
    }

    /// What the scripted inbox answers and what happened to its transaction.
    #[derive(Default)]
    struct Script {
        begin: Option<Result<bool, String>>, // Ok(true) fresh, Ok(false) duplicate
        commit: Option<Result<(), CommitError>>,
        /// The connection is gone by the time of the rollback.
        gone: bool,
        log: Mutex<Vec<String>>,
    }

    struct Scripted(Arc<Script>);

    struct Open(Arc<Script>, bool);

    impl Inbox for Scripted {
        fn begin<'a>(
            &'a self,
            consumer: &'a str,
            key: &'a str,
            _message_id: Option<&'a str>,
            _context: &'a Context,
        ) -> BoxFuture<'a, Result<Begun, InboxError>> {
            self.0
                .log
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(format!("begin {consumer} {key}"));
            let answer = self.0.begin.clone().unwrap_or(Ok(true));
            let script = self.0.clone();
            Box::pin(async move {
                match answer {
                    Ok(true) => Ok(Begun::Fresh(Box::new(Open(script, false)))),
                    Ok(false) => Ok(Begun::Duplicate),
                    Err(e) => Err(InboxError(e)),
                }
            })
        }
    }

    impl OpenTx for Open {
        fn hand_out(&mut self) -> Box<dyn Any + Send> {
            self.1 = true;
            Box::new(7u32)
        }
        fn commit(self: Box<Self>) -> BoxFuture<'static, Result<(), CommitError>> {
            self.0
                .log
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push("commit".into());
            let answer = self.0.commit.clone().unwrap_or(Ok(()));
            Box::pin(async move { answer })
        }
        fn rollback(self: Box<Self>) -> BoxFuture<'static, bool> {
            self.0
                .log
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push("rollback".into());
            let reachable = !self.0.gone;
            Box::pin(async move { reachable })
        }
    }

    /// A transactional consumer whose body says what the handler does.
    #[derive(Default)]
    struct Charge;

    impl Consumer for Charge {
        type Message = serde_json::Value;
        fn spec(&self) -> ConsumerSpec {
            ConsumerSpec::new("pay").idempotency(&["id"]).max_retries(1)
        }
        fn transaction(&self) -> Option<DatabaseKind> {
            Some(DatabaseKind::Postgres)
        }
        fn decode(&self, body: &[u8]) -> Result<Self::Message, DecodeError> {
            serde_json::from_slice(body).map_err(|e| DecodeError(e.to_string()))
        }
        fn idempotency_key(&self, msg: &Self::Message, key: &mut KeyBuilder) {
            if let Some(id) = msg["id"].as_str() {
                key.push(id);
            }
        }
        #[allow(clippy::manual_async_fn)] // the trait's form
        fn handle(
            &self,
            msg: Self::Message,
            ctx: Context,
        ) -> impl std::future::Future<Output = Result<(), HandlerError>> + Send + 'static {
            async move {
                let tx = ctx.take_tx().and_then(|t| t.downcast::<u32>().ok());
                assert_eq!(tx.map(|b| *b), Some(7), "the handler gets the transaction");
                match msg["do"].as_str() {
                    Some("fail") => Err(HandlerError::retry("boom")),
                    Some("reject") => Err(HandlerError::reject("no")),
                    _ => Ok(()),
                }
            }
        }
    }

    async fn run(
        script: Script,
        body: serde_json::Value,
        spec: Option<ConsumerSpec>,
    ) -> (Outcome, Vec<String>) {
        run_with_id(script, body, spec, Some("m-1")).await
    }

    async fn run_with_id(
        script: Script,
        body: serde_json::Value,
        spec: Option<ConsumerSpec>,
        message_id: Option<&str>,
    ) -> (Outcome, Vec<String>) {
        let script = Arc::new(script);
        let spec = spec.unwrap_or_else(|| Charge.spec());
        let pipeline = Pipeline::new(
            Charge,
            spec,
            Deps {
                store: Arc::new(MemoryStore::new()),
                publisher: Publisher::disconnected(),
                state: Arc::default(),
                inbox: Some(Arc::new(Scripted(script.clone()))),
            },
        );
        let properties = Properties {
            message_id: message_id.map(str::to_owned),
            ..Properties::default()
        };
        let delivery = Bytes(body.to_string().into_bytes(), properties);
        let outcome = pipeline.process(&delivery).await;
        let log = script.log.lock().unwrap_or_else(|p| p.into_inner()).clone();
        (outcome, log)
    }

    #[tokio::test]
    async fn each_answer_maps_to_its_outcome() {
        let ok = serde_json::json!({"id": "P-1"});
        let (o, log) = run(Script::default(), ok.clone(), None).await;
        assert_eq!(o, Outcome::Ack);
        assert_eq!(log, ["begin pay P-1", "commit"]);

        let dup = Script {
            begin: Some(Ok(false)),
            ..Script::default()
        };
        assert_eq!(run(dup, ok.clone(), None).await.0, Outcome::Duplicate);

        let down = Script {
            begin: Some(Err("connection refused".into())),
            ..Script::default()
        };
        let (o, _) = run(down, ok.clone(), None).await;
        assert!(
            matches!(&o, Outcome::Requeue { reason: RequeueReason::DatabaseUnavailable(e), .. } if e == "connection refused"),
            "{o:?}"
        );

        let lost = Script {
            commit: Some(Err(CommitError::Database("commit failed: reset".into()))),
            ..Script::default()
        };
        let (o, _) = run(lost, ok.clone(), None).await;
        assert!(
            matches!(
                o,
                Outcome::Requeue {
                    reason: RequeueReason::DatabaseUnavailable(_),
                    ..
                }
            ),
            "{o:?}"
        );

        let kept = Script {
            commit: Some(Err(CommitError::TxKept)),
            ..Script::default()
        };
        let (o, _) = run(kept, ok, None).await;
        assert!(
            matches!(&o, Outcome::Retry { error, .. } if error.contains("kept its mqkit::Tx")),
            "{o:?}"
        );
    }

    #[tokio::test]
    async fn failures_roll_back() {
        let (o, log) = run(
            Script::default(),
            serde_json::json!({"id": "P-2", "do": "fail"}),
            None,
        )
        .await;
        assert!(matches!(o, Outcome::Retry { attempt: 1, .. }), "{o:?}");
        assert_eq!(log, ["begin pay P-2", "rollback"]);
        let (o, log) = run(
            Script::default(),
            serde_json::json!({"id": "P-3", "do": "reject"}),
            None,
        )
        .await;
        assert!(
            matches!(
                o,
                Outcome::DeadLetter {
                    kind: DeadLetterKind::Rejected,
                    ..
                }
            ),
            "{o:?}"
        );
        assert_eq!(log, ["begin pay P-3", "rollback"]);
        // The database went away under the handler: not an attempt.
        let gone = Script {
            gone: true,
            ..Script::default()
        };
        let (o, _) = run(gone, serde_json::json!({"id": "P-4", "do": "fail"}), None).await;
        assert!(
            matches!(&o, Outcome::Requeue { reason: RequeueReason::DatabaseUnavailable(e), .. } if e.contains("boom")),
            "{o:?}"
        );
        // A reject stays the handler's decision.
        let gone = Script {
            gone: true,
            ..Script::default()
        };
        let (o, _) = run(gone, serde_json::json!({"id": "P-5", "do": "reject"}), None).await;
        assert!(
            matches!(
                o,
                Outcome::DeadLetter {
                    kind: DeadLetterKind::Rejected,
                    ..
                }
            ),
            "{o:?}"
        );
    }

    #[tokio::test]
    async fn the_key_is_the_business_key_else_the_message_id() {
        let by_id = ConsumerSpec::new("pay");
        let (_, log) = run(Script::default(), serde_json::json!({"x": 1}), Some(by_id)).await;
        assert_eq!(log, ["begin pay id:m-1", "commit"]);
        let long = "k".repeat(600);
        let (_, log) = run(Script::default(), serde_json::json!({"id": long}), None).await;
        assert!(log[0].starts_with("begin pay uuid5:"), "{log:?}");
        let (o, log) = run_with_id(
            Script::default(),
            serde_json::json!({"x": 1}),
            Some(ConsumerSpec::new("pay")),
            None,
        )
        .await;
        assert!(
            matches!(&o, Outcome::DeadLetter { kind: DeadLetterKind::Rejected, error, .. } if error.contains("message id")),
            "{o:?}"
        );
        assert!(log.is_empty(), "no transaction without a key: {log:?}");
    }
}
