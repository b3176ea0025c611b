//! The HTTP client of the alert webhooks and of `mqkit dlq list` (the
//! RabbitMQ management API): reqwest over rustls with ring, for `http://`
//! and `https://`, with a timeout per request, connection pooling,
//! redirects, and proxies from `HTTPS_PROXY` / `HTTP_PROXY` / `ALL_PROXY`
//! / `NO_PROXY` (a loopback server is always reached directly: no proxy
//! can reach this machine's loopback). Certificates are checked against the
//! platform's roots plus any extra CA certificates ([`read_ca_file`],
//! `MQKIT_DLQ_ALERT_CA_FILE`).
//!
//! Entry points: [`parse_url`], [`read_ca_file`], [`Client::new`] and
//! [`Client::send`]. Error texts never quote a URL (webhook URLs carry
//! their secret in the query); callers name the server with a masked URL.

use std::path::Path;
use std::time::Duration;

use reqwest::{Certificate, RequestBuilder};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;

pub(crate) use reqwest::{Method, Url};

/// An HTTP response: status and body.
#[derive(Debug)]
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) body: Vec<u8>,
}

/// Why a request got no response. URLs in here are already masked.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HttpError {
    /// The URL is not `http(s)://host[:port]/…`.
    #[error("`{url}` is not an http:// or https:// URL ({problem})")]
    BadUrl { url: String, problem: String },
    /// The client could not be built (no CA certificates, a bad one).
    #[error("cannot set up the HTTP client: {0}")]
    Setup(String),
    /// The server's certificate was refused (or the TLS handshake failed).
    #[error("TLS with {authority} failed: {problem}")]
    Tls { authority: String, problem: String },
    /// Connecting, sending or reading failed.
    #[error("{0}")]
    Io(String),
    /// No complete answer in time.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// Parses `url`, which must be `http://` or `https://` with a host; `shown`
/// is how to name it in errors (masked).
pub(crate) fn parse_url(url: &str, shown: &str) -> Result<Url, HttpError> {
    let bad = |problem: String| HttpError::BadUrl {
        url: shown.to_owned(),
        problem,
    };
    // url's parse errors name the problem, never the URL.
    let parsed = Url::parse(url.trim()).map_err(|e| bad(format!("cannot parse it: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(bad("it must start with http:// or https://".to_owned()));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(bad("no host".to_owned()));
    }
    Ok(parsed)
}

/// Reads a PEM file of CA certificates; the error says what is wrong with
/// it (not found, unreadable, no certificate, not a certificate).
#[cfg_attr(not(feature = "dlq"), allow(dead_code))]
pub(crate) fn read_ca_file(path: &Path) -> Result<Vec<Certificate>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read it: {e}"))?;
    let mut certificates = Vec::new();
    for (i, der) in CertificateDer::pem_slice_iter(&pem).enumerate() {
        let der = der.map_err(|e| format!("certificate {} is not valid PEM: {e}", i + 1))?;
        // What the verifier will do with it, so a broken one fails now.
        rustls::RootCertStore::empty()
            .add(der.clone())
            .map_err(|e| format!("certificate {} is not a usable CA certificate: {e}", i + 1))?;
        certificates.push(
            Certificate::from_der(&der)
                .map_err(|e| format!("certificate {}: {}", i + 1, chain(&e)))?,
        );
    }
    if certificates.is_empty() {
        return Err(
            "no certificate in it; it must hold PEM blocks (-----BEGIN CERTIFICATE-----)"
                .to_owned(),
        );
    }
    Ok(certificates)
}

/// A pooled client for one server (a webhook, the management API).
#[derive(Debug, Clone)]
pub(crate) struct Client {
    inner: reqwest::Client,
    timeout: Duration,
}

impl Client {
    /// A client for requests to `url`'s server, each bounded by `timeout`
    /// (connecting, TLS, sending and reading the whole answer), trusting
    /// the platform's roots and `extra_roots`.
    pub(crate) fn new(
        url: &Url,
        timeout: Duration,
        extra_roots: Vec<Certificate>,
    ) -> Result<Client, HttpError> {
        crate::app::crypto::install_default_provider();
        let builder = || {
            let builder = reqwest::Client::builder()
                .timeout(timeout)
                .user_agent(concat!("mqkit/", env!("CARGO_PKG_VERSION")));
            if is_loopback(url) {
                builder.no_proxy()
            } else {
                builder
            }
        };
        let inner = match builder().tls_certs_merge(extra_roots.clone()).build() {
            Ok(client) => client,
            // A machine without a CA store can still speak plain http.
            Err(_) if url.scheme() == "http" => builder()
                .tls_certs_only(extra_roots)
                .build()
                .map_err(|e| HttpError::Setup(chain(&e)))?,
            Err(e) => {
                return Err(HttpError::Setup(format!(
                    "{}; install the system's CA certificates (e.g. the ca-certificates package)",
                    chain(&e)
                )));
            }
        };
        Ok(Client { inner, timeout })
    }

    /// Sends `method url` (with what `configure` adds: headers, a body)
    /// and reads the whole answer.
    pub(crate) async fn send(
        &self,
        method: Method,
        url: Url,
        configure: impl FnOnce(RequestBuilder) -> RequestBuilder,
    ) -> Result<Response, HttpError> {
        let authority = authority(&url);
        let error = |e: reqwest::Error| self.error(e, &authority);
        let response = configure(self.inner.request(method, url))
            .send()
            .await
            .map_err(error)?;
        let status = response.status().as_u16();
        let body = response.bytes().await.map_err(error)?.to_vec();
        Ok(Response { status, body })
    }

    fn error(&self, e: reqwest::Error, authority: &str) -> HttpError {
        if e.is_timeout() {
            return HttpError::Timeout(self.timeout);
        }
        let e = e.without_url();
        if let Some(tls) = tls_error(&e) {
            return HttpError::Tls {
                authority: authority.to_owned(),
                problem: tls,
            };
        }
        if e.is_connect() {
            return HttpError::Io(format!("cannot connect to {authority}: {}", root_cause(&e)));
        }
        HttpError::Io(chain(&e))
    }
}

/// `host:port` of `url`, as in "cannot connect to 127.0.0.1:15672".
fn authority(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port_or_known_default() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    }
}

fn is_loopback(url: &Url) -> bool {
    let host = url.host_str().unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    }
}

/// The cause of `e`: for an io error that wraps another error, that one
/// (`io::Error::source` skips it: it returns the wrapped error's source).
fn cause<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a (dyn std::error::Error + 'static)> {
    match e
        .downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
    {
        Some(inner) => Some(inner),
        None => e.source(),
    }
}

/// The error and its causes, `: `-separated, repeats left out.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = vec![e.to_string()];
    let mut source = cause(e);
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = cause(s);
    }
    parts.join(": ")
}

/// The innermost cause (an io error's own text, such as "Connection
/// refused (os error 111)").
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut last = e;
    while let Some(s) = cause(last) {
        last = s;
    }
    last.to_string()
}

/// The rustls error among the causes (the handshake failed or the
/// certificate was refused), as text.
fn tls_error(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut source = Some(e);
    while let Some(s) = source {
        if let Some(tls) = s.downcast_ref::<rustls::Error>() {
            return Some(tls.to_string());
        }
        source = cause(s);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_http_and_https_urls_only() {
        let t = parse_url("http://127.0.0.1:15672", "x").map_err(|e| e.to_string());
        let t = t.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(authority(&t), "127.0.0.1:15672");
        assert!(is_loopback(&t));
        let t = parse_url("https://hooks.local/send?key=abc", "x");
        let t = t
            .map_err(|e| e.to_string())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(authority(&t), "hooks.local:443");
        assert!(!is_loopback(&t));
        for loopback in [
            "http://localhost/x",
            "https://[::1]:8443/",
            "http://127.8.0.1",
        ] {
            let url = parse_url(loopback, "x").map_err(|e| e.to_string());
            assert!(
                is_loopback(&url.unwrap_or_else(|e| panic!("{e}"))),
                "{loopback}"
            );
        }
        let err = parse_url("ftp://h/x?key=pw", "ftp://h/x?key=****").map_err(|e| e.to_string());
        let err = err.err().unwrap_or_default();
        assert_eq!(
            err,
            "`ftp://h/x?key=****` is not an http:// or https:// URL (it must start with http:// or https://)"
        );
        assert!(parse_url("h:1/x", "h:1/x").is_err());
        assert!(parse_url("not a url", "not a url").is_err());
    }

    #[test]
    fn ca_files_that_cannot_be_used_say_why() {
        let dir = std::env::temp_dir().join(format!("mqkit-ca-test-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let missing = read_ca_file(&dir.join("missing.pem"))
            .err()
            .unwrap_or_default();
        assert!(missing.starts_with("cannot read it: "), "{missing}");
        let empty = dir.join("empty.pem");
        let _ = std::fs::write(&empty, "not a certificate\n");
        let err = read_ca_file(&empty).err().unwrap_or_default();
        assert!(err.starts_with("no certificate in it"), "{err}");
        let garbage = dir.join("garbage.pem");
        let _ = std::fs::write(
            &garbage,
            "-----BEGIN CERTIFICATE-----\nTUlJQm5vdCBhIGNlcnQ=\n-----END CERTIFICATE-----\n",
        );
        let err = read_ca_file(&garbage).err().unwrap_or_default();
        assert!(
            err.starts_with("certificate 1 is not a usable CA certificate"),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
