//! mqkit's schema migrations on PostgreSQL and MySQL/MariaDB, shared by the
//! dead-letter archive (versions 1–99) and the transactional tables
//! (100 and up): one table `mqkit_schema_migrations` records which ran, and
//! one lock per database (`pg_advisory_lock` / `GET_LOCK`) makes instances
//! that start together apply each migration once.

use sqlx::{MySqlPool, PgPool};

/// One migration: version, name, SQL (several statements allowed; each
/// migration's SQL is idempotent where the database allows it).
pub(crate) type Migration = (i64, &'static str, &'static str);

/// The advisory-lock key of mqkit's migrations on PostgreSQL.
const PG_LOCK: i64 = 7_268_017_101;
/// How long MySQL waits for another instance's migrations.
const MYSQL_LOCK_SECS: i64 = 60;

/// Applies the migrations not yet recorded, in order, under the lock;
/// `what` names them in the log.
pub(crate) async fn postgres(
    pool: &PgPool,
    migrations: &[Migration],
    what: &str,
) -> Result<(), sqlx::Error> {
    let mut conn = pool.acquire().await?;
    // `CREATE … IF NOT EXISTS` notices are not news.
    sqlx::Executor::execute(&mut *conn, "SET client_min_messages TO warning").await?;
    // Session-level, released below (or when the connection closes).
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(PG_LOCK)
        .execute(&mut *conn)
        .await?;
    let result = pg_apply(&mut conn, migrations, what).await;
    let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(PG_LOCK)
        .execute(&mut *conn)
        .await;
    result
}

/// The same on MySQL/MariaDB.
pub(crate) async fn mysql(
    pool: &MySqlPool,
    migrations: &[Migration],
    what: &str,
) -> Result<(), sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let locked: Option<i64> = sqlx::query_scalar("SELECT GET_LOCK('mqkit_migrations', ?)")
        .bind(MYSQL_LOCK_SECS)
        .fetch_one(&mut *conn)
        .await?;
    if locked != Some(1) {
        return Err(sqlx::Error::Protocol(format!(
            "could not take the lock mqkit_migrations within {MYSQL_LOCK_SECS} s (another instance migrating?)"
        )));
    }
    let result = mysql_apply(&mut conn, migrations, what).await;
    let _ = sqlx::query("SELECT RELEASE_LOCK('mqkit_migrations')")
        .execute(&mut *conn)
        .await;
    result
}

async fn pg_apply(
    conn: &mut sqlx::PgConnection,
    migrations: &[Migration],
    what: &str,
) -> Result<(), sqlx::Error> {
    sqlx::Executor::execute(
        &mut *conn,
        sqlx::raw_sql(
            "CREATE TABLE IF NOT EXISTS mqkit_schema_migrations (\
                version BIGINT NOT NULL PRIMARY KEY, \
                name TEXT NOT NULL, \
                applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
        ),
    )
    .await?;
    for (version, name, sql) in migrations {
        let applied: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM mqkit_schema_migrations WHERE version = $1")
                .bind(version)
                .fetch_one(&mut *conn)
                .await?;
        if applied == 0 {
            sqlx::Executor::execute(&mut *conn, sqlx::raw_sql(sql)).await?;
            sqlx::query(
                "INSERT INTO mqkit_schema_migrations (version, name) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            )
            .bind(version)
            .bind(name)
            .execute(&mut *conn)
            .await?;
            tracing::info!(version, name, "applied {what} migration");
        }
    }
    Ok(())
}

async fn mysql_apply(
    conn: &mut sqlx::MySqlConnection,
    migrations: &[Migration],
    what: &str,
) -> Result<(), sqlx::Error> {
    sqlx::Executor::execute(
        &mut *conn,
        sqlx::raw_sql(
            "CREATE TABLE IF NOT EXISTS mqkit_schema_migrations (\
                version BIGINT NOT NULL PRIMARY KEY, \
                name VARCHAR(255) NOT NULL, \
                applied_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)\
             ) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4",
        ),
    )
    .await?;
    for (version, name, sql) in migrations {
        let applied: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM mqkit_schema_migrations WHERE version = ?")
                .bind(version)
                .fetch_one(&mut *conn)
                .await?;
        if applied == 0 {
            sqlx::Executor::execute(&mut *conn, sqlx::raw_sql(sql)).await?;
            sqlx::query("INSERT IGNORE INTO mqkit_schema_migrations (version, name) VALUES (?, ?)")
                .bind(version)
                .bind(name)
                .execute(&mut *conn)
                .await?;
            tracing::info!(version, name, "applied {what} migration");
        }
    }
    Ok(())
}
