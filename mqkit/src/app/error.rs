//! [`Error`]: what [`run`](crate::run) and [`App`](crate::App) report.
//! Every variant says what to check; URLs have their passwords masked.

use crate::amqp::supervisor::SupervisorError;
use crate::amqp::topology::TopologyError;
use crate::core::handler::BoxError;
use crate::core::idempotency::StoreError;
use crate::core::spec::SpecError;

/// A failure to start or keep running a service.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value is invalid.
    #[error("configuration: {0}")]
    Config(String),
    /// The broker could not be reached at startup.
    #[error(
        "cannot connect to RabbitMQ at {urls} (kept trying for {waited_secs}s): {cause}. Check that RabbitMQ is running and reachable from here, and the host, port, user, password and vhost in MQKIT_AMQP_URL"
    )]
    Connect {
        /// The URLs tried, passwords masked.
        urls: String,
        /// Seconds spent trying.
        waited_secs: u64,
        /// The last error.
        cause: String,
    },
    /// A consumer spec breaks an invariant.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// Declaring queues, exchanges or bindings failed.
    #[error(transparent)]
    Topology(#[from] TopologyError),
    /// A consumer could not be started on its queue.
    #[error("cannot start consuming queue `{queue}`: {source}")]
    Consume {
        /// The queue.
        queue: String,
        /// The broker's error.
        source: BoxError,
    },
    /// Nothing to consume.
    #[error("no consumers: add #[mqkit::consumer] functions to this binary, or App::consumer")]
    NoConsumers,
    /// A handler takes `State<T>` but the app was given no `T`.
    #[error(
        "handler `{handler}` takes `mqkit::State<{type_name}>` but no value of type `{type_name}` was given: add `.state(value)` to the App (mqkit::App::from_env()?.state(value).run()), or to the TestHarness in tests"
    )]
    MissingState {
        /// The handler function.
        handler: String,
        /// The missing type.
        type_name: &'static str,
    },
    /// `MQKIT_HTTP_ADDR` cannot be listened on.
    #[error(
        "cannot serve the probes on MQKIT_HTTP_ADDR={addr}: {source}. Check that no other process (another instance of this service?) listens on that port and that the address is one of this machine's, e.g. 0.0.0.0:9464 or 127.0.0.1:9464"
    )]
    HttpAddr {
        /// The address as configured.
        addr: String,
        /// Why listening failed.
        source: std::io::Error,
    },
    /// Two consumers use the same queue.
    #[error("two consumers use queue `{0}`: each queue has exactly one handler")]
    DuplicateQueue(String),
    /// The idempotency store could not be set up.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The service's background task failed.
    #[error("mqkit's supervisor task stopped unexpectedly: {0}")]
    Supervisor(String),
    /// `MQKIT_DLQ_ALERT_WEBHOOK` is set without `MQKIT_DLQ_ARCHIVE_URL`.
    #[error(
        "MQKIT_DLQ_ALERT_WEBHOOK is set but MQKIT_DLQ_ARCHIVE_URL is not: alerts come from the dead-letter archiver, which runs only with an archive. Set MQKIT_DLQ_ARCHIVE_URL (mysql://user:password@host:3306/database) or unset MQKIT_DLQ_ALERT_WEBHOOK"
    )]
    AlertWithoutArchive,
    /// `MQKIT_DLQ_ARCHIVE_URL` is set but mqkit was built without `dlq`.
    #[error(
        "MQKIT_DLQ_ARCHIVE_URL is set but this binary was built without mqkit's `dlq` feature, so it cannot archive dead letters. Add `features = [\"dlq\"]` to the mqkit dependency in Cargo.toml, or unset MQKIT_DLQ_ARCHIVE_URL"
    )]
    DlqFeatureDisabled,
    /// A handler takes `mqkit::Tx` but no database was configured.
    #[error(
        "handler `{handler}` takes `mqkit::Tx` (a {kind} transaction) but no database is configured: set MQKIT_DATABASE_URL ({example}) or give a pool with App::database(pool)"
    )]
    NoDatabase {
        /// The handler function.
        handler: String,
        /// The database its `Tx` is for.
        kind: crate::core::inbox::DatabaseKind,
        /// A URL of that kind, as an example.
        example: &'static str,
    },
    /// A handler's `Tx` is for another database than the configured one.
    #[error(
        "handler `{handler}` takes a {wants} transaction (`{param}`) but the configured database is {configured}: point MQKIT_DATABASE_URL (or App::database) at {wants}, or change the parameter's type"
    )]
    DatabaseMismatch {
        /// The handler function.
        handler: String,
        /// What its `Tx` is for.
        wants: crate::core::inbox::DatabaseKind,
        /// How that parameter is written.
        param: &'static str,
        /// What is configured.
        configured: crate::core::inbox::DatabaseKind,
    },
    /// The database of transactional consumers is unusable at startup.
    #[error("{0}")]
    Database(String),
    /// A consumer is transactional but mqkit was built without `tx`.
    #[error(
        "handler `{0}` is transactional but this binary was built without mqkit's `tx` feature: add `features = [\"tx\"]` to the mqkit dependency in Cargo.toml"
    )]
    TxFeatureDisabled(String),
    /// A dead-letter setting is invalid.
    #[error("{variable}={value}: {problem}")]
    DlqConfig {
        /// The variable (`MQKIT_DLQ_ARCHIVE_URL`, `MQKIT_DLQ_ALERT_WEBHOOK`).
        variable: &'static str,
        /// Its value, secrets masked.
        value: String,
        /// What is wrong and what to do.
        problem: String,
    },
}

/// The message, not the structure: `main() -> Result<(), mqkit::Error>`
/// prints `Error: <Debug>`, and that should read as a sentence.
impl std::fmt::Debug for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl From<SupervisorError> for Error {
    fn from(e: SupervisorError) -> Self {
        match e {
            SupervisorError::Connect {
                urls,
                waited_secs,
                cause,
            } => Error::Connect {
                urls,
                waited_secs,
                cause,
            },
            SupervisorError::Topology(e) => Error::Topology(e),
            SupervisorError::Consume { queue, source } => Error::Consume {
                queue,
                source: Box::new(source),
            },
        }
    }
}
