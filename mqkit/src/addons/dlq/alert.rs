//! Dead-letter alerts to a chat-robot webhook (`MQKIT_DLQ_ALERT_WEBHOOK`,
//! `http://` or `https://`): `POST` with `Content-Type: application/json`
//! and the body of `MQKIT_DLQ_ALERT_FORMAT` (WeCom's
//! `{"msgtype":"text","text":{"content":"…"}}` by default), signed with
//! `MQKIT_DLQ_ALERT_SECRET` where the format signs (`super::format`).
//!
//! At most one alert per original queue per window (a minute by default):
//! the first dead letter of a quiet queue is sent at once, the ones that
//! follow within the window are folded into one alert at the window's end,
//! with their count. The archiver hands events over an unbounded channel
//! and never waits: each POST runs in its own task with a timeout, and a
//! failure is logged, not retried. Entry points: [`AlertSettings::from_config`]
//! (startup checks), [`spawn`].

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tracing::{info, warn};

use super::format::{AlertFormat, FORMAT_NAMES, Secret};
use super::http::{self, Client, HttpError, Method, Url};
use crate::app::config::Config;
use crate::app::error::Error;
use crate::core::mask::mask_secrets;

/// Error texts in an alert are cut to this many bytes.
const MAX_ERROR_IN_ALERT: usize = 500;

/// One newly archived dead letter.
#[derive(Debug, Clone)]
pub(crate) struct AlertEvent {
    pub(crate) queue: String,
    pub(crate) dlq: String,
    pub(crate) kind: String,
    pub(crate) error: String,
    pub(crate) message_id: String,
}

/// Where alerts go, what they look like and how often.
#[derive(Debug, Clone)]
pub(crate) struct AlertSettings {
    target: Url,
    /// The webhook URL for logs, its secrets masked.
    shown: String,
    format: AlertFormat,
    secret: Option<Secret>,
    client: Client,
    window: Duration,
}

impl AlertSettings {
    /// Checks the alert settings of `config` for the webhook `hook`
    /// (URL, format, secret, CA file) and builds the HTTP client; nothing
    /// is connected yet.
    pub(crate) fn from_config(config: &Config, hook: &str) -> Result<AlertSettings, Error> {
        let shown = mask_secrets(hook);
        let target = http::parse_url(hook, &shown).map_err(|e| Error::DlqConfig {
            variable: "MQKIT_DLQ_ALERT_WEBHOOK",
            value: shown.clone(),
            problem: e.to_string(),
        })?;
        let format = match config.dlq_alert_format.as_deref() {
            None => AlertFormat::WeCom,
            Some(name) => AlertFormat::parse(name).ok_or_else(|| Error::DlqConfig {
                variable: "MQKIT_DLQ_ALERT_FORMAT",
                value: name.to_owned(),
                problem: format!("unknown format; use one of {FORMAT_NAMES}"),
            })?,
        };
        let secret = config.dlq_alert_secret.as_deref().and_then(Secret::new);
        // An error, not a warning: a secret is set because the robot was
        // set up to check signatures, so a format that cannot sign would
        // have every alert refused, found only at the first dead letter
        // (most likely MQKIT_DLQ_ALERT_FORMAT was forgotten).
        if secret.is_some() && !format.signs() {
            return Err(Error::DlqConfig {
                variable: "MQKIT_DLQ_ALERT_SECRET",
                value: "****".to_owned(),
                problem: format!(
                    "MQKIT_DLQ_ALERT_FORMAT={} does not sign its requests, so the secret would be unused; set MQKIT_DLQ_ALERT_FORMAT=dingtalk or feishu, or unset MQKIT_DLQ_ALERT_SECRET",
                    format.name()
                ),
            });
        }
        let extra_roots = match &config.dlq_alert_ca_file {
            Some(path) => http::read_ca_file(path).map_err(|problem| Error::DlqConfig {
                variable: "MQKIT_DLQ_ALERT_CA_FILE",
                value: path.display().to_string(),
                problem: format!("{problem}; it must be a PEM file of CA certificates"),
            })?,
            None => Vec::new(),
        };
        let client = Client::new(&target, config.dlq_tuning.alert_timeout, extra_roots).map_err(
            |e: HttpError| Error::DlqConfig {
                variable: "MQKIT_DLQ_ALERT_WEBHOOK",
                value: shown.clone(),
                problem: e.to_string(),
            },
        )?;
        Ok(AlertSettings {
            target,
            shown,
            format,
            secret,
            client,
            window: config.dlq_tuning.alert_window,
        })
    }
}

/// What was folded into the next alert of one queue.
#[derive(Debug, Default)]
struct Pending {
    count: u64,
    kinds: BTreeMap<String, u64>,
    latest: Option<AlertEvent>,
}

#[derive(Debug, Default)]
struct QueueState {
    last_sent: Option<Instant>,
    pending: Pending,
}

/// Starts the alert task. It ends after the sender is dropped, once it has
/// sent what was still pending (ignoring the window) and every POST has
/// finished or timed out.
pub(crate) fn spawn(
    settings: AlertSettings,
) -> (mpsc::UnboundedSender<AlertEvent>, JoinHandle<()>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (tx, tokio::spawn(run(settings, rx)))
}

async fn run(settings: AlertSettings, mut rx: mpsc::UnboundedReceiver<AlertEvent>) {
    let mut queues: HashMap<String, QueueState> = HashMap::new();
    let mut posts = JoinSet::new();
    loop {
        let next_flush = queues
            .values()
            .filter(|q| q.pending.count > 0)
            .filter_map(|q| q.last_sent.map(|t| t + settings.window))
            .min();
        tokio::select! {
            event = rx.recv() => match event {
                Some(event) => {
                    let state = queues.entry(event.queue.clone()).or_default();
                    state.pending.count += 1;
                    *state.pending.kinds.entry(event.kind.clone()).or_default() += 1;
                    state.pending.latest = Some(event);
                    let quiet = state.last_sent.is_none_or(|t| t.elapsed() >= settings.window);
                    if quiet {
                        flush(&settings, state, &mut posts);
                    }
                }
                None => break,
            },
            _ = sleep_until(next_flush) => {
                let now = Instant::now();
                for state in queues.values_mut() {
                    let due = state.last_sent.is_none_or(|t| t + settings.window <= now);
                    if state.pending.count > 0 && due {
                        flush(&settings, state, &mut posts);
                    }
                }
            }
            Some(_) = posts.join_next(), if !posts.is_empty() => {}
        }
    }
    for state in queues.values_mut() {
        if state.pending.count > 0 {
            flush(&settings, state, &mut posts);
        }
    }
    while posts.join_next().await.is_some() {}
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn flush(settings: &AlertSettings, state: &mut QueueState, posts: &mut JoinSet<()>) {
    let pending = std::mem::take(&mut state.pending);
    state.last_sent = Some(Instant::now());
    let Some(content) = content(&pending) else {
        return;
    };
    let settings = settings.clone();
    let count = pending.count;
    let queue = pending.latest.map(|e| e.queue).unwrap_or_default();
    posts.spawn(async move {
        // Signed now, not when the dead letter came: robots refuse old
        // timestamps.
        let (url, body) = settings.format.request(
            &settings.target,
            &content,
            settings.secret.as_ref(),
            SystemTime::now(),
        );
        let sent = settings
            .client
            .send(Method::POST, url, |request| {
                request
                    .header("content-type", "application/json")
                    .body(body.to_string())
            })
            .await;
        let delivered = match sent {
            Ok(r) if (200..300).contains(&r.status) => {
                info!(queue, count, webhook = %settings.shown, "dead-letter alert sent");
                "yes"
            }
            Ok(r) => {
                warn!(queue, count, webhook = %settings.shown, status = r.status, body = %String::from_utf8_lossy(&r.body), "dead-letter alert refused by the webhook; not retried (the archive has every row)");
                "no"
            }
            Err(e @ HttpError::Tls { .. }) => {
                warn!(queue, count, webhook = %settings.shown, error = %e, "dead-letter alert not delivered: the webhook's certificate was refused; not retried (the archive has every row). Check the webhook's certificate and host name, or trust its CA with MQKIT_DLQ_ALERT_CA_FILE");
                "no"
            }
            Err(e) => {
                warn!(queue, count, webhook = %settings.shown, error = %e, "dead-letter alert not delivered; not retried (the archive has every row)");
                "no"
            }
        };
        metrics::counter!("mqkit_dlq_alerts_total", "queue" => queue, "delivered" => delivered)
            .increment(1);
    });
}

/// The alert text: count first (so a reader and a test find it), then the
/// queue, the kinds, and the latest dead letter's id, kind and error.
fn content(p: &Pending) -> Option<String> {
    let e = p.latest.as_ref()?;
    let kinds = p
        .kinds
        .iter()
        .map(|(k, n)| format!("{k} ×{n}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut error = e.error.as_str();
    if error.len() > MAX_ERROR_IN_ALERT {
        let mut end = MAX_ERROR_IN_ALERT;
        while !error.is_char_boundary(end) {
            end -= 1;
        }
        error = &error[..end];
    }
    Some(format!(
        "mqkit: {count} dead letter{s} from queue `{queue}` (archived from `{dlq}`); kinds: {kinds}. Latest: message id `{id}`, kind `{kind}`, error: {error}",
        count = p.count,
        s = if p.count == 1 { "" } else { "s" },
        queue = e.queue,
        dlq = e.dlq,
        id = e.message_id,
        kind = e.kind,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_names_count_queue_kind_id_and_error() {
        let mut p = Pending::default();
        assert_eq!(content(&p), None);
        for kind in ["decode", "rejected", "decode"] {
            p.count += 1;
            *p.kinds.entry(kind.to_owned()).or_default() += 1;
            p.latest = Some(AlertEvent {
                queue: "order".into(),
                dlq: "dlq.order".into(),
                kind: kind.into(),
                error: "x".repeat(600),
                message_id: "m-9".into(),
            });
        }
        let c = content(&p).unwrap_or_default();
        assert!(c.starts_with("mqkit: 3 dead letters from queue `order` (archived from `dlq.order`); kinds: decode ×2, rejected ×1. Latest: message id `m-9`, kind `decode`, error: xxx"), "{c}");
        assert!(c.len() < 800);
    }
}
