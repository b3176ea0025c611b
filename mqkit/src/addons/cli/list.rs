//! `mqkit dlq list`: queue depths from the RabbitMQ management HTTP API
//! (`GET /api/queues/{vhost}`), with the user and password of `--url`.

use std::process::ExitCode;
use std::time::Duration;

use base64::Engine as _;
use hyper::Method;
use hyper::header::{ACCEPT, AUTHORIZATION};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;

use super::{CliError, ListArgs, one_line, shown};
use crate::addons::dlq::http::{self, Target};
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
    let base = Target::parse(&args.api_url, &api).map_err(|e| management(e.to_string()))?;
    let user = &uri.authority.userinfo.username;
    let credentials = base64::engine::general_purpose::STANDARD
        .encode(format!("{user}:{}", uri.authority.userinfo.password));
    let path = format!(
        "/api/queues/{}?columns=name,messages,messages_ready,messages_unacknowledged,consumers",
        utf8_percent_encode(&uri.vhost, NON_ALPHANUMERIC)
    );
    let response = http::send(
        Method::GET,
        &base.with_path(&path),
        &[
            (AUTHORIZATION, format!("Basic {credentials}")),
            (ACCEPT, "application/json".to_owned()),
        ],
        Vec::new(),
        API_TIMEOUT,
    )
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
    rows.retain(|r| glob_match(&args.pattern, &r.name));
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

/// `*` matches any text, `?` one character; everything else itself.
fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::glob_match;

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
    }
}
