//! The one connection per process: connecting to the first reachable URL of
//! a list (heartbeat, connection name, frame size), with errors that name
//! each URL with its password masked.

use std::sync::Arc;
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
}

impl ConnectOptions {
    /// The URLs with passwords masked, comma-separated.
    pub(crate) fn masked_urls(&self) -> String {
        self.urls
            .iter()
            .map(|u| mask_password(u))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Tries each URL in turn; the error names each URL (password masked).
pub(crate) async fn connect_any(config: &ConnectOptions) -> Result<Arc<Connection>, String> {
    let mut errors = Vec::new();
    for url in &config.urls {
        match connect(url, config).await {
            Ok(c) => {
                info!(url = %mask_password(url), heartbeat = ?config.heartbeat, name = %config.connection_name, "connected to RabbitMQ");
                return Ok(Arc::new(c));
            }
            Err(e) => errors.push(format!("{}: {e}", mask_password(url))),
        }
    }
    Err(errors.join("; "))
}

/// Frame size asked for unless the URL sets `frame_max`.
const DEFAULT_FRAME_MAX: u32 = 16 * 1024;

/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

async fn connect(url: &str, config: &ConnectOptions) -> Result<Connection, String> {
    let mut uri: AMQPUri = url
        .parse()
        .map_err(|e: String| format!("invalid AMQP URL ({e})"))?;
    let heartbeat = u16::try_from(config.heartbeat.as_secs()).unwrap_or(u16::MAX);
    uri.query.heartbeat = Some(heartbeat);
    // lapin keeps read and write buffers of 32 frames each; with RabbitMQ's
    // 128 KiB default that is 8 MiB resident per connection. 16 KiB frames
    // cost nothing measurable in throughput. A URL's own frame_max wins.
    uri.query.frame_max = uri.query.frame_max.or(Some(DEFAULT_FRAME_MAX));
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
