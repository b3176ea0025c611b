//! Transactional consumers (feature `tx`; DESIGN.md "Transactional
//! consumers"): a handler that takes [`Tx`] runs in a database transaction
//! that also holds its inbox row and the messages it stages, so its effects
//! in that database happen exactly once and its follow-ups are sent if and
//! only if they commit.
//!
//! - [`handle`]: [`Tx`], the handler parameter.
//! - [`dialect`]: the SQL, for PostgreSQL and MySQL/MariaDB, and the
//!   migrations (`mqkit/migrations/tx/`).
//! - [`inbox`]: the core's `Inbox` over a pool: begin, inbox row, commit or
//!   roll back.
//! - [`relay`]: publishes committed outbox rows at once, and sweeps what a
//!   crash or an outage left unsent.
//! - [`retention`]: deletes sent outbox rows and old inbox rows in batches.
//!
//! The add-on joins a service through the app layer's hook ([`factory`]):
//! with a transactional consumer it needs a database (`MQKIT_DATABASE_URL`
//! or [`App::database`](crate::App::database)) of the kind the handlers'
//! `Tx` names, migrates it before the broker is connected, and gives the
//! pipeline its inbox.

mod dialect;
mod handle;
mod inbox;
mod relay;
mod retention;

use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::{MySql, Pool, Postgres};
use tokio::sync::mpsc;

pub use handle::Tx;
pub(crate) use inbox::SqlInbox;

use crate::app::addon::{Addon, AddonInput, Prepared, TxConsumer};
use crate::app::error::Error;
use crate::core::idempotency::BoxFuture;
use crate::core::inbox::DatabaseKind;
use crate::core::mask::mask_secrets;

/// A database a transactional handler's [`Tx`] can be for: `sqlx::Postgres`
/// (the default) or `sqlx::MySql` (MySQL and MariaDB). Sealed.
pub trait TxDatabase: dialect::Dialect {}

impl TxDatabase for Postgres {}
impl TxDatabase for MySql {}

impl crate::app::builder::App {
    /// The database of the transactional consumers (handlers that take
    /// [`Tx`]), instead of `MQKIT_DATABASE_URL`: a `sqlx::PgPool` or a
    /// `sqlx::MySqlPool`. Its size bounds how many transactional handlers
    /// run at once (each holds a connection while it runs). mqkit creates
    /// its tables in it at startup.
    pub fn database<DB: TxDatabase>(self, pool: Pool<DB>) -> Self {
        self.extra(pool)
    }

    /// The database of the transactional consumers by URL
    /// (`MQKIT_DATABASE_URL`): `postgres://…` or `mysql://…`. mqkit sizes
    /// the handlers' pool to their total concurrency (at most 100) and
    /// keeps 3 more connections for the relay, the sweeper and retention.
    pub fn database_url(self, url: &str) -> Self {
        self.with_config(|c| c.database_url = Some(url.to_owned()))
    }
}

/// The add-on factory: `None` when no consumer is transactional.
pub(crate) fn factory<'a>(
    input: &'a AddonInput<'a>,
) -> BoxFuture<'a, Result<Option<Prepared>, Error>> {
    Box::pin(prepare(input))
}

async fn prepare(input: &AddonInput<'_>) -> Result<Option<Prepared>, Error> {
    let Some(first) = input.transactional.first() else {
        if input.config.database_url.is_some() {
            tracing::warn!(
                "MQKIT_DATABASE_URL is set but no consumer takes mqkit::Tx; it is not used"
            );
        }
        return Ok(None);
    };
    let given_pg = input.extras.get::<Pool<Postgres>>();
    let given_my = input.extras.get::<Pool<MySql>>();
    let url = input.config.database_url.as_deref();
    let concurrency: u32 = input
        .transactional
        .iter()
        .map(|c| u32::from(c.spec.concurrency.max(1)))
        .sum();
    // Each running handler holds one connection (its transaction); the
    // relay, sweeper and retention have their own (BACKGROUND_CONNECTIONS).
    let size = concurrency.clamp(1, 100);
    // A copy of a message waits on its first copy's inbox row at most as
    // long as that one's handler may run, and a little more.
    let lock_wait = input
        .transactional
        .iter()
        .map(|c| c.spec.timeout)
        .max()
        .unwrap_or_default()
        + Duration::from_secs(5);
    let configured = match (given_pg, given_my, url) {
        (Some(pool), _, _) => Given::Postgres(pool, "App::database".to_owned()),
        (None, Some(pool), _) => Given::MySql(pool, "App::database".to_owned()),
        (None, None, Some(url)) => Given::from_url(url, size, lock_wait)?,
        (None, None, None) => {
            return Err(Error::NoDatabase {
                handler: first.handler.to_owned(),
                kind: first.kind,
                example: example_url(first.kind),
            });
        }
    };
    let kind = configured.kind();
    if let Some(c) = input.transactional.iter().find(|c| c.kind != kind) {
        return Err(Error::DatabaseMismatch {
            handler: c.handler.to_owned(),
            wants: c.kind,
            param: match c.kind {
                DatabaseKind::MySql => "mqkit::Tx<sqlx::MySql>",
                _ => "mqkit::Tx",
            },
            configured: kind,
        });
    }
    let deadline = input.config.startup_timeout;
    let prepared = match configured {
        Given::Postgres(pool, shown) => start(pool, &shown, input, deadline).await?,
        Given::MySql(pool, shown) => start(pool, &shown, input, deadline).await?,
    };
    Ok(Some(prepared))
}

/// The configured database: the handlers' pool and how it is shown in
/// logs.
enum Given {
    Postgres(Pool<Postgres>, String),
    MySql(Pool<MySql>, String),
}

impl Given {
    fn kind(&self) -> DatabaseKind {
        match self {
            Given::Postgres(..) => DatabaseKind::Postgres,
            Given::MySql(..) => DatabaseKind::MySql,
        }
    }

    /// A lazily connecting pool of `size` for `url` (the scheme decides),
    /// whose sessions wait at most `lock_wait` for a row lock.
    fn from_url(url: &str, size: u32, lock_wait: Duration) -> Result<Self, Error> {
        // The URL may carry its password as a query parameter too.
        let shown = mask_secrets(url);
        let bad =
            |problem: String| Error::Database(format!("MQKIT_DATABASE_URL={shown}: {problem}"));
        let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
        let shown_as = format!("MQKIT_DATABASE_URL={shown}");
        match scheme.as_deref() {
            Some("postgres" | "postgresql") => {
                let options: sqlx::postgres::PgConnectOptions = url
                    .parse()
                    .map_err(|_| bad("not a valid PostgreSQL URL".to_owned()))?;
                let options =
                    options.options([("lock_timeout", format!("{}ms", lock_wait.as_millis()))]);
                Ok(Given::Postgres(
                    pool_options(size).connect_lazy_with(options),
                    shown_as,
                ))
            }
            Some("mysql" | "mariadb") => {
                let url = url.replacen("mariadb://", "mysql://", 1);
                let options: sqlx::mysql::MySqlConnectOptions = url
                    .parse()
                    .map_err(|_| bad("not a valid MySQL URL".to_owned()))?;
                let secs = lock_wait.as_secs().max(1);
                let pool = pool_options(size)
                    .after_connect(move |conn, _| {
                        Box::pin(async move {
                            sqlx::Executor::execute(
                                conn,
                                format!("SET SESSION innodb_lock_wait_timeout = {secs}").as_str(),
                            )
                            .await
                            .map(|_| ())
                        })
                    })
                    .connect_lazy_with(options);
                Ok(Given::MySql(pool, shown_as))
            }
            _ => Err(bad(
                "the scheme must be postgres:// (PostgreSQL) or mysql:// (MySQL/MariaDB)"
                    .to_owned(),
            )),
        }
    }
}

/// Connections of the relay, sweeper and retention (from a URL).
const BACKGROUND_CONNECTIONS: u32 = 3;

/// How long a shutdown waits for the relay to send what the last handlers
/// committed, before the connection closes.
const SHUTDOWN_RELAY_WAIT: Duration = Duration::from_secs(5);

pub(crate) fn pool_options<DB: sqlx::Database>(size: u32) -> sqlx::pool::PoolOptions<DB> {
    // A database that is down fails a delivery after 5 s (it is requeued)
    // rather than holding it for sqlx's default 30 s.
    sqlx::pool::PoolOptions::new()
        .max_connections(size)
        .acquire_timeout(Duration::from_secs(5))
}

fn example_url(kind: DatabaseKind) -> &'static str {
    match kind {
        DatabaseKind::MySql => "mysql://user:password@host:3306/database",
        _ => "postgres://user:password@host:5432/database",
    }
}

/// Migrates (retrying until `deadline`), then prepares the inbox and the
/// relay, sweeper and retention tasks.
async fn start<DB: TxDatabase>(
    pool: Pool<DB>,
    shown: &str,
    input: &AddonInput<'_>,
    deadline: Duration,
) -> Result<Prepared, Error> {
    let started = Instant::now();
    loop {
        match DB::migrate(&pool).await {
            Ok(()) => break,
            Err(e) if started.elapsed() < deadline => {
                tracing::warn!(database = shown, error = %e, "database not ready; trying again");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => {
                return Err(Error::Database(format!(
                    "cannot prepare the {} database of the transactional consumers ({shown}, kept trying for {}s): {e}. Check that it is running and reachable, and the user's rights to create tables",
                    DB::KIND,
                    deadline.as_secs()
                )));
            }
        }
    }
    let (relay_tx, relay_rx) = mpsc::channel(relay::RELAY_QUEUE);
    let pending = Arc::new(relay::Pending::default());
    let inbox = Arc::new(SqlInbox::new(pool.clone(), relay_tx, pending.clone()));
    // The relay, sweeper and retention get a few connections of their own
    // (same options), so they never wait behind busy handlers.
    let background_pool = DB::background_pool(&pool, BACKGROUND_CONNECTIONS);
    let tuning = input.config.outbox;
    let inboxes: retention::InboxAges = input
        .transactional
        .iter()
        .map(|c: &TxConsumer| {
            (
                c.spec.queue.to_string(),
                tuning.retention.max(c.spec.idempotency_ttl),
            )
        })
        .collect();
    for c in input.transactional {
        if c.spec.idempotency_ttl > tuning.retention {
            tracing::info!(
                queue = %c.spec.queue,
                "inbox rows of this consumer are kept for its idempotency_ttl, which is longer than MQKIT_OUTBOX_RETENTION"
            );
        }
    }
    Ok(Prepared {
        inbox: Some(inbox),
        start: Box::new(move |stop, publisher| {
            let outbox = Arc::new(relay::Outbox {
                pool: background_pool,
                publisher,
                tuning,
            });
            let drained = pending.clone();
            let background = async move {
                tokio::join!(
                    relay::relay(outbox.clone(), relay_rx, pending, stop.clone()),
                    relay::sweeper(outbox.clone(), stop.clone()),
                    retention::retention(outbox, inboxes, stop),
                );
            };
            Addon {
                session_tasks: Vec::new(),
                background: Box::pin(background),
                before_close: Some(Arc::new(move || {
                    let pending = drained.clone();
                    Box::pin(async move { pending.drained(SHUTDOWN_RELAY_WAIT).await })
                })),
            }
        }),
    })
}

/// What `mqkit::testing` needs to run a transactional handler against a
/// real database: the inbox, and what committed transactions staged
/// (taken instead of relayed, and marked sent so no relay sends them).
pub(crate) struct TestOutbox {
    pub(crate) inbox: Arc<dyn crate::core::inbox::Inbox>,
    committed: tokio::sync::Mutex<mpsc::Receiver<relay::Committed>>,
    mark_sent: MarkSent,
}

type MarkSent = Box<dyn Fn(Vec<i64>) -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

impl TestOutbox {
    /// Migrates `pool` and builds the test inbox over it.
    pub(crate) async fn new<DB: TxDatabase>(pool: Pool<DB>) -> Result<Self, Error> {
        DB::migrate(&pool).await.map_err(|e| {
            Error::Database(format!(
                "cannot create mqkit's tables in the test {} database: {e}",
                DB::KIND
            ))
        })?;
        let (tx, rx) = mpsc::channel(relay::RELAY_QUEUE);
        let marker = pool.clone();
        Ok(TestOutbox {
            inbox: Arc::new(SqlInbox::new(pool, tx, Arc::default())),
            committed: tokio::sync::Mutex::new(rx),
            mark_sent: Box::new(move |ids| {
                let pool = marker.clone();
                Box::pin(async move {
                    let mut conn = pool.acquire().await.map_err(|e| e.to_string())?;
                    DB::mark_sent(&mut conn, &ids)
                        .await
                        .map_err(|e| e.to_string())
                })
            }),
        })
    }

    /// The messages committed transactions staged since the last call, in
    /// order; their rows are marked sent.
    pub(crate) async fn take(&self) -> Result<Vec<crate::core::publish::Ready>, Error> {
        let mut rx = self.committed.lock().await;
        let mut ids = Vec::new();
        let mut staged = Vec::new();
        while let Ok(batch) = rx.try_recv() {
            for (id, message) in batch.staged {
                ids.push(id);
                staged.push(message);
            }
        }
        if !ids.is_empty() {
            (self.mark_sent)(ids).await.map_err(|e| {
                Error::Database(format!("cannot mark staged test messages sent: {e}"))
            })?;
        }
        Ok(staged)
    }
}
