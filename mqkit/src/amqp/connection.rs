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
