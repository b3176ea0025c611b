//! Everything that talks to RabbitMQ: the one connection per process (URL
//! list, heartbeat, connection name), the supervisor that declares topology,
//! starts a consumer per queue and reconnects with capped, jittered
//! exponential back-off when the connection is lost, and graceful shutdown.
//!
//! Entry point: [`Supervisor`], driven by [`App`](crate::App).

mod consume;

use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use futures_util::StreamExt as _;
use lapin::uri::AMQPUri;
use lapin::{Connection, ConnectionProperties, Event};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::Config;
use crate::error::Error;
use crate::mask::mask_password;
use crate::pipeline::ErasedPipeline;
use crate::publish::Publisher;
use crate::topology::{self, TopologyError};

/// The state of the process's broker connection, for readiness probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionState {
    /// Starting up: not connected yet.
    Connecting,
    /// Connected, topology declared, consumers running.
    Connected,
    /// The connection was lost; reconnecting with back-off.
    Reconnecting,
    /// Shut down.
    Closed,
}

/// Work besides the consumers that runs on each session's connection (the
/// dead-letter archiver's DLQ consumers): started with the connection and a
/// token cancelled when the session ends; `Err` ends the session as lost.
pub(crate) type SessionTask = Arc<
    dyn Fn(
            Arc<Connection>,
            CancellationToken,
        ) -> crate::idempotency::BoxFuture<'static, Result<(), String>>
        + Send
        + Sync,
>;

/// Owns the connection lifecycle.
pub(crate) struct Supervisor {
    pub(crate) config: Config,
    pub(crate) pipelines: Vec<Arc<dyn ErasedPipeline>>,
    pub(crate) extra: Vec<SessionTask>,
    pub(crate) publisher: Publisher,
    pub(crate) state: watch::Sender<ConnectionState>,
    pub(crate) shutdown: CancellationToken,
}

/// Why a session ended.
enum SessionEnd {
    Shutdown,
    Lost(String),
    Fatal(Error),
}

impl Supervisor {
    /// Connects (bounded by the startup timeout) and declares every
    /// consumer's topology, so that configuration errors surface from
    /// `start()` rather than in the background.
    pub(crate) async fn startup(&self) -> Result<Arc<Connection>, Error> {
        let started = Instant::now();
        let mut backoff = backoff();
        let connection = loop {
            match connect_any(&self.config).await {
                Ok(c) => break c,
                Err(cause) => {
                    let waited = started.elapsed();
                    let delay = backoff.next().unwrap_or(Duration::from_secs(1));
                    if waited + delay >= self.config.startup_timeout || self.shutdown.is_cancelled()
                    {
                        return Err(Error::Connect {
                            urls: self.config.masked_urls(),
                            waited_secs: waited.as_secs(),
                            cause,
                        });
                    }
                    warn!(urls = %self.config.masked_urls(), error = %cause, retry_in = ?delay, "cannot reach RabbitMQ yet; retrying");
                    tokio::time::sleep(delay).await;
                }
            }
        };
        self.declare_all(&connection).await?;
        self.publisher.attach(connection.clone()).await;
        Ok(connection)
    }

    async fn declare_all(&self, connection: &Connection) -> Result<(), TopologyError> {
        for p in &self.pipelines {
            topology::declare(connection, &topology::plan(p.spec())).await?;
            info!(queue = %p.spec().queue, dlq = %p.spec().dlq, "topology declared");
        }
        Ok(())
    }

    /// Runs sessions until shutdown, reconnecting forever in between.
    pub(crate) async fn run(self, first: Arc<Connection>) -> Result<(), Error> {
        let mut connection = first;
        loop {
            match self.session(connection).await {
                SessionEnd::Shutdown => {
                    self.state.send_replace(ConnectionState::Closed);
                    return Ok(());
                }
                SessionEnd::Fatal(e) => {
                    self.state.send_replace(ConnectionState::Closed);
                    return Err(e);
                }
                SessionEnd::Lost(why) => {
                    self.state.send_replace(ConnectionState::Reconnecting);
                    self.publisher.detach().await;
                    error!(reason = %why, "lost the RabbitMQ connection; reconnecting");
                    match self.reconnect().await {
                        Some(c) => connection = c,
                        None => {
                            self.state.send_replace(ConnectionState::Closed);
                            return Ok(());
                        }
                    }
                }
            }
        }
    }

    /// Reconnects with back-off until it succeeds (re-declaring topology)
    /// or shutdown is requested (`None`).
    async fn reconnect(&self) -> Option<Arc<Connection>> {
        let mut backoff = backoff();
        let mut attempt = 0u32;
        loop {
            let delay = backoff.next().unwrap_or(Duration::from_millis(1500));
            tokio::select! {
                _ = self.shutdown.cancelled() => return None,
                _ = tokio::time::sleep(delay) => {}
            }
            attempt += 1;
            match connect_any(&self.config).await {
                Ok(c) => match self.declare_all(&c).await {
                    Ok(()) => {
                        info!(attempt, "reconnected to RabbitMQ and re-declared topology");
                        self.publisher.attach(c.clone()).await;
                        return Some(c);
                    }
                    Err(e) => {
                        warn!(attempt, error = %e, "reconnected but could not re-declare topology; retrying");
                        let _ = c.close(200, "OK".into()).await;
                    }
                },
                Err(e) => warn!(attempt, error = %e, next_in = ?delay, "reconnect failed"),
            }
        }
    }

    async fn session(&self, connection: Arc<Connection>) -> SessionEnd {
        let stop = CancellationToken::new();
        let mut consumers = tokio::task::JoinSet::new();
        let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(self.pipelines.len().max(1));
        for p in &self.pipelines {
            consumers.spawn(consume::run(
                connection.clone(),
                p.clone(),
                self.publisher.clone(),
                stop.clone(),
                consume::Drain {
                    shutdown: self.shutdown.clone(),
                    grace: self.config.shutdown_grace,
                },
                ready_tx.clone(),
            ));
        }
        drop(ready_tx);
        let mut extras = tokio::task::JoinSet::new();
        for task in &self.extra {
            extras.spawn(task(connection.clone(), stop.clone()));
        }
        // Ready (for probes and `start()`) once every consumer is consuming.
        let mut starting = self.pipelines.len();
        let mut events = connection.events_listener();
        let end = loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => break SessionEnd::Shutdown,
                Some(()) = ready_rx.recv(), if starting > 0 => {
                    starting -= 1;
                    if starting == 0 {
                        self.state.send_replace(ConnectionState::Connected);
                    }
                }
                event = events.next() => match event {
                    Some(Event::Error(e)) => break SessionEnd::Lost(e.to_string()),
                    Some(Event::ConnectionBlocked(reason)) => warn!(%reason, "broker blocked the connection (resource alarm); publishing waits"),
                    Some(Event::ConnectionUnblocked) => info!("broker unblocked the connection"),
                    Some(_) => {}
                    None => break SessionEnd::Lost("connection event stream ended".to_owned()),
                },
                Some(done) = extras.join_next() => match done {
                    Ok(Ok(())) => {}
                    Ok(Err(why)) => break SessionEnd::Lost(why),
                    Err(join) => break SessionEnd::Lost(format!("session task failed: {join}")),
                },
                Some(done) = consumers.join_next() => match done {
                    Ok(Ok(())) => {}
                    Ok(Err(consume::ConsumeError::Fatal(e))) => break SessionEnd::Fatal(e),
                    Ok(Err(consume::ConsumeError::Lost(why))) => break SessionEnd::Lost(why),
                    Err(join) => break SessionEnd::Lost(format!("consumer task failed: {join}")),
                },
            }
        };
        // Consumers stop receiving at once; on shutdown they drain in-flight
        // handlers within the grace period before closing their channels.
        stop.cancel();
        while extras.join_next().await.is_some() {}
        while let Some(done) = consumers.join_next().await {
            if let Ok(Err(e)) = done
                && matches!(end, SessionEnd::Shutdown)
            {
                warn!(error = %e, "consumer ended with an error during shutdown");
            }
        }
        // On shutdown the connection closes cleanly; when the session is
        // replaced (a channel or the connection failed), closing it returns
        // every unacked delivery of this session to its queue.
        if !matches!(end, SessionEnd::Lost(_)) {
            self.publisher.detach().await;
        }
        if connection.status().connected()
            && let Err(e) = connection.close(200, "OK".into()).await
        {
            warn!(error = %e, "closing the connection failed");
        }
        if matches!(end, SessionEnd::Shutdown) {
            info!("connection closed");
        }
        end
    }
}

/// Capped exponential back-off with jitter: 100 ms doubling to 1.5 s, plus
/// up to 100 % jitter. One connection per process makes a short cap cheap for
/// the broker, and it bounds how long consumption stays down after the
/// broker is back (under 3.5 s).
fn backoff() -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_millis(1500))
        .with_jitter()
        .without_max_times()
        .build()
}

/// Tries each URL in turn; the error names each URL (password masked).
pub(crate) async fn connect_any(config: &Config) -> Result<Arc<Connection>, String> {
    let mut errors = Vec::new();
    for url in &config.amqp_urls {
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

async fn connect(url: &str, config: &Config) -> Result<Connection, String> {
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
