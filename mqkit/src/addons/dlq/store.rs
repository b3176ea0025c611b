//! The archive table: [`Row`] (one dead letter as stored), [`insert`]
//! (idempotent on the unique key) and [`migrate`] (the schema, created at
//! startup from `mqkit/migrations/`).

use std::collections::HashMap;
use std::time::UNIX_EPOCH;

use sqlx::mysql::MySqlPool;
use tracing::info;

use super::letter::{DeadLetter, business_key, headers_json, properties_json};
use crate::core::headers::Properties;
use crate::core::spec::ConsumerSpec;
use crate::core::text::truncate;

/// Error texts are cut to this many bytes in the archive.
const MAX_ERROR_TEXT: usize = 16 * 1024;

/// Migrations of the archive schema, applied in order at startup; each is
/// idempotent, and `mqkit_schema_migrations` records which ran.
const MIGRATIONS: &[(i64, &str, &str)] = &[(
    1,
    "dlq_archive",
    include_str!("../../../migrations/0001_dlq_archive.sql"),
)];

/// One archive row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Row {
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
            .filter(|k| k.chars().count() <= 1024);
        let row = Row {
            original_queue: cut_chars(&original_queue, 255),
            message_id: cut_chars(&message_id, 255),
            failed_at,
            dlq: cut_chars(dlq, 255),
            business_key,
            error_kind: cut_chars(&letter.error_kind, 64),
            error_text: truncate(&letter.error, MAX_ERROR_TEXT).to_owned(),
            attempts: letter.attempts,
            headers: headers_json(properties.headers.as_ref()).to_string(),
            properties: properties_json(properties).to_string(),
            body: body.to_vec(),
        };
        (row, letter)
    }
}

/// Stores a row; `true` if it is new, `false` if it was archived before.
pub(super) async fn insert(pool: &MySqlPool, row: &Row) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT IGNORE INTO mqkit_dead_letters \
         (original_queue, message_id, failed_at, dlq, business_key, error_kind, error_text, attempts, headers, properties, body) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&row.original_queue)
    .bind(&row.message_id)
    .bind(&row.failed_at)
    .bind(&row.dlq)
    .bind(&row.business_key)
    .bind(&row.error_kind)
    .bind(&row.error_text)
    .bind(row.attempts)
    .bind(&row.headers)
    .bind(&row.properties)
    .bind(&row.body)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub(super) async fn migrate(pool: &MySqlPool) -> Result<(), sqlx::Error> {
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS mqkit_schema_migrations (\
            version BIGINT NOT NULL PRIMARY KEY, \
            name VARCHAR(255) NOT NULL, \
            applied_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)\
         ) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4",
    )
    .execute(pool)
    .await?;
    for (version, name, sql) in MIGRATIONS {
        let applied: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM mqkit_schema_migrations WHERE version = ?")
                .bind(version)
                .fetch_one(pool)
                .await?;
        if applied == 0 {
            sqlx::raw_sql(sql).execute(pool).await?;
            sqlx::query("INSERT IGNORE INTO mqkit_schema_migrations (version, name) VALUES (?, ?)")
                .bind(version)
                .bind(name)
                .execute(pool)
                .await?;
            info!(version, name, "applied dead-letter archive migration");
        }
    }
    Ok(())
}

fn cut_chars(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

#[cfg(test)]
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

#[cfg(test)]
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
