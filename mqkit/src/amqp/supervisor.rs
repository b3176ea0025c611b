//! The connection supervisor: connects (bounded at startup), declares every
//! consumer's topology, runs a consumer per queue plus the session tasks
//! add-ons register, and reconnects with capped, jittered exponential
//! back-off when the connection is lost; graceful shutdown.
//!
//! Entry point: [`Supervisor`], driven by the app layer.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use lapin::{Connection, Event};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::connection::{ConnectOptions, connect_any};
use super::consume::ConsumeError;
use super::publisher::BrokerPublisher;
use super::topology::{self, TopologyError};
use super::worker;
use crate::core::backoff;
use crate::core::idempotency::BoxFuture;
use crate::core::pipeline::ErasedPipeline;
use crate::core::publish::Publisher;

/// The state of the process's broker connection, for readiness probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
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

impl ConnectionState {
    /// The state as `/readyz` writes it: `connecting`, `connected`,
    /// `reconnecting` or `closed`.
    pub fn as_str(&self) -> &'static str {
        match self {
            ConnectionState::Connecting => "connecting",
            ConnectionState::Connected => "connected",
            ConnectionState::Reconnecting => "reconnecting",
            ConnectionState::Closed => "closed",
        }
    }
}

/// Whether one consumer is consuming right now, and why not (for
/// `/readyz`).
#[derive(Debug)]
pub(crate) struct ConsumerStatus {
    queue: String,
    consuming: AtomicBool,
    /// Why it last stopped, until it consumes again.
    error: std::sync::Mutex<Option<String>>,
}

impl ConsumerStatus {
    /// A consumer of `queue`, not consuming yet.
    pub(crate) fn new(queue: &str) -> Self {
        ConsumerStatus {
            queue: queue.to_owned(),
            consuming: AtomicBool::new(false),
            error: std::sync::Mutex::new(None),
        }
    }

    /// The consumer's queue.
    pub(crate) fn queue(&self) -> &str {
        &self.queue
    }

    /// Whether its `basic.consume` is in force.
    pub(crate) fn is_consuming(&self) -> bool {
        self.consuming.load(Ordering::Relaxed)
    }

    pub(crate) fn set_consuming(&self, consuming: bool) {
        self.consuming.store(consuming, Ordering::Relaxed);
        if consuming {
            self.set_error(None);
        }
    }

    /// Why the consumer last stopped (`None` once it consumes again).
    pub(crate) fn error(&self) -> Option<String> {
        self.error.lock().map(|e| e.clone()).unwrap_or_default()
    }

    pub(crate) fn set_error(&self, error: Option<String>) {
        if let Ok(mut e) = self.error.lock() {
            *e = error;
        }
    }
}

/// Work besides the consumers that runs on each session's connection (the
/// dead-letter archiver's DLQ consumers): started with the connection and a
/// token cancelled when the session ends; `Err` ends the session as lost.
pub(crate) type SessionTask = Arc<
    dyn Fn(Arc<Connection>, CancellationToken) -> BoxFuture<'static, Result<(), String>>
        + Send
        + Sync,
>;

/// Work that must finish on shutdown after the consumers have drained and
/// before the connection closes (the outbox relay sending what the last
/// handlers committed); each bounds its own wait.
pub(crate) type BeforeClose = Arc<dyn Fn() -> BoxFuture<'static, ()> + Send + Sync>;

/// Why the service could not start or keep running.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SupervisorError {
    /// The broker could not be reached within the startup timeout.
    #[error("cannot connect to {urls} (kept trying for {waited_secs}s): {cause}")]
    Connect {
        /// The URLs tried, passwords masked.
        urls: String,
        /// Seconds spent trying.
        waited_secs: u64,
        /// The last error of each URL.
        cause: String,
    },
    /// Declaring topology failed.
    #[error(transparent)]
    Topology(#[from] TopologyError),
    /// The broker refused a consumer at startup.
    #[error("cannot start consuming queue `{queue}`: {source}")]
    Consume {
        /// The queue.
        queue: String,
        /// The broker's error.
        source: lapin::Error,
    },
}

/// Owns the connection lifecycle.
pub(crate) struct Supervisor {
    pub(crate) connect: ConnectOptions,
    pub(crate) startup_timeout: Duration,
    pub(crate) shutdown_grace: Duration,
    pub(crate) pipelines: Vec<Arc<dyn ErasedPipeline>>,
    /// One per pipeline, in the same order.
    pub(crate) statuses: Vec<Arc<ConsumerStatus>>,
    pub(crate) extra: Vec<SessionTask>,
    /// Run on shutdown before the connection closes.
    pub(crate) before_close: Vec<BeforeClose>,
    pub(crate) publisher: Arc<BrokerPublisher>,
    pub(crate) state: watch::Sender<ConnectionState>,
    pub(crate) shutdown: CancellationToken,
}

/// Why a session ended.
enum SessionEnd {
    Shutdown,
    Lost(String),
    Fatal(SupervisorError),
}

impl Supervisor {
    /// Connects (bounded by the startup timeout) and declares every
    /// consumer's topology, so that configuration errors surface from
    /// `start()` rather than in the background.
    pub(crate) async fn startup(&self) -> Result<Arc<Connection>, SupervisorError> {
        // Both exist from the start on /metrics.
        metrics::gauge!("mqkit_connected").set(0.0);
        metrics::counter!("mqkit_reconnects_total").increment(0);
        let started = Instant::now();
        let mut backoff = reconnect_backoff();
        let connection = loop {
            match connect_any(&self.connect).await {
                Ok(c) => break c,
                Err(cause) => {
                    let waited = started.elapsed();
                    let delay = backoff.next().unwrap_or(Duration::from_secs(1));
                    if waited + delay >= self.startup_timeout || self.shutdown.is_cancelled() {
                        return Err(SupervisorError::Connect {
                            urls: self.connect.masked_urls(),
                            waited_secs: waited.as_secs(),
                            cause,
                        });
                    }
                    warn!(urls = %self.connect.masked_urls(), error = %cause, retry_in = ?delay, "cannot reach RabbitMQ yet; retrying");
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

    /// Publishes a state change to readiness and to `mqkit_connected`.
    fn set_state(&self, state: ConnectionState) {
        let connected = state == ConnectionState::Connected;
        metrics::gauge!("mqkit_connected").set(if connected { 1.0 } else { 0.0 });
        self.state.send_replace(state);
    }

    /// Runs sessions until shutdown, reconnecting forever in between.
    pub(crate) async fn run(self, first: Arc<Connection>) -> Result<(), SupervisorError> {
        let mut connection = first;
        let mut ever_ready = false;
        let mut flaps = 0u32;
        // Startup declared every consumer's topology; later sessions
        // declare it again, each consumer its own.
        let mut declare = false;
        loop {
            let (end, ready_for) = self.session(connection, !ever_ready, declare).await;
            declare = true;
            let end = match end {
                // Once the service ran, nothing a session meets (a refused
                // consumer, a broken channel) stops the process: retry.
                SessionEnd::Fatal(e) if ever_ready => SessionEnd::Lost(e.to_string()),
                end => end,
            };
            ever_ready |= ready_for.is_some();
            match end {
                SessionEnd::Shutdown => {
                    self.set_state(ConnectionState::Closed);
                    return Ok(());
                }
                SessionEnd::Fatal(e) => {
                    self.set_state(ConnectionState::Closed);
                    return Err(e);
                }
                SessionEnd::Lost(why) => {
                    self.set_state(ConnectionState::Reconnecting);
                    self.publisher.detach().await;
                    // A session that dies young (e.g. the same delivery breaks
                    // it every time) makes the next wait longer.
                    flaps = match ready_for {
                        Some(up) if up >= HEALTHY_SESSION => 0,
                        _ => flaps.saturating_add(1),
                    };
                    let hold = flap_delay(flaps);
                    error!(reason = %why, sessions_that_died_young = flaps, wait = ?hold, "lost the RabbitMQ connection; reconnecting");
                    tokio::select! {
                        _ = self.shutdown.cancelled() => {
                            self.set_state(ConnectionState::Closed);
                            return Ok(());
                        }
                        _ = tokio::time::sleep(hold) => {}
                    }
                    match self.reconnect().await {
                        Some(c) => connection = c,
                        None => {
                            self.set_state(ConnectionState::Closed);
                            return Ok(());
                        }
                    }
                }
            }
        }
    }

    /// Reconnects with back-off until it succeeds or shutdown is requested
    /// (`None`). Each consumer re-declares its own topology in the new
    /// session, so one queue that cannot be declared (its node is down)
    /// holds back only its own consumer.
    async fn reconnect(&self) -> Option<Arc<Connection>> {
        let mut backoff = reconnect_backoff();
        let mut attempt = 0u32;
        loop {
            let delay = backoff.next().unwrap_or(Duration::from_millis(1500));
            tokio::select! {
                _ = self.shutdown.cancelled() => return None,
                _ = tokio::time::sleep(delay) => {}
            }
            attempt += 1;
            match connect_any(&self.connect).await {
                Ok(c) => {
                    info!(attempt, "reconnected to RabbitMQ");
                    metrics::counter!("mqkit_reconnects_total").increment(1);
                    self.publisher.attach(c.clone()).await;
                    return Some(c);
                }
                Err(e) => warn!(attempt, error = %e, next_in = ?delay, "reconnect failed"),
            }
        }
    }

    /// One connection's life: consumers and session tasks until shutdown or
    /// a failure; also how long it was ready (`None`: never). Until the
    /// service was `first` ready, it is ready once every consumer consumes,
    /// and a consumer the broker refuses is the startup error; after that, a
    /// session is connected at once, each consumer consuming and retrying
    /// on its own. Each consumer declares its topology first when `declare`
    /// (every session but the one after startup, which declared it all).
    async fn session(
        &self,
        connection: Arc<Connection>,
        first: bool,
        declare: bool,
    ) -> (SessionEnd, Option<Duration>) {
        let stop = CancellationToken::new();
        let mut consumers = tokio::task::JoinSet::new();
        let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(self.pipelines.len().max(1));
        for (p, status) in self.pipelines.iter().zip(&self.statuses) {
            consumers.spawn(worker::run(
                connection.clone(),
                p.clone(),
                status.clone(),
                Publisher::new(self.publisher.clone()),
                stop.clone(),
                worker::Drain {
                    shutdown: self.shutdown.clone(),
                    grace: self.shutdown_grace,
                },
                ready_tx.clone(),
                worker::SessionMode {
                    declare,
                    strict: first,
                },
            ));
        }
        drop(ready_tx);
        let mut extras = tokio::task::JoinSet::new();
        for task in &self.extra {
            extras.spawn(task(connection.clone(), stop.clone()));
        }
        // Ready (for `start()`) once every consumer is consuming; after a
        // reconnect, connected at once (readiness also checks that every
        // consumer consumes).
        let mut starting = if first { self.pipelines.len() } else { 0 };
        let mut ready_at = None;
        if !first {
            ready_at = Some(Instant::now());
            self.set_state(ConnectionState::Connected);
        }
        let mut events = connection.events_listener();
        let end = loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => break SessionEnd::Shutdown,
                Some(()) = ready_rx.recv(), if starting > 0 => {
                    starting -= 1;
                    if starting == 0 {
                        ready_at = Some(Instant::now());
                        self.set_state(ConnectionState::Connected);
                    }
                }
                event = events.next() => match event {
                    Some(Event::Error(e)) if is_channel_error(&e) && connection.status().connected() => {
                        // lapin reports a channel the broker closed (a
                        // queue whose node is down, a publish to a missing
                        // exchange) here too; its owner (a consumer, the
                        // publisher) recovers it, the connection is fine.
                        debug!(error = %e, "a channel was closed by the broker");
                    }
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
                    Ok(Err(ConsumeError::Lost(why))) => break SessionEnd::Lost(why),
                    Ok(Err(ConsumeError::Refused { queue, source })) => {
                        break SessionEnd::Fatal(SupervisorError::Consume { queue, source })
                    }
                    Err(join) => break SessionEnd::Lost(format!("consumer task failed: {join}")),
                },
            }
        };
        // Readiness and `mqkit_connected` say so at once, not after the
        // consumers have wound down.
        if matches!(end, SessionEnd::Lost(_)) {
            self.set_state(ConnectionState::Reconnecting);
        }
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
        if matches!(end, SessionEnd::Shutdown) {
            for task in &self.before_close {
                task().await;
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
        (end, ready_at.map(|t: Instant| t.elapsed()))
    }
}

/// Whether `e` is a soft AMQP error: the broker closed one channel, not the
/// connection.
fn is_channel_error(e: &lapin::Error) -> bool {
    matches!(
        e.kind(),
        lapin::ErrorKind::ProtocolError(amqp)
            if matches!(amqp.kind(), lapin::protocol::AMQPErrorKind::Soft(_))
    )
}

/// Capped exponential back-off with jitter: 100 ms doubling to 1.5 s, plus
/// up to 100 % jitter. One connection per process makes a short cap cheap for
/// the broker, and it bounds how long consumption stays down after the
/// broker is back (under 3.5 s).
fn reconnect_backoff() -> backon::ExponentialBackoff {
    backoff::exponential(Duration::from_millis(100), Duration::from_millis(1500))
}

/// A session ready for at least this long was healthy: the next loss starts
/// the flap count afresh.
const HEALTHY_SESSION: Duration = Duration::from_secs(30);

/// Extra wait before reconnecting after `flaps` sessions in a row died
/// young: none after the first, then 1 s doubling up to 60 s.
fn flap_delay(flaps: u32) -> Duration {
    match flaps {
        0 | 1 => Duration::ZERO,
        n => Duration::from_secs(1u64 << (n - 2).min(6)).min(Duration::from_secs(60)),
    }
}

#[cfg(test)]
mod tests {
    use super::flap_delay;
    use std::time::Duration;

    #[test]
    fn sessions_that_die_young_wait_longer_and_longer() {
        let secs: Vec<u64> = (0..10).map(|n| flap_delay(n).as_secs()).collect();
        assert_eq!(secs, [0, 0, 1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(flap_delay(u32::MAX), Duration::from_secs(60));
    }
}
