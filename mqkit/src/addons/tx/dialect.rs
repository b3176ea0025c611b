//! The SQL of transactional consumers, once per database: the sealed
//! [`Dialect`] trait behind [`TxDatabase`](super::TxDatabase), implemented
//! for PostgreSQL and MySQL/MariaDB. Every value is a bound parameter; the
//! only SQL assembled at run time is a list of `?` placeholders (MySQL has
//! no array parameters).

// The sealed-trait pattern: `Dialect` and the row types in its signatures
// are public items of this private module, unnameable outside the crate.
#![allow(unreachable_pub)]

use std::time::Duration;

use sqlx::{MySql, Pool, Postgres};

use crate::addons::migrate::{self, Migration};
use crate::core::idempotency::BoxFuture;
use crate::core::inbox::DatabaseKind;

/// An outbox row to insert.
#[derive(Debug)]
pub struct NewRow<'a> {
    pub batch: uuid::Uuid,
    pub consumer: &'a str,
    pub message_id: &'a str,
    pub exchange: &'a str,
    pub routing_key: &'a str,
    pub properties: &'a str,
    pub body: &'a [u8],
    pub mandatory: bool,
}

/// An unsent outbox row, as the sweeper reads it.
#[derive(Debug, Clone)]
pub struct OutboxRow {
    pub id: i64,
    pub batch: String,
    pub exchange: String,
    pub routing_key: String,
    pub properties: String,
    pub body: Vec<u8>,
    pub mandatory: bool,
    pub attempts: i32,
}

type Result<T> = std::result::Result<T, sqlx::Error>;

/// The statements mqkit runs, for one database. Sealed: implemented for
/// [`Postgres`] and [`MySql`] only.
pub trait Dialect: sqlx::Database + Sized {
    /// Which database this is.
    const KIND: DatabaseKind;

    /// A pool of `size` connections with `pool`'s options, for the relay,
    /// the sweeper and retention (on MySQL in READ COMMITTED: InnoDB's
    /// repeatable read would keep locks on every unsent row a sweep scans,
    /// not only those it takes).
    fn background_pool(pool: &Pool<Self>, size: u32) -> Pool<Self>;

    /// Creates the tables (once per schema version, under a lock so that
    /// instances starting together do not race).
    fn migrate(pool: &Pool<Self>) -> BoxFuture<'_, Result<()>>;

    /// Inserts the inbox row unless it exists; `false` = it was committed
    /// before (a copy in flight makes this wait for that one's end).
    fn insert_inbox<'c>(
        conn: &'c mut Self::Connection,
        consumer: &'c str,
        key: &'c str,
        message_id: Option<&'c str>,
        claim: &'c str,
    ) -> BoxFuture<'c, Result<bool>>;

    /// Whether this transaction still holds its inbox row (`claim` is the
    /// id it inserted it with): `false`, or an error, when the transaction
    /// was aborted or ended inside the handler.
    fn holds_claim<'c>(
        conn: &'c mut Self::Connection,
        consumer: &'c str,
        key: &'c str,
        claim: &'c str,
    ) -> BoxFuture<'c, Result<bool>>;

    /// Inserts an outbox row and returns its id.
    fn insert_outbox<'c>(
        conn: &'c mut Self::Connection,
        row: &'c NewRow<'c>,
    ) -> BoxFuture<'c, Result<i64>>;

    /// Locks those of `ids` that are unsent and not locked by another
    /// relay or sweeper (`FOR UPDATE SKIP LOCKED`), in id order.
    fn lock_unsent<'c>(
        conn: &'c mut Self::Connection,
        ids: &'c [i64],
    ) -> BoxFuture<'c, Result<Vec<i64>>>;

    /// Locks up to `limit` unsent rows created more than `age` ago whose
    /// back-off has passed, skipping rows locked elsewhere, in id order:
    /// (id, batch) of each, the sweeper's candidates.
    fn lock_due(
        conn: &mut Self::Connection,
        age: Duration,
        limit: i64,
    ) -> BoxFuture<'_, Result<Vec<(i64, String)>>>;

    /// Locks the unsent rows of `batch` not locked elsewhere, in id order,
    /// and counts all its unsent rows: the batch is this transaction's to
    /// publish only when the two agree.
    fn lock_batch<'c>(
        conn: &'c mut Self::Connection,
        batch: &'c str,
    ) -> BoxFuture<'c, Result<(Vec<OutboxRow>, i64)>>;

    /// Marks rows sent.
    fn mark_sent<'c>(conn: &'c mut Self::Connection, ids: &'c [i64]) -> BoxFuture<'c, Result<()>>;

    /// Records a failed publish of rows: one more attempt, the error, and
    /// no new try before `retry_in`.
    fn mark_failed<'c>(
        conn: &'c mut Self::Connection,
        ids: &'c [i64],
        error: &'c str,
        retry_in: Duration,
    ) -> BoxFuture<'c, Result<()>>;

    /// Unsent rows created more than `age` ago (what the sweeper has left).
    fn count_unsent(pool: &Pool<Self>, age: Duration) -> BoxFuture<'_, Result<i64>>;

    /// Deletes up to `limit` rows sent more than `age` ago.
    fn delete_sent(pool: &Pool<Self>, age: Duration, limit: i64) -> BoxFuture<'_, Result<u64>>;

    /// Deletes up to `limit` inbox rows of `consumer` older than `age`.
    fn delete_inbox<'c>(
        pool: &'c Pool<Self>,
        consumer: &'c str,
        age: Duration,
        limit: i64,
    ) -> BoxFuture<'c, Result<u64>>;
}

/// Migrations of the transactional tables: (version, name, PostgreSQL,
/// MySQL). Versions 100 and up, so they share `mqkit_schema_migrations`
/// with the dead-letter archive's.
const PG_MIGRATIONS: &[Migration] = &[(
    101,
    "tx_inbox_outbox",
    include_str!("../../../migrations/tx/postgres.sql"),
)];
const MYSQL_MIGRATIONS: &[Migration] = &[(
    101,
    "tx_inbox_outbox",
    include_str!("../../../migrations/tx/mysql.sql"),
)];

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

type Row = (i64, String, String, String, String, Vec<u8>, bool, i32);

fn outbox_row(r: Row) -> OutboxRow {
    let (id, batch, exchange, routing_key, properties, body, mandatory, attempts) = r;
    OutboxRow {
        id,
        batch,
        exchange,
        routing_key,
        properties,
        body,
        mandatory,
        attempts,
    }
}

impl Dialect for Postgres {
    const KIND: DatabaseKind = DatabaseKind::Postgres;

    fn background_pool(pool: &Pool<Self>, size: u32) -> Pool<Self> {
        super::pool_options(size).connect_lazy_with((*pool.connect_options()).clone())
    }

    fn migrate(pool: &Pool<Self>) -> BoxFuture<'_, Result<()>> {
        Box::pin(pg_migrate(pool))
    }

    fn insert_inbox<'c>(
        conn: &'c mut Self::Connection,
        consumer: &'c str,
        key: &'c str,
        message_id: Option<&'c str>,
        claim: &'c str,
    ) -> BoxFuture<'c, Result<bool>> {
        Box::pin(async move {
            let done = sqlx::query(
                "INSERT INTO mqkit_inbox (consumer, dedup_key, message_id, claim_id) VALUES ($1, $2, $3, $4::uuid) ON CONFLICT DO NOTHING",
            )
            .bind(consumer)
            .bind(key)
            .bind(message_id)
            .bind(claim)
            .execute(conn)
            .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    fn holds_claim<'c>(
        conn: &'c mut Self::Connection,
        consumer: &'c str,
        key: &'c str,
        claim: &'c str,
    ) -> BoxFuture<'c, Result<bool>> {
        Box::pin(async move {
            let n: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM mqkit_inbox WHERE consumer = $1 AND dedup_key = $2 AND claim_id = $3::uuid",
            )
            .bind(consumer)
            .bind(key)
            .bind(claim)
            .fetch_one(conn)
            .await?;
            Ok(n == 1)
        })
    }

    fn insert_outbox<'c>(
        conn: &'c mut Self::Connection,
        row: &'c NewRow<'c>,
    ) -> BoxFuture<'c, Result<i64>> {
        Box::pin(async move {
            sqlx::query_scalar(
                "INSERT INTO mqkit_outbox (batch_id, consumer, message_id, exchange, routing_key, properties, body, mandatory) \
                 VALUES ($1::uuid, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
            )
            .bind(row.batch.to_string())
            .bind(row.consumer)
            .bind(row.message_id)
            .bind(row.exchange)
            .bind(row.routing_key)
            .bind(row.properties)
            .bind(row.body)
            .bind(row.mandatory)
            .fetch_one(conn)
            .await
        })
    }

    fn lock_unsent<'c>(
        conn: &'c mut Self::Connection,
        ids: &'c [i64],
    ) -> BoxFuture<'c, Result<Vec<i64>>> {
        Box::pin(async move {
            sqlx::query_scalar(
                "SELECT id FROM mqkit_outbox WHERE id = ANY($1) AND sent_at IS NULL ORDER BY id FOR UPDATE SKIP LOCKED",
            )
            .bind(ids)
            .fetch_all(conn)
            .await
        })
    }

    fn lock_due(
        conn: &mut Self::Connection,
        age: Duration,
        limit: i64,
    ) -> BoxFuture<'_, Result<Vec<(i64, String)>>> {
        Box::pin(async move {
            sqlx::query_as(
                "SELECT id, batch_id::text FROM mqkit_outbox \
                 WHERE sent_at IS NULL AND created_at < now() - make_interval(secs => $1) AND next_attempt_at <= now() \
                 ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED",
            )
            .bind(age.as_secs_f64())
            .bind(limit)
            .fetch_all(conn)
            .await
        })
    }

    fn lock_batch<'c>(
        conn: &'c mut Self::Connection,
        batch: &'c str,
    ) -> BoxFuture<'c, Result<(Vec<OutboxRow>, i64)>> {
        Box::pin(async move {
            let rows: Vec<Row> = sqlx::query_as(
                "SELECT id, batch_id::text, exchange, routing_key, properties, body, mandatory, attempts \
                 FROM mqkit_outbox WHERE batch_id = $1::uuid AND sent_at IS NULL \
                 ORDER BY id FOR UPDATE SKIP LOCKED",
            )
            .bind(batch)
            .fetch_all(&mut *conn)
            .await?;
            let unsent: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM mqkit_outbox WHERE batch_id = $1::uuid AND sent_at IS NULL",
            )
            .bind(batch)
            .fetch_one(&mut *conn)
            .await?;
            Ok((rows.into_iter().map(outbox_row).collect(), unsent))
        })
    }

    fn mark_sent<'c>(conn: &'c mut Self::Connection, ids: &'c [i64]) -> BoxFuture<'c, Result<()>> {
        Box::pin(async move {
            sqlx::query("UPDATE mqkit_outbox SET sent_at = now() WHERE id = ANY($1)")
                .bind(ids)
                .execute(conn)
                .await?;
            Ok(())
        })
    }

    fn mark_failed<'c>(
        conn: &'c mut Self::Connection,
        ids: &'c [i64],
        error: &'c str,
        retry_in: Duration,
    ) -> BoxFuture<'c, Result<()>> {
        Box::pin(async move {
            sqlx::query(
                "UPDATE mqkit_outbox SET attempts = attempts + 1, last_error = $2, \
                 next_attempt_at = now() + make_interval(secs => $3) WHERE id = ANY($1)",
            )
            .bind(ids)
            .bind(error)
            .bind(retry_in.as_secs_f64())
            .execute(conn)
            .await?;
            Ok(())
        })
    }

    fn count_unsent(pool: &Pool<Self>, age: Duration) -> BoxFuture<'_, Result<i64>> {
        Box::pin(async move {
            sqlx::query_scalar(
                "SELECT COUNT(*) FROM mqkit_outbox WHERE sent_at IS NULL AND created_at < now() - make_interval(secs => $1)",
            )
            .bind(age.as_secs_f64())
            .fetch_one(pool)
            .await
        })
    }

    fn delete_sent(pool: &Pool<Self>, age: Duration, limit: i64) -> BoxFuture<'_, Result<u64>> {
        Box::pin(async move {
            let done = sqlx::query(
                "DELETE FROM mqkit_outbox WHERE id IN (\
                    SELECT id FROM mqkit_outbox WHERE sent_at IS NOT NULL AND sent_at < now() - make_interval(secs => $1) \
                    ORDER BY sent_at LIMIT $2)",
            )
            .bind(age.as_secs_f64())
            .bind(limit)
            .execute(pool)
            .await?;
            Ok(done.rows_affected())
        })
    }

    fn delete_inbox<'c>(
        pool: &'c Pool<Self>,
        consumer: &'c str,
        age: Duration,
        limit: i64,
    ) -> BoxFuture<'c, Result<u64>> {
        Box::pin(async move {
            let done = sqlx::query(
                "DELETE FROM mqkit_inbox WHERE (consumer, dedup_key) IN (\
                    SELECT consumer, dedup_key FROM mqkit_inbox \
                    WHERE consumer = $1 AND received_at < now() - make_interval(secs => $2) \
                    ORDER BY received_at LIMIT $3)",
            )
            .bind(consumer)
            .bind(age.as_secs_f64())
            .bind(limit)
            .execute(pool)
            .await?;
            Ok(done.rows_affected())
        })
    }
}

async fn pg_migrate(pool: &Pool<Postgres>) -> Result<()> {
    migrate::postgres(pool, PG_MIGRATIONS, "transactional-consumer").await?;
    sqlx::Executor::execute(pool, PROBE)
        .await
        .map(|_| ())
        .map_err(probe_failed)
}

async fn mysql_migrate(pool: &Pool<MySql>) -> Result<()> {
    migrate::mysql(pool, MYSQL_MIGRATIONS, "transactional-consumer").await?;
    sqlx::Executor::execute(pool, PROBE)
        .await
        .map(|_| ())
        .map_err(probe_failed)
}

/// Selects every column this version uses, so startup fails when the
/// tables exist without one (made by something else, or by an unreleased
/// build of mqkit), instead of every delivery being requeued for it.
const PROBE: &str = "SELECT i.consumer, i.dedup_key, i.message_id, i.claim_id, i.received_at, \
        o.id, o.batch_id, o.consumer, o.message_id, o.exchange, o.routing_key, o.properties, \
        o.body, o.mandatory, o.created_at, o.sent_at, o.attempts, o.next_attempt_at, o.last_error \
     FROM mqkit_inbox i, mqkit_outbox o WHERE 1 = 0";

fn probe_failed(e: sqlx::Error) -> sqlx::Error {
    sqlx::Error::Protocol(format!(
        "tables mqkit_inbox / mqkit_outbox exist but lack columns this version of mqkit uses ({e}); they were not created by this version's migrations: rename or drop them (and their row in mqkit_schema_migrations) and start again"
    ))
}

/// `?, ?, …` for `n` values (at least one, so `IN ()` never happens).
fn placeholders(n: usize) -> String {
    let mut s = "?, ".repeat(n.max(1));
    s.truncate(s.len() - 2);
    s
}

impl Dialect for MySql {
    const KIND: DatabaseKind = DatabaseKind::MySql;

    fn background_pool(pool: &Pool<Self>, size: u32) -> Pool<Self> {
        super::pool_options(size)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    sqlx::Executor::execute(
                        conn,
                        "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
                    )
                    .await
                    .map(|_| ())
                })
            })
            .connect_lazy_with((*pool.connect_options()).clone())
    }

    fn migrate(pool: &Pool<Self>) -> BoxFuture<'_, Result<()>> {
        Box::pin(mysql_migrate(pool))
    }

    fn insert_inbox<'c>(
        conn: &'c mut Self::Connection,
        consumer: &'c str,
        key: &'c str,
        message_id: Option<&'c str>,
        claim: &'c str,
    ) -> BoxFuture<'c, Result<bool>> {
        Box::pin(async move {
            // INSERT IGNORE waits on a copy's uncommitted row, then inserts
            // (it rolled back) or ignores (it committed).
            let done = sqlx::query(
                "INSERT IGNORE INTO mqkit_inbox (consumer, dedup_key, message_id, claim_id) VALUES (?, ?, ?, ?)",
            )
            .bind(consumer)
            .bind(key)
            .bind(message_id)
            .bind(claim)
            .execute(conn)
            .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    fn holds_claim<'c>(
        conn: &'c mut Self::Connection,
        consumer: &'c str,
        key: &'c str,
        claim: &'c str,
    ) -> BoxFuture<'c, Result<bool>> {
        Box::pin(async move {
            // In a transaction that a deadlock ended, this runs in
            // autocommit and finds no row with this claim.
            let n: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM mqkit_inbox WHERE consumer = ? AND dedup_key = ? AND claim_id = ?",
            )
            .bind(consumer)
            .bind(key)
            .bind(claim)
            .fetch_one(conn)
            .await?;
            Ok(n == 1)
        })
    }

    fn insert_outbox<'c>(
        conn: &'c mut Self::Connection,
        row: &'c NewRow<'c>,
    ) -> BoxFuture<'c, Result<i64>> {
        Box::pin(async move {
            let done = sqlx::query(
                "INSERT INTO mqkit_outbox (batch_id, consumer, message_id, exchange, routing_key, properties, body, mandatory) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(row.batch.to_string())
            .bind(row.consumer)
            .bind(row.message_id)
            .bind(row.exchange)
            .bind(row.routing_key)
            .bind(row.properties)
            .bind(row.body)
            .bind(row.mandatory)
            .execute(conn)
            .await?;
            i64::try_from(done.last_insert_id())
                .map_err(|_| sqlx::Error::Protocol("outbox id out of range".into()))
        })
    }

    fn lock_unsent<'c>(
        conn: &'c mut Self::Connection,
        ids: &'c [i64],
    ) -> BoxFuture<'c, Result<Vec<i64>>> {
        Box::pin(async move {
            let sql = format!(
                "SELECT id FROM mqkit_outbox WHERE id IN ({}) AND sent_at IS NULL ORDER BY id FOR UPDATE SKIP LOCKED",
                placeholders(ids.len())
            );
            let mut q = sqlx::query_scalar(&sql);
            for id in ids {
                q = q.bind(id);
            }
            q.fetch_all(conn).await
        })
    }

    fn lock_due(
        conn: &mut Self::Connection,
        age: Duration,
        limit: i64,
    ) -> BoxFuture<'_, Result<Vec<(i64, String)>>> {
        Box::pin(async move {
            sqlx::query_as(
                "SELECT id, CAST(batch_id AS CHAR) FROM mqkit_outbox \
                 WHERE sent_at IS NULL AND created_at < NOW(6) - INTERVAL ? MICROSECOND AND next_attempt_at <= NOW(6) \
                 ORDER BY id LIMIT ? FOR UPDATE SKIP LOCKED",
            )
            .bind(micros(age))
            .bind(limit)
            .fetch_all(conn)
            .await
        })
    }

    fn lock_batch<'c>(
        conn: &'c mut Self::Connection,
        batch: &'c str,
    ) -> BoxFuture<'c, Result<(Vec<OutboxRow>, i64)>> {
        Box::pin(async move {
            // The binary collation makes the text columns VARBINARY to the
            // client: converted back to text here.
            let rows: Vec<Row> = sqlx::query_as(
                "SELECT id, CAST(batch_id AS CHAR), CAST(exchange AS CHAR), CAST(routing_key AS CHAR), properties, body, mandatory, attempts \
                 FROM mqkit_outbox WHERE batch_id = ? AND sent_at IS NULL \
                 ORDER BY id FOR UPDATE SKIP LOCKED",
            )
            .bind(batch)
            .fetch_all(&mut *conn)
            .await?;
            let unsent: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM mqkit_outbox WHERE batch_id = ? AND sent_at IS NULL",
            )
            .bind(batch)
            .fetch_one(&mut *conn)
            .await?;
            Ok((rows.into_iter().map(outbox_row).collect(), unsent))
        })
    }

    fn mark_sent<'c>(conn: &'c mut Self::Connection, ids: &'c [i64]) -> BoxFuture<'c, Result<()>> {
        Box::pin(async move {
            let sql = format!(
                "UPDATE mqkit_outbox SET sent_at = NOW(6) WHERE id IN ({})",
                placeholders(ids.len())
            );
            let mut q = sqlx::query(&sql);
            for id in ids {
                q = q.bind(id);
            }
            q.execute(conn).await?;
            Ok(())
        })
    }

    fn mark_failed<'c>(
        conn: &'c mut Self::Connection,
        ids: &'c [i64],
        error: &'c str,
        retry_in: Duration,
    ) -> BoxFuture<'c, Result<()>> {
        Box::pin(async move {
            let sql = format!(
                "UPDATE mqkit_outbox SET attempts = attempts + 1, last_error = ?, \
                 next_attempt_at = NOW(6) + INTERVAL ? MICROSECOND WHERE id IN ({})",
                placeholders(ids.len())
            );
            let mut q = sqlx::query(&sql).bind(error).bind(micros(retry_in));
            for id in ids {
                q = q.bind(id);
            }
            q.execute(conn).await?;
            Ok(())
        })
    }

    fn count_unsent(pool: &Pool<Self>, age: Duration) -> BoxFuture<'_, Result<i64>> {
        Box::pin(async move {
            sqlx::query_scalar(
                "SELECT COUNT(*) FROM mqkit_outbox WHERE sent_at IS NULL AND created_at < NOW(6) - INTERVAL ? MICROSECOND",
            )
            .bind(micros(age))
            .fetch_one(pool)
            .await
        })
    }

    fn delete_sent(pool: &Pool<Self>, age: Duration, limit: i64) -> BoxFuture<'_, Result<u64>> {
        Box::pin(async move {
            let done = sqlx::query(
                "DELETE FROM mqkit_outbox WHERE sent_at < NOW(6) - INTERVAL ? MICROSECOND ORDER BY sent_at LIMIT ?",
            )
            .bind(micros(age))
            .bind(limit)
            .execute(pool)
            .await?;
            Ok(done.rows_affected())
        })
    }

    fn delete_inbox<'c>(
        pool: &'c Pool<Self>,
        consumer: &'c str,
        age: Duration,
        limit: i64,
    ) -> BoxFuture<'c, Result<u64>> {
        Box::pin(async move {
            let done = sqlx::query(
                "DELETE FROM mqkit_inbox WHERE consumer = ? AND received_at < NOW(6) - INTERVAL ? MICROSECOND \
                 ORDER BY received_at LIMIT ?",
            )
            .bind(consumer)
            .bind(micros(age))
            .bind(limit)
            .execute(pool)
            .await?;
            Ok(done.rows_affected())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::placeholders;

    #[test]
    fn placeholder_lists() {
        assert_eq!(placeholders(1), "?");
        assert_eq!(placeholders(3), "?, ?, ?");
        assert_eq!(placeholders(0), "?");
    }
}
