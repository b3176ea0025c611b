//! Fixtures for the dead-letter tests: the archive database, MariaDB or
//! PostgreSQL ([`Backend`]; rows read back, deleted on drop), a toggleable
//! TCP proxy in front of either (an outage without stopping the shared
//! server), a minimal HTTP(S) webhook server (HTTPS with a certificate
//! authority made for the test), and the `mqkit` command run as a child
//! process.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::Row as _;
use sqlx::mysql::MySqlPool;
use sqlx::postgres::PgPool;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;

/// MariaDB on this machine: root without a password, database `test`.
pub(crate) const DB_URL: &str = "mysql://root@127.0.0.1:3306/test";
/// PostgreSQL on this machine: postgres, trust auth, database `test`.
pub(crate) const PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// Which database holds the archive in a test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    MySql,
    Postgres,
}

impl Backend {
    pub(crate) fn url(self) -> String {
        match self {
            Backend::MySql => DB_URL.to_owned(),
            Backend::Postgres => PG_URL.to_owned(),
        }
    }

    fn port(self) -> u16 {
        match self {
            Backend::MySql => 3306,
            Backend::Postgres => 5432,
        }
    }

    /// `url()` with another port (the proxy's) and user.
    pub(crate) fn url_via(self, port: u16, user: &str) -> String {
        match self {
            Backend::MySql => format!("mysql://{user}@127.0.0.1:{port}/test"),
            Backend::Postgres => format!("postgres://{user}@127.0.0.1:{port}/test"),
        }
    }
}

/// A connection pool to the archive database of a test.
#[derive(Debug, Clone)]
pub(crate) enum Archive {
    My(MySqlPool),
    Pg(PgPool),
}

// ---------------------------------------------------------------- archive rows

/// One archived dead letter as the tests read it back.
#[derive(Debug, Clone)]
pub(crate) struct Archived {
    pub(crate) original_queue: String,
    pub(crate) message_id: String,
    pub(crate) failed_at: String,
    pub(crate) dlq: String,
    pub(crate) business_key: Option<String>,
    pub(crate) error_kind: String,
    pub(crate) error_text: String,
    pub(crate) attempts: Option<u32>,
    pub(crate) headers: serde_json::Value,
    pub(crate) body: Vec<u8>,
}

/// The MariaDB archive.
pub(crate) async fn db() -> Archive {
    db_of(Backend::MySql).await
}

pub(crate) async fn db_of(backend: Backend) -> Archive {
    match backend {
        Backend::MySql => Archive::My(
            MySqlPool::connect(DB_URL)
                .await
                .expect("MariaDB on 127.0.0.1:3306 (root, no password, database `test`)"),
        ),
        Backend::Postgres => Archive::Pg(
            PgPool::connect(PG_URL)
                .await
                .expect("PostgreSQL on 127.0.0.1:5432 (postgres, trust, database `test`)"),
        ),
    }
}

/// Rows archived for `queue` (empty while the table does not exist yet).
pub(crate) async fn rows(db: &Archive, queue: &str) -> Vec<Archived> {
    let db = match db {
        Archive::My(db) => db,
        Archive::Pg(db) => return pg_rows(db, queue).await,
    };
    let found = sqlx::query(
        // The key columns are utf8mb4_bin (queue names and message ids are
        // case-sensitive), which sqlx reads as binary: cast them for String.
        "SELECT CAST(original_queue AS CHAR) AS original_queue, \
         CAST(message_id AS CHAR) AS message_id, CAST(failed_at AS CHAR) AS failed_at, \
         CAST(dlq AS CHAR) AS dlq, business_key, error_kind, error_text, attempts, headers, body \
         FROM mqkit_dead_letters WHERE original_queue = ? ORDER BY id",
    )
    .bind(queue)
    .fetch_all(db)
    .await;
    let Ok(found) = found else {
        return Vec::new();
    };
    found
        .iter()
        .map(|r| Archived {
            original_queue: r.get("original_queue"),
            message_id: r.get("message_id"),
            failed_at: r.get("failed_at"),
            dlq: r.get("dlq"),
            business_key: r.get("business_key"),
            error_kind: r.get("error_kind"),
            error_text: r.get("error_text"),
            attempts: r.get("attempts"),
            headers: serde_json::from_str(r.get::<&str, _>("headers")).unwrap(),
            body: r.get("body"),
        })
        .collect()
}

async fn pg_rows(db: &PgPool, queue: &str) -> Vec<Archived> {
    let found = sqlx::query(
        "SELECT original_queue, message_id, to_char(failed_at, 'YYYY-MM-DD HH24:MI:SS.MS') AS failed_at, \
         dlq, business_key, error_kind, error_text, attempts, headers, body \
         FROM mqkit_dead_letters WHERE original_queue = $1 ORDER BY id",
    )
    .bind(queue)
    .fetch_all(db)
    .await;
    let Ok(found) = found else {
        return Vec::new();
    };
    found
        .iter()
        .map(|r| Archived {
            original_queue: r.get("original_queue"),
            message_id: r.get("message_id"),
            failed_at: r.get("failed_at"),
            dlq: r.get("dlq"),
            business_key: r.get("business_key"),
            error_kind: r.get("error_kind"),
            error_text: r.get("error_text"),
            attempts: r
                .get::<Option<i64>, _>("attempts")
                .map(|a| u32::try_from(a).unwrap()),
            headers: serde_json::from_str(r.get::<&str, _>("headers")).unwrap(),
            body: r.get("body"),
        })
        .collect()
}

/// Runs one SQL statement with one text parameter on the archive (`?` for
/// MySQL is written `$1` for PostgreSQL by the caller).
pub(crate) async fn exec(db: &Archive, mysql: &str, postgres: &str, arg: &str) -> u64 {
    match db {
        Archive::My(db) => {
            let done = sqlx::query(mysql).bind(arg).execute(db).await.unwrap();
            done.rows_affected()
        }
        Archive::Pg(db) => {
            let done = sqlx::query(postgres).bind(arg).execute(db).await.unwrap();
            done.rows_affected()
        }
    }
}

/// Deletes the archive rows of these queues, in both databases, when
/// dropped (even when the test fails); the table itself stays, like in
/// production.
pub(crate) struct DbCleanup(pub(crate) Vec<String>);

impl Drop for DbCleanup {
    fn drop(&mut self) {
        let queues = std::mem::take(&mut self.0);
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                if let Ok(db) = MySqlPool::connect(DB_URL).await {
                    for q in &queues {
                        let _ =
                            sqlx::query("DELETE FROM mqkit_dead_letters WHERE original_queue = ?")
                                .bind(q)
                                .execute(&db)
                                .await;
                    }
                    db.close().await;
                }
                if let Ok(db) = PgPool::connect(PG_URL).await {
                    for q in &queues {
                        let _ =
                            sqlx::query("DELETE FROM mqkit_dead_letters WHERE original_queue = $1")
                                .bind(q)
                                .execute(&db)
                                .await;
                    }
                    db.close().await;
                }
            });
        });
        let _ = done.join();
    }
}

// ---------------------------------------------------------------- database proxy

/// A TCP proxy to MariaDB or PostgreSQL that the test can switch off: off closes every
/// proxied connection and refuses new ones (accept, then close at once).
pub(crate) struct DbProxy {
    pub(crate) port: u16,
    backend: Backend,
    up: watch::Sender<bool>,
    /// Connections refused while off: proof that the archiver kept trying.
    pub(crate) refused: Arc<AtomicUsize>,
    /// Proxied connections open right now.
    pub(crate) active: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl DbProxy {
    /// A proxy to MariaDB.
    pub(crate) async fn start() -> DbProxy {
        DbProxy::start_to(Backend::MySql).await
    }

    pub(crate) async fn start_to(backend: Backend) -> DbProxy {
        let target = backend.port();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (up, _) = watch::channel(true);
        let refused = Arc::new(AtomicUsize::new(0));
        let active = Arc::new(AtomicUsize::new(0));
        let (up_tx, refused_c, active_c) = (up.clone(), refused.clone(), active.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                if !*up_tx.borrow() {
                    refused_c.fetch_add(1, Ordering::SeqCst);
                    drop(client);
                    continue;
                }
                let mut down = up_tx.subscribe();
                let active = active_c.clone();
                active.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(("127.0.0.1", target)).await {
                        let mut client = client;
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                            _ = down.wait_for(|up| !*up) => {}
                        }
                    }
                    active.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        DbProxy {
            port,
            backend,
            up,
            refused,
            active,
            task,
        }
    }

    pub(crate) fn url(&self) -> String {
        let user = match self.backend {
            Backend::MySql => "root",
            Backend::Postgres => "postgres",
        };
        self.backend.url_via(self.port, user)
    }

    pub(crate) fn set_up(&self, up: bool) {
        self.up.send_replace(up);
    }

    /// Switches the proxy off and waits until every proxied connection is
    /// closed, so nothing reaches the database from here on.
    pub(crate) async fn go_down(&self) {
        self.set_up(false);
        while self.active.load(Ordering::SeqCst) > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for DbProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ---------------------------------------------------------------- webhook server

/// How the webhook server answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HookMode {
    Ok,
    Fail500,
    /// Reads the request and never answers (holds the socket for a minute).
    Silent,
    /// Accepts the connection and never reads nor writes a byte (over
    /// HTTPS: a TLS handshake that never completes).
    Mute,
    /// 200 with this JSON body.
    Json(&'static str),
}

/// One request the webhook server received.
#[derive(Debug, Clone)]
pub(crate) struct HookRequest {
    /// Request line and headers, as sent.
    pub(crate) head: String,
    pub(crate) body: Vec<u8>,
    /// Whether it came over TLS.
    pub(crate) tls: bool,
}

impl HookRequest {
    pub(crate) fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }

    /// The request target of the request line (`/hook?key=…`).
    pub(crate) fn target(&self) -> &str {
        self.head.split(' ').nth(1).unwrap_or_default()
    }

    /// The query parameters of the request target, percent-decoded.
    pub(crate) fn query(&self) -> Vec<(String, String)> {
        let query = self.target().split_once('?').map(|(_, q)| q).unwrap_or("");
        query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                let v = percent_encoding::percent_decode_str(v)
                    .decode_utf8()
                    .unwrap()
                    .into_owned();
                (k.to_owned(), v)
            })
            .collect()
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("alert body is not JSON ({e}): {:?}", self.body))
    }

    /// The count an alert carries: `mqkit: <count> dead letter…`.
    pub(crate) fn count(&self) -> u64 {
        let content = self.json()["text"]["content"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        content
            .strip_prefix("mqkit: ")
            .and_then(|r| r.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no count in {content:?}"))
    }
}

/// A certificate authority made for one test run and a server certificate
/// it signed for 127.0.0.1 and localhost; the CA's PEM is in a temporary
/// file (deleted on drop), for `MQKIT_DLQ_ALERT_CA_FILE`.
pub(crate) struct TestCa {
    pub(crate) file: PathBuf,
    server: Arc<rustls::ServerConfig>,
}

impl TestCa {
    pub(crate) fn new() -> TestCa {
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "mqkit test CA");
        ca_params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let ca =
            rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().unwrap())
                .unwrap();
        let server_key = rcgen::KeyPair::generate().unwrap();
        let server_cert =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
                .unwrap()
                .signed_by(&server_key, &ca)
                .unwrap();
        let file =
            std::env::temp_dir().join(format!("{}-ca.pem", crate::common::unique("mqkit-test")));
        std::fs::write(&file, ca.pem()).unwrap();
        let server = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![server_cert.der().clone()],
            rustls::pki_types::PrivatePkcs8KeyDer::from(server_key.serialize_der()).into(),
        )
        .unwrap();
        TestCa {
            file,
            server: Arc::new(server),
        }
    }
}

impl Drop for TestCa {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.file);
    }
}

/// A minimal HTTP/1.1 server on a free port (plain, or HTTPS with its own
/// [`TestCa`]), recording every request.
pub(crate) struct Hook {
    pub(crate) port: u16,
    pub(crate) requests: Arc<Mutex<Vec<HookRequest>>>,
    /// Connections accepted (a mute server reads no request from them).
    pub(crate) accepted: Arc<AtomicUsize>,
    pub(crate) ca: Option<TestCa>,
    task: JoinHandle<()>,
}

impl Hook {
    pub(crate) async fn start(mode: HookMode) -> Hook {
        Hook::serve_on(mode, None).await
    }

    /// The same server over HTTPS.
    pub(crate) async fn start_tls(mode: HookMode) -> Hook {
        Hook::serve_on(mode, Some(TestCa::new())).await
    }

    async fn serve_on(mode: HookMode, ca: Option<TestCa>) -> Hook {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let accepted = Arc::new(AtomicUsize::new(0));
        let (log, count) = (requests.clone(), accepted.clone());
        let acceptor = ca.as_ref().map(|ca| TlsAcceptor::from(ca.server.clone()));
        let task = tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    return;
                };
                count.fetch_add(1, Ordering::SeqCst);
                let log = log.clone();
                if mode == HookMode::Mute {
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_secs(60)).await;
                        drop(socket);
                    });
                    continue;
                }
                match &acceptor {
                    None => {
                        tokio::spawn(serve(socket, false, mode, log));
                    }
                    Some(acceptor) => {
                        let accept = acceptor.accept(socket);
                        tokio::spawn(async move {
                            if let Ok(tls) = accept.await {
                                serve(tls, true, mode, log).await;
                            }
                        });
                    }
                }
            }
        });
        Hook {
            port,
            requests,
            accepted,
            ca,
            task,
        }
    }

    pub(crate) fn url(&self) -> String {
        let scheme = if self.ca.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}/hook?key=hook-secret", self.port)
    }

    /// The CA file to trust for an HTTPS hook.
    pub(crate) fn ca_file(&self) -> Option<&Path> {
        self.ca.as_ref().map(|ca| ca.file.as_path())
    }

    pub(crate) fn received(&self) -> Vec<HookRequest> {
        self.requests.lock().unwrap().clone()
    }

    pub(crate) fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Hook {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads one request, records it and answers as `mode` says; the answer
/// closes the connection.
async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut socket: S,
    tls: bool,
    mode: HookMode,
    log: Arc<Mutex<Vec<HookRequest>>>,
) {
    let mut data = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match socket.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => data.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&data[..head_end]).into_owned();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    while data.len() < head_end + length {
        match socket.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => data.extend_from_slice(&chunk[..n]),
        }
    }
    log.lock().unwrap().push(HookRequest {
        head,
        body: data[head_end..head_end + length].to_vec(),
        tls,
    });
    let answer = match mode {
        HookMode::Ok => "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok".to_owned(),
        HookMode::Fail500 => {
            "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\nConnection: close\r\n\r\noops".to_owned()
        }
        HookMode::Json(body) => format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
        HookMode::Silent | HookMode::Mute => {
            tokio::time::sleep(Duration::from_secs(60)).await;
            return;
        }
    };
    let _ = socket.write_all(answer.as_bytes()).await;
    let _ = socket.shutdown().await;
}

// ---------------------------------------------------------------- the CLI

/// What a run of `mqkit` printed and returned.
#[derive(Debug)]
pub(crate) struct Out {
    pub(crate) code: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

/// The `mqkit` command as built in this package (same code as the real
/// binary: both call `mqkit::cli::main()`).
pub(crate) fn cli_command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mqkit-test-cli"));
    command
        .args(args)
        .env("MQKIT_AMQP_URL", crate::common::AMQP_URL)
        .env_remove("MQKIT_MGMT_URL")
        .stdin(Stdio::null());
    command
}

/// Runs `mqkit args…` to completion.
pub(crate) async fn mqkit(args: &[&str]) -> Out {
    let mut command = cli_command(args);
    let out = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Ready plus unacknowledged messages of `queue` (a passive declare counts
/// only ready ones; a message held unacked is not gone).
pub(crate) async fn total_messages(queue: &str) -> u64 {
    let queue = queue.to_owned();
    tokio::task::spawn_blocking(move || {
        let text = crate::common::rabbitmqctl(&["list_queues", "name", "messages"]);
        let rows: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
        rows.iter()
            .find(|r| r["name"] == queue.as_str())
            .and_then(|r| r["messages"].as_u64())
            .unwrap_or_else(|| panic!("queue {queue} not listed"))
    })
    .await
    .unwrap()
}
