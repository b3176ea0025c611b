//! [`Running`], the handle of a started app: its state, its publisher,
//! shutdown on request, on a future ([`Running::until`]) or on SIGINT /
//! SIGTERM ([`Running::until_signal`]), and the HTTP server's lifetime.

use std::future::Future;
use std::net::SocketAddr;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::error::Error;
use crate::amqp::supervisor::ConnectionState;
use crate::core::publish::Publisher;

/// The probe server's task; stopped when the app's handle goes away, so
/// `/livez` and `/readyz` answer until the last in-flight handler is done.
#[derive(Debug)]
pub(crate) struct HttpServer {
    addr: Option<SocketAddr>,
    task: JoinHandle<()>,
}

impl HttpServer {
    pub(crate) fn spawn(
        addr: Option<SocketAddr>,
        server: impl Future<Output = ()> + Send + 'static,
    ) -> Self {
        HttpServer {
            addr,
            task: tokio::spawn(server),
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A started app.
#[derive(Debug)]
pub struct Running {
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), Error>>,
    publisher: Publisher,
    state: watch::Receiver<ConnectionState>,
    http: Option<HttpServer>,
}

impl Running {
    pub(crate) fn new(
        shutdown: CancellationToken,
        task: JoinHandle<Result<(), Error>>,
        publisher: Publisher,
        state: watch::Receiver<ConnectionState>,
        http: Option<HttpServer>,
    ) -> Self {
        Running {
            shutdown,
            task,
            publisher,
            state,
            http,
        }
    }

    /// The process's publisher (confirm-mode channel).
    pub fn publisher(&self) -> &Publisher {
        &self.publisher
    }

    /// Where the probes are served (`MQKIT_HTTP_ADDR`, with the port the
    /// system chose when it was 0), if they are.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().and_then(|h| h.addr)
    }

    /// The connection state right now.
    pub fn state(&self) -> ConnectionState {
        *self.state.borrow()
    }

    /// A receiver that sees every connection state change (for readiness).
    pub fn watch_state(&self) -> watch::Receiver<ConnectionState> {
        self.state.clone()
    }

    /// Whether the broker connection is up and consumers are running (also
    /// while a shutdown drains; `/readyz` is 503 from its start).
    pub fn is_ready(&self) -> bool {
        self.state() == ConnectionState::Connected
    }

    /// A token that shuts the app down when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Requests a graceful shutdown and waits for it.
    pub async fn shutdown(self) -> Result<(), Error> {
        self.shutdown.cancel();
        self.wait().await
    }

    /// Waits until the app stops (after a shutdown request, or a fatal error).
    pub async fn wait(self) -> Result<(), Error> {
        let Running { task, http, .. } = self;
        let result = match task.await {
            Ok(result) => result,
            Err(e) => Err(Error::Supervisor(e.to_string())),
        };
        // The probes answer until here: 503 through the whole drain.
        drop(http);
        result
    }

    /// Runs until SIGINT or SIGTERM, then shuts down gracefully (a second
    /// signal exits the process with code 130).
    pub async fn until_signal(self) -> Result<(), Error> {
        self.until(std::future::pending()).await
    }

    /// Runs until `stop` completes, SIGINT or SIGTERM arrives, or a fatal
    /// error, then shuts down gracefully (a second signal exits the process
    /// with code 130).
    pub async fn until(self, stop: impl Future<Output = ()>) -> Result<(), Error> {
        let shutdown = self.shutdown.clone();
        let on_signal = shutdown.clone();
        let signals = tokio::spawn(async move {
            wait_for_signal().await;
            info!("shutdown signal received; stopping consumers and draining in-flight handlers");
            on_signal.cancel();
            wait_for_signal().await;
            warn!("second shutdown signal; exiting now");
            std::process::exit(130);
        });
        let wait = self.wait();
        tokio::pin!(wait);
        let result = tokio::select! {
            result = &mut wait => result,
            () = stop => {
                info!("shutdown requested; stopping consumers and draining in-flight handlers");
                shutdown.cancel();
                wait.await
            }
        };
        signals.abort();
        result
    }
}

/// Returns on SIGINT (Ctrl-C) or SIGTERM; also what `mqkit dlq serve`
/// stops on.
pub(crate) async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
