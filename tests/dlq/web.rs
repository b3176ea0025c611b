//! Fixtures for the console tests: `mqkit dlq serve` as a child process
//! ([`Served`], its port read from the line it prints), a raw HTTP/1.1
//! client ([`http`]), and Debian's chromedriver with headless Chromium
//! behind a WebDriver session ([`Browser`]). Each guard stops what it
//! started when dropped, also when the test fails.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead as _, BufReader};
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use fantoccini::{Client, ClientBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::support::cli_command;

pub(crate) const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/lib/chromium/chromium";

/// `mqkit dlq serve` running as a child process.
pub(crate) struct Served {
    child: Child,
    pub(crate) port: u16,
    /// The line it printed at startup.
    pub(crate) banner: String,
}

impl Served {
    /// Starts `mqkit dlq serve --archive URL --addr 127.0.0.1:0` and waits
    /// for the line naming its port.
    pub(crate) fn start(archive: &str) -> Served {
        let mut child = cli_command(&[
            "dlq",
            "serve",
            "--archive",
            archive,
            "--addr",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            // Keep reading so the child never blocks on a full pipe.
            for _ in lines {}
        });
        let mut served = Served {
            child,
            port: 0,
            banner: String::new(),
        };
        let banner = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("mqkit dlq serve printed no startup line within 60 s");
        let port = banner
            .split("http://127.0.0.1:")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {banner:?}"));
        served.port = port;
        served.banner = banner;
        served
    }

    /// `http://guest:guest@127.0.0.1:PORT` (the test broker's login).
    pub(crate) fn base(&self) -> String {
        format!("http://guest:guest@127.0.0.1:{}", self.port)
    }

    /// SIGTERM, then its exit code (within 10 s).
    pub(crate) fn stop(mut self) -> Option<i32> {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// One HTTP answer.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    /// Status line and headers.
    pub(crate) head: String,
    pub(crate) body: String,
}

/// `method path` on the console (one request per connection), with the
/// test broker's login unless `login` is `None`, a form body for a POST,
/// and an `Origin` header if given.
pub(crate) async fn http(
    port: u16,
    method: &str,
    path: &str,
    login: Option<&str>,
    form: &str,
    origin: Option<&str>,
) -> Reply {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        form.len()
    );
    if let Some(login) = login {
        let encoded = base64::engine::general_purpose::STANDARD.encode(login);
        req.push_str(&format!("Authorization: Basic {encoded}\r\n"));
    }
    if !form.is_empty() {
        req.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
    }
    if let Some(origin) = origin {
        req.push_str(&format!("Origin: {origin}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(form);
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    Reply {
        status: head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
        head: head.to_owned(),
        body: body.to_owned(),
    }
}

/// chromedriver (in a process group of its own, with the Chromium it
/// starts) and a WebDriver session on headless Chromium with a fresh
/// profile directory. Dropping it kills the group and removes the profile.
pub(crate) struct Browser {
    pub(crate) client: Option<Client>,
    driver: Child,
    profile: PathBuf,
}

impl Browser {
    pub(crate) async fn start(width: u32, height: u32) -> Browser {
        assert!(
            std::path::Path::new(CHROMEDRIVER).exists(),
            "{CHROMEDRIVER} is missing: the console's browser test needs Debian's Chromium and chromedriver; install them with `apt-get install -y chromium chromium-driver` (.ci/run does this)"
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let profile = std::env::temp_dir().join(crate::common::unique("chromium-profile"));
        std::fs::create_dir_all(&profile).unwrap();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap();
        let mut browser = Browser {
            client: None,
            driver,
            profile,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let args = vec![
            "--headless".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            format!("--window-size={width},{height}"),
            format!("--user-data-dir={}", browser.profile.display()),
        ];
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".to_owned(),
            serde_json::json!({ "binary": CHROMIUM, "args": args }),
        );
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .unwrap_or_else(|e| panic!("no WebDriver session from chromedriver: {e}"));
        browser.client = Some(client);
        browser
    }

    pub(crate) fn client(&self) -> &Client {
        self.client.as_ref().unwrap()
    }

    /// Ends the session (Chromium exits), then the driver.
    pub(crate) async fn close(mut self) {
        if let Some(client) = self.client.take() {
            let _ = client.close().await;
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The group: chromedriver and every Chromium process it started.
        let group = format!("-{}", self.driver.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// Where the screenshot goes: `$CARGO_TARGET_DIR`, else `target/` in the
/// workspace.
pub(crate) fn screenshot_path(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    std::fs::create_dir_all(&target).unwrap();
    target.join(name)
}
