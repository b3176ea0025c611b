//! The archive table `mqkit_dead_letters` on MySQL/MariaDB or PostgreSQL
//! (the URL's scheme decides): [`ArchiveDb`] (the pool, with every query the
//! archiver, retention and replay run, each a fixed SQL text with bound
//! parameters), [`Row`] (one dead letter as the archiver stores it),
//! [`Stored`] (a row as replay and the console read it back), [`Filter`]
//! (which rows), and the schema migrations from `mqkit/migrations/dlq/`.
//! The console's own reads (one row, a page of the newest) are in
//! `browse.rs`.

#[cfg(feature = "dlq")]
use std::collections::HashMap;
use std::str::FromStr as _;
use std::time::Duration;
#[cfg(feature = "dlq")]
use std::time::UNIX_EPOCH;

use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

#[cfg(feature = "dlq")]
use super::letter::{DeadLetter, business_key, headers_json, properties_json};
use crate::addons::migrate::{self, Migration};
#[cfg(feature = "dlq")]
use crate::core::headers::Properties;
#[cfg(feature = "dlq")]
use crate::core::spec::ConsumerSpec;
#[cfg(feature = "dlq")]
use crate::core::text::truncate;

/// Error texts are cut to this many bytes in the archive.
#[cfg(feature = "dlq")]
const MAX_ERROR_TEXT: usize = 16 * 1024;

/// How long getting a database connection may take.
const DB_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// Migrations of the archive schema (versions below 100; the transactional
/// tables' start at 100), applied in order at startup.
const MYSQL_MIGRATIONS: &[Migration] = &[
    (
        1,
        "dlq_archive",
        include_str!("../../../migrations/dlq/mysql/0001_archive.sql"),
    ),
    (
        2,
        "dlq_replay_retention",
        include_str!("../../../migrations/dlq/mysql/0002_replay_retention.sql"),
    ),
];
const PG_MIGRATIONS: &[Migration] = &[
    (
        1,
        "dlq_archive",
        include_str!("../../../migrations/dlq/postgres/0001_archive.sql"),
    ),
    (
        2,
        "dlq_replay_retention",
        include_str!("../../../migrations/dlq/postgres/0002_replay_retention.sql"),
    ),
];

/// The example URLs an error about the archive URL shows.
pub(crate) const URL_FORMS: &str =
    "mysql://user:password@host:3306/database or postgres://user:password@host:5432/database";

/// The archive database.
#[derive(Debug, Clone)]
pub(crate) enum ArchiveDb {
    /// `mysql://` or `mariadb://`.
    MySql(MySqlPool),
    /// `postgres://` or `postgresql://`.
    Postgres(PgPool),
}

impl ArchiveDb {
    /// A lazy pool of at most `max_connections` for `url`; nothing is
    /// connected yet. `Err` is the problem with the URL (the caller scrubs
    /// the password from it).
    pub(crate) fn connect_lazy(url: &str, max_connections: u32) -> Result<ArchiveDb, String> {
        let (scheme, rest) = url.trim().split_once("://").unwrap_or(("", ""));
        match scheme.to_ascii_lowercase().as_str() {
            "mysql" | "mariadb" => {
                // sqlx knows only mysql://.
                let options = MySqlConnectOptions::from_str(&format!("mysql://{rest}"))
                    .map_err(|e| format!("cannot parse it ({e}); use {URL_FORMS}"))?;
                Ok(ArchiveDb::MySql(
                    MySqlPoolOptions::new()
                        .max_connections(max_connections)
                        .min_connections(0)
                        .acquire_timeout(DB_ACQUIRE_TIMEOUT)
                        .connect_lazy_with(options),
                ))
            }
            "postgres" | "postgresql" => {
                let options = PgConnectOptions::from_str(url.trim())
                    .map_err(|e| format!("cannot parse it ({e}); use {URL_FORMS}"))?;
                Ok(ArchiveDb::Postgres(
                    PgPoolOptions::new()
                        .max_connections(max_connections)
                        .min_connections(0)
                        .acquire_timeout(DB_ACQUIRE_TIMEOUT)
                        .connect_lazy_with(options),
                ))
            }
            _ => Err(format!(
                "not a MySQL/MariaDB or PostgreSQL URL; use {URL_FORMS}"
            )),
        }
    }

    /// Opens one connection now, so that a refused connection or login is
    /// reported as itself (a lazy pool's first query would only say that
    /// it timed out waiting for a connection).
    #[cfg_attr(not(feature = "cli"), allow(dead_code))]
    pub(crate) async fn check(&self) -> Result<(), sqlx::Error> {
        match self {
            ArchiveDb::MySql(pool) => {
                let options = (*pool.connect_options()).clone();
                sqlx::ConnectOptions::connect(&options).await?;
            }
            ArchiveDb::Postgres(pool) => {
                let options = (*pool.connect_options()).clone();
                sqlx::ConnectOptions::connect(&options).await?;
            }
        }
        Ok(())
    }

    /// `MySQL/MariaDB` or `PostgreSQL`, for logs.
    #[cfg_attr(not(feature = "dlq"), allow(dead_code))]
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            ArchiveDb::MySql(_) => "MySQL/MariaDB",
            ArchiveDb::Postgres(_) => "PostgreSQL",
        }
    }

    /// Creates or upgrades the table (idempotent; one instance at a time).
    pub(crate) async fn migrate(&self) -> Result<(), sqlx::Error> {
        match self {
            ArchiveDb::MySql(pool) => {
                migrate::mysql(pool, MYSQL_MIGRATIONS, "dead-letter archive").await
            }
            ArchiveDb::Postgres(pool) => {
                migrate::postgres(pool, PG_MIGRATIONS, "dead-letter archive").await
            }
        }
    }

    /// Closes the pool.
    pub(crate) async fn close(&self) {
        match self {
            ArchiveDb::MySql(pool) => pool.close().await,
            ArchiveDb::Postgres(pool) => pool.close().await,
        }
    }

    /// Stores a row; `true` if it is new, `false` if it was archived before
    /// (same original queue, message id and failed-at).
    #[cfg(feature = "dlq")]
    pub(crate) async fn insert(&self, row: &Row) -> Result<bool, sqlx::Error> {
        let attempts = row.attempts.map(i64::from);
        let done = match self {
            ArchiveDb::MySql(pool) => sqlx::query(
                "INSERT IGNORE INTO mqkit_dead_letters \
                 (original_queue, message_id, failed_at, dlq, business_key, error_kind, error_text, attempts, headers, properties, body, archived_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, UTC_TIMESTAMP(3))",
            )
            .bind(&row.original_queue)
            .bind(&row.message_id)
            .bind(&row.failed_at)
            .bind(&row.dlq)
            .bind(&row.business_key)
            .bind(&row.error_kind)
            .bind(&row.error_text)
            .bind(attempts)
            .bind(&row.headers)
            .bind(&row.properties)
            .bind(&row.body)
            .execute(pool)
            .await?
            .rows_affected(),
            ArchiveDb::Postgres(pool) => sqlx::query(
                "INSERT INTO mqkit_dead_letters \
                 (original_queue, message_id, failed_at, dlq, business_key, error_kind, error_text, attempts, headers, properties, body) \
                 VALUES ($1, $2, $3::timestamp, $4, $5, $6, $7, $8, $9, $10, $11) \
                 ON CONFLICT (original_queue, message_id, failed_at) DO NOTHING",
            )
            .bind(&row.original_queue)
            .bind(&row.message_id)
            .bind(&row.failed_at)
            .bind(&row.dlq)
            .bind(&row.business_key)
            .bind(&row.error_kind)
            .bind(&row.error_text)
            .bind(attempts)
            .bind(&row.headers)
            .bind(&row.properties)
            .bind(&row.body)
            .execute(pool)
            .await?
            .rows_affected(),
        };
        Ok(done == 1)
    }

    /// Deletes up to `limit` rows archived more than `retention` ago, oldest
    /// first, through the `archived_at` index; how many went.
    #[cfg(feature = "dlq")]
    pub(crate) async fn delete_expired(
        &self,
        retention: Duration,
        limit: i64,
    ) -> Result<u64, sqlx::Error> {
        let micros = i64::try_from(retention.as_micros()).unwrap_or(i64::MAX);
        let done = match self {
            ArchiveDb::MySql(pool) => sqlx::query(
                "DELETE FROM mqkit_dead_letters \
                 WHERE archived_at < UTC_TIMESTAMP(3) - INTERVAL ? MICROSECOND \
                 ORDER BY archived_at LIMIT ?",
            )
            .bind(micros)
            .bind(limit)
            .execute(pool)
            .await?
            .rows_affected(),
            ArchiveDb::Postgres(pool) => sqlx::query(
                "DELETE FROM mqkit_dead_letters WHERE id IN (\
                   SELECT id FROM mqkit_dead_letters \
                   WHERE archived_at < (clock_timestamp() AT TIME ZONE 'UTC') - make_interval(secs => $1) \
                   ORDER BY archived_at LIMIT $2)",
            )
            .bind(micros as f64 / 1e6)
            .bind(limit)
            .execute(pool)
            .await?
            .rows_affected(),
        };
        Ok(done)
    }

    /// The highest row id now (0 for an empty table): a replay goes up to
    /// it and no further, so the dead letters its own copies cause (archived
    /// while it runs, with higher ids) are not replayed in the same run.
    #[cfg_attr(not(feature = "cli"), allow(dead_code))]
    pub(crate) async fn max_id(&self) -> Result<i64, sqlx::Error> {
        let max: Option<i64> = match self {
            ArchiveDb::MySql(pool) => {
                sqlx::query_scalar("SELECT CAST(MAX(id) AS SIGNED) FROM mqkit_dead_letters")
                    .fetch_one(pool)
                    .await?
            }
            ArchiveDb::Postgres(pool) => {
                sqlx::query_scalar("SELECT MAX(id) FROM mqkit_dead_letters")
                    .fetch_one(pool)
                    .await?
            }
        };
        Ok(max.unwrap_or(0))
    }

    /// Up to `limit` rows that match `filter` with an id above `after` and
    /// at most `up_to`, in id order (the order they were archived).
    #[cfg_attr(not(feature = "cli"), allow(dead_code))]
    pub(crate) async fn select(
        &self,
        filter: &Filter,
        after: i64,
        up_to: i64,
        limit: i64,
    ) -> Result<Vec<Stored>, sqlx::Error> {
        let (kinds, text, ids) = filter.texts();
        let rows = match self {
            ArchiveDb::MySql(pool) => {
                let sql = format!(
                    "SELECT {MYSQL_COLUMNS} FROM mqkit_dead_letters WHERE id > ? AND id <= ? AND {MYSQL_FILTER} ORDER BY id LIMIT ?"
                );
                let q = sqlx::query_as::<_, StoredTuple>(&sql)
                    .bind(after)
                    .bind(up_to);
                bind_mysql_filter(q, filter, &kinds, &text, &ids)
                    .bind(limit)
                    .fetch_all(pool)
                    .await?
            }
            ArchiveDb::Postgres(pool) => {
                let sql = format!(
                    "SELECT {PG_COLUMNS} FROM mqkit_dead_letters WHERE {PG_FILTER} AND id > $9 AND id <= $10 ORDER BY id LIMIT $11"
                );
                bind_pg_filter(
                    sqlx::query_as::<_, StoredTuple>(&sql),
                    filter,
                    &kinds,
                    &text,
                )
                .bind(after)
                .bind(up_to)
                .bind(limit)
                .fetch_all(pool)
                .await?
            }
        };
        Ok(rows.into_iter().map(Stored::from).collect())
    }

    /// Records that row `id` was republished: `replayed_at` now (UTC),
    /// `replays` one higher.
    #[cfg_attr(not(feature = "cli"), allow(dead_code))]
    pub(crate) async fn mark_replayed(&self, id: i64) -> Result<(), sqlx::Error> {
        match self {
            ArchiveDb::MySql(pool) => {
                sqlx::query(
                    "UPDATE mqkit_dead_letters SET replayed_at = UTC_TIMESTAMP(3), replays = replays + 1 WHERE id = ?",
                )
                .bind(id)
                .execute(pool)
                .await?;
            }
            ArchiveDb::Postgres(pool) => {
                sqlx::query(
                    "UPDATE mqkit_dead_letters SET replayed_at = clock_timestamp() AT TIME ZONE 'UTC', replays = replays + 1 WHERE id = $1",
                )
                .bind(id)
                .execute(pool)
                .await?;
            }
        }
        Ok(())
    }

    /// Counts of the rows that match `filter` by original queue, error kind
    /// and day (UTC) of failure, with how many of them were replayed;
    /// ordered by day, queue, kind.
    #[cfg_attr(not(feature = "cli"), allow(dead_code))]
    pub(crate) async fn stats(&self, filter: &Filter) -> Result<Vec<StatsRow>, sqlx::Error> {
        let (kinds, text, ids) = filter.texts();
        let rows: Vec<(String, String, String, i64, i64)> = match self {
            ArchiveDb::MySql(pool) => {
                let sql = format!(
                    "SELECT CAST(original_queue AS CHAR) AS q, error_kind, CAST(DATE(failed_at) AS CHAR) AS day, \
                     COUNT(*), CAST(SUM(replayed_at IS NOT NULL) AS SIGNED) \
                     FROM mqkit_dead_letters WHERE {MYSQL_FILTER} \
                     GROUP BY q, error_kind, day ORDER BY day, q, error_kind"
                );
                bind_mysql_filter(sqlx::query_as(&sql), filter, &kinds, &text, &ids)
                    .fetch_all(pool)
                    .await?
            }
            ArchiveDb::Postgres(pool) => {
                let sql = format!(
                    "SELECT original_queue::text, error_kind::text, to_char(failed_at, 'YYYY-MM-DD') AS day, \
                     COUNT(*), COUNT(replayed_at) \
                     FROM mqkit_dead_letters WHERE {PG_FILTER} \
                     GROUP BY 1, 2, 3 ORDER BY 3, 1, 2"
                );
                bind_pg_filter(sqlx::query_as(&sql), filter, &kinds, &text)
                    .fetch_all(pool)
                    .await?
            }
        };
        Ok(rows
            .into_iter()
            .map(|(queue, kind, day, count, replayed)| StatsRow {
                queue,
                kind,
                day,
                count,
                replayed,
            })
            .collect())
    }
}

/// Which archived dead letters: every field that is set must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Filter {
    /// Original queue.
    pub(crate) queue: Option<String>,
    /// Error kinds (any of them); empty = every kind.
    pub(crate) kinds: Vec<String>,
    /// Failed at or after, `YYYY-MM-DD HH:MM:SS.mmm` UTC.
    pub(crate) since: Option<String>,
    /// Failed before, `YYYY-MM-DD HH:MM:SS.mmm` UTC.
    pub(crate) until: Option<String>,
    /// Business key: the stored `mqkit:idem:{queue}:…` key, or its part
    /// after the queue (the idempotency fields as the consumer joins them).
    pub(crate) key: Option<String>,
    /// Text the error contains (case-insensitive).
    pub(crate) text: Option<String>,
    /// Rows replayed before too (`--again`); else only those never replayed.
    pub(crate) include_replayed: bool,
    /// Only these row ids (the console's selection); empty = any id.
    pub(crate) ids: Vec<i64>,
}

impl Filter {
    /// The kinds, the error text and (for MySQL) the ids as the bound
    /// texts of the filter SQL: comma-separated, `''` for none.
    pub(super) fn texts(&self) -> (String, String, String) {
        let ids: Vec<String> = self.ids.iter().map(i64::to_string).collect();
        (
            self.kinds.join(","),
            self.text.clone().unwrap_or_default(),
            ids.join(","),
        )
    }
}

/// One line of [`ArchiveDb::stats`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StatsRow {
    pub(crate) queue: String,
    pub(crate) kind: String,
    /// `YYYY-MM-DD`, UTC.
    pub(crate) day: String,
    pub(crate) count: i64,
    pub(crate) replayed: i64,
}

/// An archived dead letter as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stored {
    pub(crate) id: i64,
    pub(crate) original_queue: String,
    pub(crate) message_id: String,
    /// `YYYY-MM-DD HH:MM:SS.mmm`, UTC.
    pub(crate) failed_at: String,
    pub(crate) dlq: String,
    pub(crate) business_key: Option<String>,
    pub(crate) error_kind: String,
    pub(crate) error_text: String,
    pub(crate) attempts: Option<i64>,
    /// JSON object (see `letter::headers_json`).
    pub(crate) headers: String,
    /// JSON object (see `letter::properties_json`).
    pub(crate) properties: String,
    pub(crate) body: Vec<u8>,
    /// `YYYY-MM-DD HH:MM:SS.mmm`, UTC (on MySQL, rows archived before
    /// version 2 of the schema: the server's time zone).
    pub(crate) archived_at: String,
    pub(crate) replayed_at: Option<String>,
    pub(crate) replays: i64,
}

pub(super) type StoredTuple = (
    i64,
    String,
    String,
    String,
    String,
    Option<String>,
    String,
    String,
    Option<i64>,
    String,
    String,
    Vec<u8>,
    String,
    Option<String>,
    i64,
);

impl From<StoredTuple> for Stored {
    fn from(t: StoredTuple) -> Stored {
        let (
            id,
            original_queue,
            message_id,
            failed_at,
            dlq,
            business_key,
            error_kind,
            error_text,
            attempts,
            headers,
            properties,
            body,
            archived_at,
            replayed_at,
            replays,
        ) = t;
        Stored {
            id,
            original_queue,
            message_id,
            failed_at,
            dlq,
            business_key,
            error_kind,
            error_text,
            attempts,
            headers,
            properties,
            body,
            archived_at,
            replayed_at,
            replays,
        }
    }
}

// The key columns are utf8mb4_bin, which sqlx reads as bytes: cast them.
pub(super) const MYSQL_COLUMNS: &str = "CAST(id AS SIGNED), CAST(original_queue AS CHAR), CAST(message_id AS CHAR), \
     CAST(failed_at AS CHAR), CAST(dlq AS CHAR), business_key, error_kind, error_text, \
     CAST(attempts AS SIGNED), headers, properties, body, CAST(archived_at AS CHAR), \
     CAST(replayed_at AS CHAR), CAST(replays AS SIGNED)";

pub(super) const PG_COLUMNS: &str = "id, original_queue::text, message_id::text, \
     to_char(failed_at, 'YYYY-MM-DD HH24:MI:SS.MS'), dlq::text, business_key::text, error_kind::text, error_text, \
     attempts, headers, properties, body, to_char(archived_at, 'YYYY-MM-DD HH24:MI:SS.MS'), \
     to_char(replayed_at, 'YYYY-MM-DD HH24:MI:SS.MS'), replays::bigint";

// One fixed text per database; an unset filter field binds NULL (or '', or
// an empty array) and matches every row. `bind_mysql_filter` binds the
// MySQL placeholders in this order; PostgreSQL's are $1–$8.
pub(super) const MYSQL_FILTER: &str = "(? IS NULL OR original_queue = ?) \
     AND (? = '' OR FIND_IN_SET(error_kind, ?) > 0) \
     AND (? IS NULL OR failed_at >= ?) \
     AND (? IS NULL OR failed_at < ?) \
     AND (? IS NULL OR business_key = ? OR business_key = CONCAT('mqkit:idem:', original_queue, ':', ?)) \
     AND (? = '' OR LOCATE(LOWER(?), LOWER(error_text)) > 0) \
     AND (? OR replayed_at IS NULL) \
     AND (? = '' OR FIND_IN_SET(id, ?) > 0)";

pub(super) const PG_FILTER: &str = "($1::text IS NULL OR original_queue = $1) \
     AND ($2::text = '' OR error_kind = ANY(string_to_array($2, ','))) \
     AND ($3::text IS NULL OR failed_at >= $3::timestamp) \
     AND ($4::text IS NULL OR failed_at < $4::timestamp) \
     AND ($5::text IS NULL OR business_key = $5 OR business_key = 'mqkit:idem:' || original_queue || ':' || $5) \
     AND ($6::text = '' OR strpos(lower(error_text), lower($6)) > 0) \
     AND ($7::bool OR replayed_at IS NULL) \
     AND (cardinality($8::bigint[]) = 0 OR id = ANY($8))";

pub(super) type MySqlQueryAs<'q, O> =
    sqlx::query::QueryAs<'q, sqlx::MySql, O, sqlx::mysql::MySqlArguments>;
pub(super) type PgQueryAs<'q, O> =
    sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments>;

pub(super) fn bind_mysql_filter<'q, O>(
    q: MySqlQueryAs<'q, O>,
    f: &'q Filter,
    kinds: &'q str,
    text: &'q str,
    ids: &'q str,
) -> MySqlQueryAs<'q, O> {
    q.bind(&f.queue)
        .bind(&f.queue)
        .bind(kinds)
        .bind(kinds)
        .bind(&f.since)
        .bind(&f.since)
        .bind(&f.until)
        .bind(&f.until)
        .bind(&f.key)
        .bind(&f.key)
        .bind(&f.key)
        .bind(text)
        .bind(text)
        .bind(f.include_replayed)
        .bind(ids)
        .bind(ids)
}

pub(super) fn bind_pg_filter<'q, O>(
    q: PgQueryAs<'q, O>,
    f: &'q Filter,
    kinds: &'q str,
    text: &'q str,
) -> PgQueryAs<'q, O> {
    q.bind(&f.queue)
        .bind(kinds)
        .bind(&f.since)
        .bind(&f.until)
        .bind(&f.key)
        .bind(text)
        .bind(f.include_replayed)
        .bind(&f.ids)
}

/// One archive row, as the archiver stores it.
#[cfg(feature = "dlq")]
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Row {
    pub(super) original_queue: String,
    pub(super) message_id: String,
    /// `YYYY-MM-DD HH:MM:SS.mmm`, UTC.
    pub(super) failed_at: String,
    pub(super) dlq: String,
    pub(super) business_key: Option<String>,
    pub(super) error_kind: String,
    pub(super) error_text: String,
    pub(super) attempts: Option<u32>,
    pub(super) headers: String,
    pub(super) properties: String,
    pub(super) body: Vec<u8>,
}

#[cfg(feature = "dlq")]
impl Row {
    /// The row for a dead letter from `dlq`, whose consumer's work queue is
    /// `work_queue` (the original queue when the message does not say).
    pub(super) fn build(
        dlq: &str,
        work_queue: &str,
        specs: &HashMap<String, ConsumerSpec>,
        properties: &Properties,
        body: &[u8],
    ) -> (Row, DeadLetter) {
        let letter = DeadLetter::read(properties);
        let original_queue = letter
            .original_queue
            .clone()
            .unwrap_or_else(|| work_queue.to_owned());
        let message_id = letter
            .message_id
            .clone()
            .filter(|id| !id.is_empty())
            .unwrap_or_else(|| {
                format!(
                    "uuid5:{}",
                    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, body)
                )
            });
        let failed_at = humantime::format_rfc3339_millis(letter.failed_at.unwrap_or(UNIX_EPOCH))
            .to_string()
            .replace('T', " ")
            .trim_end_matches('Z')
            .to_owned();
        let business_key = specs
            .get(&original_queue)
            .and_then(|spec| business_key(spec, body))
            .filter(|k| k.chars().count() <= 1024)
            .map(|k| cut_chars(&k, 1024));
        let row = Row {
            original_queue: cut_chars(&original_queue, 255),
            message_id: cut_chars(&message_id, 255),
            failed_at,
            dlq: cut_chars(dlq, 255),
            business_key,
            error_kind: cut_chars(&letter.error_kind, 64),
            error_text: truncate(&letter.error, MAX_ERROR_TEXT).replace('\0', "\u{fffd}"),
            attempts: letter.attempts,
            headers: headers_json(properties.headers.as_ref()).to_string(),
            properties: properties_json(properties).to_string(),
            body: body.to_vec(),
        };
        (row, letter)
    }
}

/// At most `max` characters of `s`, NUL replaced (PostgreSQL's text refuses
/// it; both databases store the same row).
#[cfg(feature = "dlq")]
fn cut_chars(s: &str, max: usize) -> String {
    s.chars()
        .take(max)
        .map(|c| if c == '\0' { '\u{fffd}' } else { c })
        .collect()
}

#[cfg(all(test, feature = "dlq"))]
mod tests {
    use super::*;
    use crate::amqp::convert::properties_from;
    use lapin::BasicProperties;
    use lapin::types::{AMQPValue, FieldTable, LongString};

    #[test]
    fn rows_carry_every_field() {
        let mut spec = ConsumerSpec::new("order");
        spec.idempotency = &["order_id"];
        let specs = HashMap::from([("order".to_owned(), spec)]);
        let mut h = FieldTable::default();
        let s = |v: &str| AMQPValue::LongString(LongString::from(v));
        h.insert("x-mqkit-error-kind".into(), s("rejected"));
        h.insert("x-mqkit-error".into(), s("negative amount"));
        h.insert("x-mqkit-attempts".into(), AMQPValue::LongLongInt(1));
        h.insert("x-mqkit-original-queue".into(), s("order"));
        h.insert("x-mqkit-failed-at".into(), s("2026-11-26T01:47:06.091Z"));
        let p = properties_from(
            &BasicProperties::default()
                .with_headers(h)
                .with_message_id("m-1".into()),
        );
        let (row, _) = Row::build("dlq.order", "order", &specs, &p, br#"{"order_id":"A-1"}"#);
        assert_eq!(row.original_queue, "order");
        assert_eq!(row.message_id, "m-1");
        assert_eq!(row.failed_at, "2026-11-26 01:47:06.091");
        assert_eq!(row.business_key.as_deref(), Some("mqkit:idem:order:A-1"));
        assert_eq!(row.error_kind, "rejected");
        assert_eq!(row.error_text, "negative amount");
        assert_eq!(row.attempts, Some(1));
        assert!(row.headers.contains("\"x-mqkit-error-kind\":\"rejected\""));

        // No message id, no failure headers: a content id, the DLQ's work
        // queue, and the same row again for the same message.
        let bare = Properties::default();
        let (a, _) = Row::build("dlq.order", "order", &specs, &bare, b"x");
        let (b, _) = Row::build("dlq.order", "order", &specs, &bare, b"x");
        let (c, _) = Row::build("dlq.order", "order", &specs, &bare, b"y");
        assert!(a.message_id.starts_with("uuid5:"));
        assert_eq!(a, b);
        assert_ne!(a.message_id, c.message_id);
        assert_eq!(a.original_queue, "order");
        assert_eq!(a.failed_at, "1970-01-01 00:00:00.000");
        assert_eq!(a.error_kind, "unknown");
    }
}

#[cfg(all(test, feature = "dlq"))]
mod properties {
    use proptest::prelude::*;

    use super::*;
    use crate::core::headers::strategies;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(10_000))]

        #[test]
        fn rows_of_any_dead_letter_fit_their_columns(p in strategies::properties(), body in prop::collection::vec(any::<u8>(), 0..64)) {
            let specs = HashMap::from([("order".to_owned(), ConsumerSpec::new("order").idempotency(&["id"]))]);
            let (row, _) = Row::build("dlq.order", "order", &specs, &p, &body);
            prop_assert!(row.original_queue.chars().count() <= 255);
            prop_assert!(row.message_id.chars().count() <= 255 && !row.message_id.is_empty());
            prop_assert!(row.error_kind.chars().count() <= 64);
            prop_assert!(row.error_text.len() <= MAX_ERROR_TEXT);
            prop_assert_eq!(row.failed_at.len(), "1970-01-01 00:00:00.000".len());
            prop_assert!(serde_json::from_str::<serde_json::Value>(&row.headers).is_ok());
        }
    }
}
