//! A database of its own for each transactional test, on the machine's
//! PostgreSQL (127.0.0.1:5432, user postgres) or MariaDB (127.0.0.1:3306,
//! root): created with the command-line clients and dropped when the
//! guard is dropped, even when the test fails. mqkit's tables and the
//! test's effect table live in it, so tests running side by side never see
//! each other's outbox.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Db {
    Postgres,
    MariaDb,
}

impl Db {
    pub(crate) const BOTH: [Db; 2] = [Db::Postgres, Db::MariaDb];

    fn admin(self, sql: &str) -> std::process::Output {
        let out = match self {
            Db::Postgres => Command::new("psql")
                .args([
                    "-h",
                    "127.0.0.1",
                    "-U",
                    "postgres",
                    "-d",
                    "test",
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-qtAc",
                    sql,
                ])
                .output(),
            Db::MariaDb => Command::new("mariadb")
                .args(["-h", "127.0.0.1", "-uroot", "-N", "-e", sql])
                .output(),
        };
        out.unwrap_or_else(|e| panic!("{self:?} command-line client: {e}"))
    }

    /// Runs `sql` as the admin user in database `db`; its output.
    pub(crate) fn sql_in(self, db: &str, sql: &str) -> String {
        let out = match self {
            Db::Postgres => Command::new("psql")
                .args([
                    "-h",
                    "127.0.0.1",
                    "-U",
                    "postgres",
                    "-d",
                    db,
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-qtAc",
                    sql,
                ])
                .output(),
            Db::MariaDb => Command::new("mariadb")
                .args(["-h", "127.0.0.1", "-uroot", "-N", "-D", db, "-e", sql])
                .output(),
        }
        .unwrap();
        assert!(
            out.status.success(),
            "{self:?} {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

/// A database created for one test; dropped with the guard.
pub(crate) struct TestDb {
    pub(crate) db: Db,
    pub(crate) name: String,
}

impl TestDb {
    pub(crate) fn create(db: Db, label: &str) -> TestDb {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let name = format!(
            "mqkit_t_{label}_{}_{}_{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            rand_suffix()
        );
        let sql = format!("CREATE DATABASE {name}");
        let out = db.admin(&sql);
        assert!(
            out.status.success(),
            "{db:?}: {sql}: {} (is it running? see README: PostgreSQL 127.0.0.1:5432 user postgres, MariaDB 127.0.0.1:3306 root)",
            String::from_utf8_lossy(&out.stderr)
        );
        TestDb { db, name }
    }

    /// The URL for MQKIT_DATABASE_URL.
    pub(crate) fn url(&self) -> String {
        match self.db {
            Db::Postgres => format!("postgres://postgres@127.0.0.1:5432/{}", self.name),
            Db::MariaDb => format!("mysql://root@127.0.0.1:3306/{}", self.name),
        }
    }

    /// `sql` run in this database; its output, trimmed.
    pub(crate) fn sql(&self, sql: &str) -> String {
        self.db.sql_in(&self.name, sql)
    }

    /// A number `sql` returns.
    pub(crate) fn count(&self, sql: &str) -> i64 {
        let out = self.sql(sql);
        out.parse()
            .unwrap_or_else(|_| panic!("{sql} returned {out:?}"))
    }

    /// Creates the effect table: one row per handler run that committed
    /// (no unique key, so a doubled effect shows as two rows).
    pub(crate) fn effect_table(&self) {
        self.sql(match self.db {
            Db::Postgres => "CREATE TABLE effects (id BIGSERIAL PRIMARY KEY, order_id TEXT NOT NULL, cents BIGINT NOT NULL)",
            Db::MariaDb => "CREATE TABLE effects (id BIGINT AUTO_INCREMENT PRIMARY KEY, order_id VARCHAR(255) NOT NULL, cents BIGINT NOT NULL) ENGINE=InnoDB",
        });
    }
}

fn rand_suffix() -> usize {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as usize % 1_000_000)
        .unwrap_or(0)
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let sql = match self.db {
            Db::Postgres => format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            Db::MariaDb => format!("DROP DATABASE IF EXISTS {}", self.name),
        };
        let _ = self.db.admin(&sql);
    }
}
