//! Variant (t): the two transactional consumers (mqkit's `Tx` handler and
//! the hand-written lapin + sqlx one), and the tables they write, which the
//! parent creates, empties, checks and drops.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use lapin::message::Delivery;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};
use serde::Serialize;
use sqlx::Connection as _;
use sqlx::postgres::{PgConnection, PgPool, PgPoolOptions};

use crate::child::{ack, handle_order, reject, requeue};
use crate::{Args, BoxError, OrderEvent, Role};

/// The follow-up event both consumers send per message.
#[derive(Debug, Serialize)]
struct Recorded<'a> {
    order_id: &'a str,
    event_type: &'a str,
    amount_cents: i64,
}

impl<'a> Recorded<'a> {
    fn of(evt: &'a OrderEvent) -> Self {
        Recorded {
            order_id: &evt.order_id,
            event_type: &evt.event_type,
            amount_cents: evt.amount_cents,
        }
    }
}

/// The durable queue a run's follow-ups go to (through the default
/// exchange), declared and deleted by the parent.
pub(crate) fn followup_queue(queue: &str) -> String {
    format!("{queue}.followup")
}

/// The tables of one parent process (`tag` is its pid): the effect table
/// both consumers write, and the hand-written consumer's inbox (mqkit
/// keeps its own, `mqkit_inbox`).
struct Tables {
    effects: String,
    inbox: String,
}

impl Tables {
    fn new(tag: &str) -> Self {
        Tables {
            effects: format!("bench_effects_{tag}"),
            inbox: format!("bench_inbox_{tag}"),
        }
    }

    fn insert_effect(&self) -> String {
        format!(
            "INSERT INTO {} (order_id, event_type, amount_cents) VALUES ($1, $2, $3)",
            self.effects
        )
    }
}

// ---- the mqkit consumer ----

/// What the mqkit handler needs besides the message, set before the app
/// starts.
struct Setup {
    insert_effect: String,
    followup: String,
}

static SETUP: OnceLock<Setup> = OnceLock::new();

/// Variant (t): one effect row and one follow-up per message, in mqkit's
/// transaction (its inbox row keyed on the business key, its outbox).
#[mqkit::consumer(queue = "bench", idempotency = "order_id,event_type")]
async fn bench_tx(evt: OrderEvent, mut tx: mqkit::Tx) -> Result<(), mqkit::HandlerError> {
    let Some(setup) = SETUP.get() else {
        return Err(mqkit::HandlerError::retry("bench_tx is not set up"));
    };
    if !handle_order(&evt) {
        return Err(mqkit::HandlerError::reject("invalid order"));
    }
    sqlx::query(&setup.insert_effect)
        .bind(&evt.order_id)
        .bind(&evt.event_type)
        .bind(evt.amount_cents)
        .execute(tx.conn())
        .await?;
    tx.publish_json("", &setup.followup, &Recorded::of(&evt))
        .await?;
    Ok(())
}

/// The mqkit app with the transactional consumer on `args.queue`.
pub(crate) fn mqkit_app(
    app: mqkit::App,
    args: &Args,
    adjust: impl FnOnce(&mut mqkit::ConsumerSpec),
) -> mqkit::App {
    let tables = Tables::new(&args.tables);
    let _ = SETUP.set(Setup {
        insert_effect: tables.insert_effect(),
        followup: followup_queue(&args.queue),
    });
    app.consumer_with(bench_tx {}, adjust)
}

/// Watches the follow-up queue: mqkit acks a delivery once its transaction
/// commits and publishes the follow-up afterwards, so its run is over only
/// when all follow-ups are in the queue.
pub(crate) struct Followups {
    connection: Connection,
    channel: Channel,
    queue: String,
}

/// How long the follow-up count may stand still before the wait fails
/// (the sweeper takes what the relay could not within seconds).
const FOLLOWUP_STALL: Duration = Duration::from_secs(30);

impl Followups {
    pub(crate) async fn watch(args: &Args) -> Result<Self, BoxError> {
        let connection =
            Connection::connect(&args.amqp_url, ConnectionProperties::default()).await?;
        let channel = connection.create_channel().await?;
        Ok(Followups {
            connection,
            channel,
            queue: followup_queue(&args.queue),
        })
    }

    /// Waits until the queue holds `n` messages.
    pub(crate) async fn wait_for(&self, n: u64) -> Result<(), BoxError> {
        let (mut seen, mut since) = (0, Instant::now());
        loop {
            let queue = self
                .channel
                .queue_declare(
                    self.queue.as_str().into(),
                    QueueDeclareOptions {
                        passive: true,
                        ..QueueDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await?;
            let have = u64::from(queue.message_count());
            if have >= n {
                return Ok(());
            }
            if have > seen {
                (seen, since) = (have, Instant::now());
            } else if since.elapsed() > FOLLOWUP_STALL {
                return Err(format!(
                    "{}: {have} of {n} follow-ups published, none more for {FOLLOWUP_STALL:?}",
                    self.queue
                )
                .into());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    pub(crate) async fn close(self) {
        let _ = self.channel.close(200, "OK".into()).await;
        let _ = self.connection.close(200, "OK".into()).await;
    }
}

// ---- the hand-written consumer ----

/// What the hand-written consumer's tasks need for variant (t).
pub(crate) struct HandTx {
    pool: PgPool,
    /// A confirm-mode channel for the follow-ups, shared by the tasks.
    confirms: Channel,
    consumer: String,
    insert_inbox: String,
    insert_effect: String,
    followup: String,
}

/// What the transaction came to.
enum Stored {
    Committed,
    Duplicate,
    Invalid,
}

impl HandTx {
    /// Same size as mqkit's pool for concurrency 100, and connecting lazily
    /// as mqkit's does.
    pub(crate) async fn new(args: &Args, connection: &Connection) -> Result<Self, BoxError> {
        let pool = PgPoolOptions::new()
            .max_connections(100)
            .acquire_timeout(Duration::from_secs(5))
            .connect_lazy(&args.database_url)?;
        let confirms = connection.create_channel().await?;
        confirms
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let tables = Tables::new(&args.tables);
        Ok(HandTx {
            pool,
            confirms,
            consumer: args.queue.clone(),
            insert_inbox: format!(
                "INSERT INTO {} (consumer, key) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                tables.inbox
            ),
            insert_effect: tables.insert_effect(),
            followup: followup_queue(&args.queue),
        })
    }

    pub(crate) async fn close(&self) {
        let _ = self.confirms.close(200, "OK".into()).await;
        self.pool.close().await;
    }

    /// The inbox row, the check and the effect row in one transaction.
    async fn store(&self, evt: &OrderEvent) -> Result<Stored, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let key = format!("{}:{}", evt.order_id, evt.event_type);
        let inserted = sqlx::query(&self.insert_inbox)
            .bind(&self.consumer)
            .bind(&key)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if inserted == 0 {
            tx.rollback().await?;
            return Ok(Stored::Duplicate);
        }
        if !handle_order(evt) {
            tx.rollback().await?;
            return Ok(Stored::Invalid);
        }
        sqlx::query(&self.insert_effect)
            .bind(&evt.order_id)
            .bind(&evt.event_type)
            .bind(evt.amount_cents)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Stored::Committed)
    }

    /// The follow-up, persistent and mandatory, its confirm awaited.
    async fn send_followup(&self, evt: &OrderEvent) -> Result<(), BoxError> {
        let body = serde_json::to_vec(&Recorded::of(evt))?;
        let properties = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_delivery_mode(2)
            .with_message_id(format!("{}:{}:recorded", evt.order_id, evt.event_type).into());
        let confirmation = self
            .confirms
            .basic_publish(
                "".into(),
                self.followup.as_str().into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                &body,
                properties,
            )
            .await?
            .await?;
        match confirmation {
            Confirmation::Ack(None) => Ok(()),
            Confirmation::Ack(Some(_)) => Err("follow-up returned: unroutable".into()),
            _ => Err("follow-up nacked by the broker".into()),
        }
    }
}

/// One delivery: the transaction, then the follow-up, then the ack.
pub(crate) async fn handle_hand_tx(hand: &HandTx, delivery: Delivery) {
    let evt: OrderEvent = match serde_json::from_slice(&delivery.data) {
        Ok(evt) => evt,
        Err(_) => return reject(&delivery).await,
    };
    match hand.store(&evt).await {
        Ok(Stored::Committed) => {}
        Ok(Stored::Duplicate) => return ack(&delivery).await,
        Ok(Stored::Invalid) => return reject(&delivery).await,
        Err(_) => return requeue(&delivery).await,
    }
    match hand.send_followup(&evt).await {
        Ok(()) => ack(&delivery).await,
        // Committed but not sent: the redelivery is a duplicate, so this
        // follow-up is lost (there is no outbox); the parent's count of the
        // follow-up queue reports it.
        Err(_) => requeue(&delivery).await,
    }
}

// ---- the parent's side: the tables ----

/// Variant (t)'s tables in the database at `url`, for one parent. Every
/// call opens its own connection and closes it, so the parent holds none
/// while a consumer runs (each may use up to 100).
pub(crate) struct Database {
    url: String,
    tables: Tables,
}

impl Database {
    /// Creates the tables (dropping leftovers of the same name).
    pub(crate) async fn create(url: &str, tag: &str) -> Result<Self, BoxError> {
        let db = Database {
            url: url.to_owned(),
            tables: Tables::new(tag),
        };
        let Tables { effects, inbox } = &db.tables;
        db.execute(&format!(
            "DROP TABLE IF EXISTS {effects}, {inbox};
             CREATE TABLE {effects} (
                 order_id     TEXT NOT NULL,
                 event_type   TEXT NOT NULL,
                 amount_cents BIGINT NOT NULL
             );
             CREATE TABLE {inbox} (
                 consumer    TEXT NOT NULL,
                 key         TEXT NOT NULL,
                 received_at TIMESTAMPTZ NOT NULL DEFAULT now(),
                 PRIMARY KEY (consumer, key)
             );
             CREATE INDEX ON {inbox} (received_at);"
        ))
        .await?;
        Ok(db)
    }

    async fn connect(&self) -> Result<PgConnection, BoxError> {
        PgConnection::connect(&self.url).await.map_err(|e| {
            format!(
                "variant t: cannot connect to PostgreSQL (--database-url, without its password: {}): {e}",
                without_password(&self.url)
            )
            .into()
        })
    }

    async fn execute(&self, sql: &str) -> Result<(), BoxError> {
        let mut conn = self.connect().await?;
        sqlx::raw_sql(sql).execute(&mut conn).await?;
        conn.close().await?;
        Ok(())
    }

    /// Empties the tables before a run.
    pub(crate) async fn reset(&self) -> Result<(), BoxError> {
        let Tables { effects, inbox } = &self.tables;
        self.execute(&format!("TRUNCATE {effects}, {inbox}")).await
    }

    pub(crate) async fn drop_tables(&self) -> Result<(), BoxError> {
        let Tables { effects, inbox } = &self.tables;
        self.execute(&format!("DROP TABLE IF EXISTS {effects}, {inbox}"))
            .await
    }

    /// After a run on `queue`: checks that `role` left exactly `n` effect
    /// rows and `n` inbox rows (and for mqkit `n` outbox rows, all sent),
    /// and deletes mqkit's rows of the queue whatever they were.
    pub(crate) async fn check(&self, queue: &str, role: Role, n: u64) -> Result<(), BoxError> {
        let mut conn = self.connect().await?;
        let count_effects = format!("SELECT COUNT(*) FROM {}", self.tables.effects);
        let effects: i64 = sqlx::query_scalar(&count_effects)
            .fetch_one(&mut conn)
            .await?;
        let mut problems = Vec::new();
        if effects != n as i64 {
            problems.push(format!("{effects} effect rows"));
        }
        match role {
            Role::Hand => {
                let count_inbox = format!(
                    "SELECT COUNT(*) FROM {} WHERE consumer = $1",
                    self.tables.inbox
                );
                let inbox: i64 = sqlx::query_scalar(&count_inbox)
                    .bind(queue)
                    .fetch_one(&mut conn)
                    .await?;
                if inbox != n as i64 {
                    problems.push(format!("{inbox} inbox rows"));
                }
            }
            Role::Mqkit => {
                let (inbox, outbox, unsent): (i64, i64, i64) = sqlx::query_as(
                    "SELECT (SELECT COUNT(*) FROM mqkit_inbox WHERE consumer = $1),
                            COUNT(*), COUNT(*) FILTER (WHERE sent_at IS NULL)
                     FROM mqkit_outbox WHERE consumer = $1",
                )
                .bind(queue)
                .fetch_one(&mut conn)
                .await?;
                sqlx::query("DELETE FROM mqkit_inbox WHERE consumer = $1")
                    .bind(queue)
                    .execute(&mut conn)
                    .await?;
                sqlx::query("DELETE FROM mqkit_outbox WHERE consumer = $1")
                    .bind(queue)
                    .execute(&mut conn)
                    .await?;
                if inbox != n as i64 {
                    problems.push(format!("{inbox} mqkit_inbox rows"));
                }
                if outbox != n as i64 || unsent != 0 {
                    problems.push(format!("{outbox} mqkit_outbox rows ({unsent} unsent)"));
                }
            }
        }
        conn.close().await?;
        if problems.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{queue}: expected {n} of each, found {}",
                problems.join(", ")
            )
            .into())
        }
    }
}

/// `url` with the password of its user info replaced by `***`.
fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.split_once('@') {
        Some((user, host)) if user.contains(':') => {
            let name = user.split(':').next().unwrap_or_default();
            format!("{scheme}://{name}:***@{host}")
        }
        _ => url.to_owned(),
    }
}
