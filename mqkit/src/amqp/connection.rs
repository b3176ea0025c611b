//! The one connection per process: connecting to a reachable URL of a list
//! (heartbeat, connection name, frame size), starting at a node chosen at
//! random per process and going on to the next node after a loss, with
//! errors that name each URL with its password masked.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use lapin::uri::AMQPUri;
use lapin::{Connection, ConnectionProperties};
use tracing::info;

use crate::core::mask::mask_password;

/// How to connect: the URLs (cluster nodes, tried in turn), the heartbeat
/// and the `connection_name` client property.
#[derive(Debug, Clone)]
pub(crate) struct ConnectOptions {
    pub(crate) urls: Vec<String>,
    pub(crate) heartbeat: Duration,
    pub(crate) connection_name: String,
    /// The index of the URL the next connection attempt starts at: random
    /// per process (so instances with the same list spread over the
    /// nodes), then the one after the node last connected to (so a
    /// reconnect after a node died tries the others first). Shared by
    /// clones.
    pub(crate) next: Arc<AtomicUsize>,
}

impl ConnectOptions {
    /// Options for `urls` whose first attempt starts at a random URL.
    pub(crate) fn new(urls: Vec<String>, heartbeat: Duration, connection_name: String) -> Self {
        let start = fastrand::usize(..urls.len().max(1));
        ConnectOptions {
            urls,
            heartbeat,
            connection_name,
            next: Arc::new(AtomicUsize::new(start)),
        }
    }

    /// The URLs in the order the next attempt tries them, with their index.
    fn in_turn(&self) -> impl Iterator<Item = (usize, &String)> {
        let n = self.urls.len();
        let start = self.next.load(Ordering::Relaxed) % n.max(1);
        (0..n).map(move |i| {
            let idx = (start + i) % n;
            (idx, &self.urls[idx])
        })
    }

    /// The URLs with passwords masked, comma-separated.
    pub(crate) fn masked_urls(&self) -> String {
        self.urls
            .iter()
            .map(|u| mask_password(u))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Tries each URL in turn from [`ConnectOptions::next`]; the error names
/// each URL (password masked).
pub(crate) async fn connect_any(config: &ConnectOptions) -> Result<Arc<Connection>, String> {
    let mut errors = Vec::new();
    for (idx, url) in config.in_turn() {
        match connect(url, config).await {
            Ok(c) => {
                config.next.store(idx + 1, Ordering::Relaxed);
                info!(url = %mask_password(url), heartbeat = ?config.heartbeat, name = %config.connection_name, "connected to RabbitMQ");
                return Ok(Arc::new(c));
            }
            Err(e) => errors.push(format!("{}: {e}", mask_password(url))),
        }
    }
    Err(errors.join("; "))
}

/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

async fn connect(url: &str, config: &ConnectOptions) -> Result<Connection, String> {
    let mut uri: AMQPUri = url
        .parse()
        .map_err(|e: String| format!("invalid AMQP URL ({e})"))?;
    let heartbeat = u16::try_from(config.heartbeat.as_secs()).unwrap_or(u16::MAX);
    uri.query.heartbeat = Some(heartbeat);
    // No frame_max of our own: the broker's (RabbitMQ: 128 KiB) is
    // negotiated unless the URL sets one. RabbitMQ sends a message's
    // properties in one frame, so a smaller frame_max makes every message
    // whose header block is larger than it (a big JWT, trace baggage) a
    // connection error that no consumer could get past. lapin's buffers
    // (32 frames each way) cost more resident memory at 128 KiB; see
    // ARCHITECTURE.md "Frame size".
    uri.query.connection_timeout =
        Some(u64::try_from(CONNECT_TIMEOUT.as_millis()).unwrap_or(u64::MAX));
    let properties =
        ConnectionProperties::default().with_connection_name(config.connection_name.clone().into());
    match tokio::time::timeout(CONNECT_TIMEOUT, Connection::connect_uri(uri, properties)).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {CONNECT_TIMEOUT:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(n: usize) -> ConnectOptions {
        let urls = (0..n).map(|i| format!("amqp://h{i}")).collect();
        ConnectOptions::new(urls, Duration::from_secs(10), "t".to_owned())
    }

    fn order(o: &ConnectOptions) -> Vec<usize> {
        o.in_turn().map(|(i, _)| i).collect()
    }

    #[test]
    fn every_url_is_tried_once_from_the_start_node_on() {
        let o = options(3);
        o.next.store(1, Ordering::Relaxed);
        assert_eq!(order(&o), [1, 2, 0]);
        // After connecting to node 2, a reconnect starts at the next one.
        o.next.store(3, Ordering::Relaxed);
        assert_eq!(order(&o), [0, 1, 2]);
        assert_eq!(order(&options(1)), [0]);
        assert!(order(&options(0)).is_empty());
    }

    #[test]
    fn the_start_node_is_random_per_process() {
        let mut seen = [0usize; 3];
        for _ in 0..300 {
            seen[order(&options(3))[0]] += 1;
        }
        // Each of the three is the first about 100 times in 300.
        assert!(seen.iter().all(|&k| k > 50), "{seen:?}");
    }
}
