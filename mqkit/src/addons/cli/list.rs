//! `mqkit dlq list`: queue depths from the RabbitMQ management HTTP API
//! (`GET /api/queues/{vhost}`, `http://` or `https://`), with the user and
//! password of `--url`, filtered by a glob (`glob::Pattern`).

use std::process::ExitCode;
use std::time::Duration;

use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;

use super::{CliError, ListArgs, one_line, shown};
use crate::addons::dlq::http::{self, Client, Method};
use crate::app::config::split_urls;

/// How long the management API may take to answer.
const API_TIMEOUT: Duration = Duration::from_secs(10);

/// One row of `/api/queues` (statistics may be missing right after a
/// queue is declared).
#[derive(Debug, Deserialize)]
struct QueueRow {
    name: String,
    messages: Option<u64>,
    messages_ready: Option<u64>,
    messages_unacknowledged: Option<u64>,
    consumers: Option<u64>,
}

pub(super) async fn list(urls: &str, args: &ListArgs) -> Result<ExitCode, CliError> {
    let first = split_urls(urls).into_iter().next().unwrap_or_default();
    let uri: lapin::uri::AMQPUri = first.parse().map_err(|e: String| CliError::BadUrl {
        url: shown(&first),
        problem: e,
    })?;
    let api = shown(&args.api_url);
    let management = |problem: String| CliError::Management {
        api: api.clone(),
        problem,
    };
    let mut url = http::parse_url(&args.api_url, &api).map_err(|e| management(e.to_string()))?;
    let client =
        Client::new(&url, API_TIMEOUT, Vec::new()).map_err(|e| management(e.to_string()))?;
    let user = &uri.authority.userinfo.username;
    let password = &uri.authority.userinfo.password;
    // Below the API URL's own path, if it has one (a reverse proxy's prefix).
    let path = format!(
        "{}/api/queues/{}",
        url.path().trim_end_matches('/'),
        utf8_percent_encode(&uri.vhost, NON_ALPHANUMERIC)
    );
    url.set_path(&path);
    url.set_query(Some(
        "columns=name,messages,messages_ready,messages_unacknowledged,consumers",
    ));
    let response = client
        .send(Method::GET, url, |request| {
            request
                .basic_auth(user, Some(password))
                .header("accept", "application/json")
        })
        .await
        .map_err(|e| {
        management(format!(
            "{e}. Is the management plugin enabled (rabbitmq-plugins enable rabbitmq_management) and --api-url / MQKIT_MGMT_URL right?"
        ))
    })?;
    match response.status {
        200 => {}
        401 => {
            return Err(management(format!(
                "login refused for user `{user}` (401); the API uses the user and password of --url / MQKIT_AMQP_URL, and the user needs the `management` or `monitoring` tag"
            )));
        }
        404 => {
            return Err(management(format!(
                "vhost `{}` not found (404); check the vhost in --url / MQKIT_AMQP_URL",
                uri.vhost
            )));
        }
        status => {
            let body = String::from_utf8_lossy(&response.body);
            return Err(management(format!(
                "answered {status}: {}",
                one_line(&body.chars().take(200).collect::<String>())
            )));
        }
    }
    let mut rows: Vec<QueueRow> = serde_json::from_slice(&response.body)
        .map_err(|e| management(format!("unexpected answer to GET /api/queues: {e}")))?;
    rows.retain(|r| args.pattern.matches(&r.name));
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    if rows.is_empty() {
        println!(
            "no queues match `{}` in vhost `{}`",
            args.pattern, uri.vhost
        );
        return Ok(ExitCode::SUCCESS);
    }
    let width = rows.iter().map(|r| r.name.len()).max().unwrap_or(5).max(5);
    println!(
        "{:<width$}  {:>9}  {:>9}  {:>9}  {:>9}",
        "QUEUE", "MESSAGES", "READY", "UNACKED", "CONSUMERS"
    );
    let n = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_else(|| "-".to_owned());
    for r in &rows {
        println!(
            "{:<width$}  {:>9}  {:>9}  {:>9}  {:>9}",
            r.name,
            n(r.messages),
            n(r.messages_ready),
            n(r.messages_unacknowledged),
            n(r.consumers)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `--pattern`: a glob (`*` any text, `?` one character, `[…]` one of
/// the characters); a bad one is a usage error naming the problem.
pub(super) fn parse_pattern(pattern: &str) -> Result<glob::Pattern, String> {
    glob::Pattern::new(pattern).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::parse_pattern;

    fn glob_match(pattern: &str, name: &str) -> bool {
        parse_pattern(pattern)
            .unwrap_or_else(|e| panic!("{pattern}: {e}"))
            .matches(name)
    }

    #[test]
    fn globs() {
        assert!(glob_match("dlq.*", "dlq.order"));
        assert!(glob_match("dlq.*", "dlq."));
        assert!(!glob_match("dlq.*", "order"));
        assert!(!glob_match("dlq.*", "xdlq.order"));
        assert!(glob_match("*.dlq", "order.dlq"));
        assert!(glob_match("d?q.*r", "dlq.order"));
        assert!(glob_match("*", ""));
        assert!(!glob_match("a", "ab"));
        assert!(glob_match("a*b*c", "aXbYbZc"));
        // Queue names may hold `/`; `*` still matches any text.
        assert!(glob_match("dlq.*", "dlq.billing/v2"));
        assert!(glob_match("dlq.[ab]*", "dlq.b1"));
        assert!(parse_pattern("dlq.[").is_err());
    }
}
