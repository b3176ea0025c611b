//! Who may use the console: HTTP basic auth with the user and password of
//! the AMQP URL ([`Credentials`], compared in constant time), and for every
//! POST a same-origin check ([`same_origin`]) against cross-site form posts.
//! [`guard`] is the middleware that applies both, and adds the security
//! headers every response carries.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, HOST, ORIGIN, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use subtle::ConstantTimeEq as _;

use super::Console;
use super::pages;
use crate::addons::cli::{CliError, shown};
use crate::app::config::split_urls;

/// The login the console accepts.
pub(super) struct Credentials {
    user: String,
    password: String,
}

impl Credentials {
    /// The user and password of the first URL in `urls` (`--url`); lapin's
    /// defaults (guest, guest) when it names none.
    pub(super) fn from_amqp_url(urls: &str) -> Result<Credentials, CliError> {
        let first = split_urls(urls).into_iter().next().unwrap_or_default();
        let uri: lapin::uri::AMQPUri = first.parse().map_err(|e: String| CliError::BadUrl {
            url: shown(&first),
            problem: e,
        })?;
        Ok(Credentials {
            user: uri.authority.userinfo.username,
            password: uri.authority.userinfo.password,
        })
    }

    /// Whether an `Authorization` header value carries this login.
    pub(super) fn accepts(&self, header: Option<&HeaderValue>) -> bool {
        let Some((scheme, encoded)) = header
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.trim().split_once(' '))
        else {
            return false;
        };
        if !scheme.eq_ignore_ascii_case("basic") {
            return false;
        }
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
            return false;
        };
        let Some(colon) = decoded.iter().position(|b| *b == b':') else {
            return false;
        };
        let (user, password) = (&decoded[..colon], &decoded[colon + 1..]);
        // Both compared, whatever the first gave (no early exit).
        let ok = user.ct_eq(self.user.as_bytes()) & password.ct_eq(self.password.as_bytes());
        ok.into()
    }
}

/// `Err` (why) when the request says it comes from another site: an
/// `Origin` whose host and port are not the `Host` the request was sent
/// to, or `Sec-Fetch-Site` other than `same-origin` / `none`. Requests
/// without either header (command-line clients) pass.
pub(super) fn same_origin(headers: &HeaderMap) -> Result<(), String> {
    let text = |name: &str| {
        headers
            .get(name)
            .map(|v| v.to_str().unwrap_or("(not text)"))
    };
    match text("sec-fetch-site") {
        None | Some("same-origin" | "none") => {}
        Some(site) => return Err(format!("the browser says it comes from a `{site}` page")),
    }
    let Some(origin) = text(ORIGIN.as_str()) else {
        return Ok(());
    };
    let host = text(HOST.as_str()).unwrap_or_default();
    let authority = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    if authority.is_some_and(|a| a.eq_ignore_ascii_case(host.trim())) {
        Ok(())
    } else {
        Err(format!(
            "its Origin `{origin}` is not this console (`{host}`)"
        ))
    }
}

/// The middleware: login, then the same-origin check for POSTs, then the
/// handler; security headers on every answer.
pub(super) async fn guard(
    State(console): State<Arc<Console>>,
    request: Request,
    next: Next,
) -> Response {
    let mut response = if console
        .credentials
        .as_ref()
        .is_some_and(|c| !c.accepts(request.headers().get(AUTHORIZATION)))
    {
        let mut r = pages::error(
            StatusCode::UNAUTHORIZED,
            "Login required",
            "Log in with the user and password of the AMQP URL the console was started with (--url / MQKIT_AMQP_URL).",
        )
        .into_response();
        r.headers_mut().insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"mqkit\", charset=\"UTF-8\""),
        );
        r
    } else if let Some(why) = (request.method() == Method::POST)
        .then(|| same_origin(request.headers()).err())
        .flatten()
    {
        pages::error(
            StatusCode::FORBIDDEN,
            "Cross-site request refused",
            &format!(
                "This form was posted from another site: {why}. Open the console itself and submit the form there."
            ),
        )
        .into_response()
    } else {
        next.run(request).await
    };
    let headers = response.headers_mut();
    for (name, value) in [
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        // Not `no-referrer`: with it browsers send `Origin: null` on posts.
        ("referrer-policy", "same-origin"),
        ("cache-control", "no-store"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user_pass: &str) -> HeaderValue {
        let encoded = base64::engine::general_purpose::STANDARD.encode(user_pass);
        HeaderValue::from_str(&format!("Basic {encoded}")).unwrap_or(HeaderValue::from_static(""))
    }

    #[test]
    fn basic_auth_needs_the_amqp_urls_user_and_password() {
        let c = Credentials::from_amqp_url("amqp://ops:s%3Acret@h:5672/%2f,amqp://x:y@h2/%2f")
            .map_err(|e| e.to_string());
        let Ok(c) = c else {
            panic!("{c:?}", c = c.err())
        };
        assert!(c.accepts(Some(&basic("ops:s:cret"))));
        assert!(c.accepts(Some(&HeaderValue::from_static("basic b3BzOnM6Y3JldA=="))));
        for wrong in [
            "ops:s:cre",
            "ops:s:crett",
            "Ops:s:cret",
            ":s:cret",
            "ops",
            "x:y",
        ] {
            assert!(!c.accepts(Some(&basic(wrong))), "{wrong}");
        }
        assert!(!c.accepts(None));
        assert!(!c.accepts(Some(&HeaderValue::from_static("Bearer abc"))));
        assert!(!c.accepts(Some(&HeaderValue::from_static("Basic !!!"))));
        let guest = Credentials::from_amqp_url("amqp://127.0.0.1:5672/%2f");
        assert!(guest.is_ok_and(|g| g.accepts(Some(&basic("guest:guest")))));
        let bad = Credentials::from_amqp_url("http://u:pw@h").map(|_| ());
        let text = bad.map_err(|e| e.to_string()).err().unwrap_or_default();
        assert!(
            text.contains("invalid --url") && !text.contains("pw"),
            "{text}"
        );
    }

    #[test]
    fn posts_from_another_origin_are_refused() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, HeaderValue::from_static(v));
            }
            h
        };
        let host = ("host", "127.0.0.1:8088");
        assert!(same_origin(&headers(&[host])).is_ok());
        assert!(same_origin(&headers(&[host, ("origin", "http://127.0.0.1:8088")])).is_ok());
        assert!(
            same_origin(&headers(&[
                host,
                ("origin", "http://127.0.0.1:8088"),
                ("sec-fetch-site", "same-origin"),
            ]))
            .is_ok()
        );
        for origin in [
            "http://127.0.0.1:8089",
            "http://evil.example",
            "null",
            "http://127.0.0.1:8088.evil.example",
        ] {
            let why = same_origin(&headers(&[host, ("origin", origin)]));
            assert_eq!(
                why,
                Err(format!(
                    "its Origin `{origin}` is not this console (`127.0.0.1:8088`)"
                ))
            );
        }
        let why = same_origin(&headers(&[host, ("sec-fetch-site", "cross-site")]));
        assert_eq!(
            why,
            Err("the browser says it comes from a `cross-site` page".to_owned())
        );
        assert!(same_origin(&headers(&[("origin", "http://127.0.0.1:8088")])).is_err());
    }
}
