//! The web console's reads of the archive (`mqkit dlq serve`): one row by
//! id ([`ArchiveDb::fetch`]) and a page of the newest rows that match a
//! filter ([`ArchiveDb::newest`], an id cursor going back in time). Fixed
//! SQL texts with bound parameters, beside the others in `store.rs`, whose
//! filter SQL they share.

use super::store::{
    ArchiveDb, Filter, MYSQL_COLUMNS, MYSQL_FILTER, PG_COLUMNS, PG_FILTER, Stored, StoredTuple,
    bind_mysql_filter, bind_pg_filter,
};

/// A list row carries this many characters of the error text.
pub(crate) const EXCERPT_CHARS: i32 = 200;

// The list needs no headers, properties or body (a body may be megabytes):
// the same columns as `*_COLUMNS` with those empty and the error cut.
const MYSQL_SUMMARY: &str = "CAST(id AS SIGNED), CAST(original_queue AS CHAR), CAST(message_id AS CHAR), \
     CAST(failed_at AS CHAR), CAST(dlq AS CHAR), business_key, error_kind, LEFT(error_text, ?), \
     CAST(attempts AS SIGNED), CAST('' AS CHAR), CAST('' AS CHAR), CAST('' AS BINARY), CAST(archived_at AS CHAR), \
     CAST(replayed_at AS CHAR), CAST(replays AS SIGNED)";

const PG_SUMMARY: &str = "id, original_queue::text, message_id::text, \
     to_char(failed_at, 'YYYY-MM-DD HH24:MI:SS.MS'), dlq::text, business_key::text, error_kind::text, left(error_text, $11::int), \
     attempts, ''::text, ''::text, ''::bytea, to_char(archived_at, 'YYYY-MM-DD HH24:MI:SS.MS'), \
     to_char(replayed_at, 'YYYY-MM-DD HH24:MI:SS.MS'), replays::bigint";

impl ArchiveDb {
    /// The row with this id, every column; `None` if there is none.
    pub(crate) async fn fetch(&self, id: i64) -> Result<Option<Stored>, sqlx::Error> {
        let row = match self {
            ArchiveDb::MySql(pool) => {
                let sql = format!("SELECT {MYSQL_COLUMNS} FROM mqkit_dead_letters WHERE id = ?");
                sqlx::query_as::<_, StoredTuple>(&sql)
                    .bind(id)
                    .fetch_optional(pool)
                    .await?
            }
            ArchiveDb::Postgres(pool) => {
                let sql = format!("SELECT {PG_COLUMNS} FROM mqkit_dead_letters WHERE id = $1");
                sqlx::query_as::<_, StoredTuple>(&sql)
                    .bind(id)
                    .fetch_optional(pool)
                    .await?
            }
        };
        Ok(row.map(Stored::from))
    }

    /// Up to `limit` rows that match `filter` with an id below `before`,
    /// newest (highest id) first, as summaries: `headers`, `properties` and
    /// `body` empty, `error_text` cut to [`EXCERPT_CHARS`] characters.
    pub(crate) async fn newest(
        &self,
        filter: &Filter,
        before: i64,
        limit: i64,
    ) -> Result<Vec<Stored>, sqlx::Error> {
        let (kinds, text, ids) = filter.texts();
        let rows = match self {
            ArchiveDb::MySql(pool) => {
                let sql = format!(
                    "SELECT {MYSQL_SUMMARY} FROM mqkit_dead_letters WHERE id < ? AND {MYSQL_FILTER} ORDER BY id DESC LIMIT ?"
                );
                let q = sqlx::query_as::<_, StoredTuple>(&sql)
                    .bind(EXCERPT_CHARS)
                    .bind(before);
                bind_mysql_filter(q, filter, &kinds, &text, &ids)
                    .bind(limit)
                    .fetch_all(pool)
                    .await?
            }
            ArchiveDb::Postgres(pool) => {
                let sql = format!(
                    "SELECT {PG_SUMMARY} FROM mqkit_dead_letters WHERE {PG_FILTER} AND id < $9 ORDER BY id DESC LIMIT $10"
                );
                bind_pg_filter(
                    sqlx::query_as::<_, StoredTuple>(&sql),
                    filter,
                    &kinds,
                    &text,
                )
                .bind(before)
                .bind(limit)
                .bind(EXCERPT_CHARS)
                .fetch_all(pool)
                .await?
            }
        };
        Ok(rows.into_iter().map(Stored::from).collect())
    }
}
