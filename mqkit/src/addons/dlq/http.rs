//! A one-shot HTTP/1.1 request over a fresh tokio `TcpStream` with hyper's
//! connection API, bounded by a timeout: enough for alert webhooks and the
//! RabbitMQ management API, without a client pool or TLS.

use std::time::Duration;

use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::header::{CONNECTION, HOST, HeaderName, HeaderValue};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// An HTTP response: status and body.
#[derive(Debug)]
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) body: Vec<u8>,
}

/// Why a request got no response. URLs in here are already masked.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HttpError {
    /// The URL is not `http://host[:port]/…`.
    #[error("`{url}` is not an http:// URL ({problem})")]
    BadUrl { url: String, problem: String },
    /// Connecting, sending or reading failed.
    #[error("{0}")]
    Io(String),
    /// No complete answer in time.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// A parsed `http://` URL.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    host: String,
    port: u16,
    authority: String,
    path: String,
}

impl Target {
    /// Parses `url`; `shown` is how to name it in errors (masked).
    pub(crate) fn parse(url: &str, shown: &str) -> Result<Target, HttpError> {
        let bad = |problem: &str| HttpError::BadUrl {
            url: shown.to_owned(),
            problem: problem.to_owned(),
        };
        let uri: Uri = url.trim().parse().map_err(|_| bad("cannot parse it"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(bad(
                    "https is not supported; point it at an http:// endpoint or a local relay",
                ));
            }
            _ => return Err(bad("it must start with http://")),
        }
        let host = uri
            .host()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| bad("no host"))?;
        let port = uri.port_u16().unwrap_or(80);
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let authority = match uri.port_u16() {
            Some(p) if host.contains(':') => format!("[{host}]:{p}"),
            Some(p) => format!("{host}:{p}"),
            None if host.contains(':') => format!("[{host}]"),
            None => host.clone(),
        };
        let path = uri
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "/".to_owned());
        Ok(Target {
            host,
            port,
            authority,
            path,
        })
    }

    /// The same server with another path (and query).
    #[cfg_attr(not(feature = "cli"), allow(dead_code))]
    pub(crate) fn with_path(&self, path: &str) -> Target {
        let base = self.path.trim_end_matches('/');
        Target {
            path: format!("{base}{path}"),
            ..self.clone()
        }
    }
}

/// Sends one request and reads the whole response, all within `timeout`.
pub(crate) async fn send(
    method: Method,
    target: &Target,
    headers: &[(HeaderName, String)],
    body: Vec<u8>,
    timeout: Duration,
) -> Result<Response, HttpError> {
    match tokio::time::timeout(timeout, exchange(method, target, headers, body)).await {
        Ok(result) => result,
        Err(_) => Err(HttpError::Timeout(timeout)),
    }
}

async fn exchange(
    method: Method,
    target: &Target,
    headers: &[(HeaderName, String)],
    body: Vec<u8>,
) -> Result<Response, HttpError> {
    let io = |e: &dyn std::fmt::Display| HttpError::Io(e.to_string());
    let stream = TcpStream::connect((target.host.as_str(), target.port))
        .await
        .map_err(|e| io(&format!("cannot connect to {}: {e}", target.authority)))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| io(&e))?;
    // The connection future drives the socket; it ends when the server closes
    // it, and is aborted here once the response is read.
    let driver = tokio::spawn(connection);
    let mut request = Request::builder()
        .method(method)
        .uri(target.path.as_str())
        .header(HOST, target.authority.as_str())
        .header(CONNECTION, "close");
    for (name, value) in headers {
        let value = HeaderValue::from_str(value).map_err(|e| io(&e))?;
        request = request.header(name, value);
    }
    let request = request
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| io(&e))?;
    let result = async {
        let response = sender.send_request(request).await.map_err(|e| io(&e))?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| io(&e))?
            .to_bytes()
            .to_vec();
        Ok(Response { status, body })
    }
    .await;
    driver.abort();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_http_urls_only() {
        let t = Target::parse("http://127.0.0.1:15672", "x").map_err(|e| e.to_string());
        let t = t.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((t.host.as_str(), t.port), ("127.0.0.1", 15672));
        assert_eq!(t.authority, "127.0.0.1:15672");
        assert_eq!(t.path, "/");
        assert_eq!(t.with_path("/api/queues").path, "/api/queues");
        let t = Target::parse("http://hooks.local/send?key=abc", "x");
        let t = t
            .map_err(|e| e.to_string())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((t.port, t.path.as_str()), (80, "/send?key=abc"));
        let err = Target::parse("https://h/x", "https://h/x").map(|_| ());
        assert!(matches!(err, Err(HttpError::BadUrl { .. })));
        assert!(Target::parse("h:1/x", "h:1/x").is_err());
    }
}
