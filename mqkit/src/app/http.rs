//! The probe and metrics server on `MQKIT_HTTP_ADDR` (axum over hyper):
//! `GET /livez` and `/healthz` (200 while the process runs), `GET /readyz`
//! (200 only while connected with every consumer consuming and no shutdown
//! begun; JSON body either way) and `GET /metrics` (Prometheus text).
//! Other paths are 404, other methods 405.
//!
//! Entry points: [`bind`] (before anything connects, so a taken address is
//! a startup error) and [`serve`].

use std::sync::Arc;

use axum::Router;
use axum::extract::State as Shared;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use super::error::Error;
use crate::amqp::supervisor::{ConnectionState, ConsumerStatus};

/// What the probes read.
#[derive(Clone)]
pub(crate) struct Probe {
    /// The connection state.
    pub(crate) connection: watch::Receiver<ConnectionState>,
    /// Each consumer's queue and whether it is consuming.
    pub(crate) consumers: Vec<Arc<ConsumerStatus>>,
    /// Cancelled when a shutdown begins.
    pub(crate) shutdown: CancellationToken,
    /// What `/metrics` renders (`None`: another recorder took the metrics,
    /// and `/metrics` says so with a 503).
    pub(crate) metrics: Option<PrometheusHandle>,
}

/// Listens on `addr`, or says why not, naming it.
pub(crate) async fn bind(addr: &str) -> Result<TcpListener, Error> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| Error::HttpAddr {
            addr: addr.to_owned(),
            source,
        })
}

/// Serves the probes until the task is aborted.
pub(crate) async fn serve(listener: TcpListener, probe: Probe) {
    let local = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let app = Router::new()
        .route("/livez", get(live))
        .route("/healthz", get(live))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .with_state(Arc::new(probe));
    info!(addr = %local, "serving /livez, /healthz, /readyz and /metrics");
    if let Err(e) = axum::serve(listener, app).await {
        error!(addr = %local, error = %e, "the HTTP probe server stopped");
    }
}

async fn live() -> &'static str {
    "ok\n"
}

async fn ready(Shared(probe): Shared<Arc<Probe>>) -> Response {
    let connection = *probe.connection.borrow();
    let shutting_down = probe.shutdown.is_cancelled();
    let consumers: Vec<serde_json::Value> = probe
        .consumers
        .iter()
        .map(|c| {
            let mut entry = serde_json::json!({
                "queue": c.queue(),
                "state": if c.is_consuming() { "consuming" } else { "stopped" },
            });
            if let Some(error) = c.error() {
                entry["error"] = serde_json::Value::String(error);
            }
            entry
        })
        .collect();
    let all_consuming = probe.consumers.iter().all(|c| c.is_consuming());
    let ready = !shutting_down && connection == ConnectionState::Connected && all_consuming;
    let status = if shutting_down {
        "shutting-down"
    } else if ready {
        "ready"
    } else {
        "not-ready"
    };
    let body = serde_json::json!({
        "status": status,
        "connection": connection.as_str(),
        "consumers": consumers,
    });
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, axum::Json(body)).into_response()
}

async fn metrics(Shared(probe): Shared<Arc<Probe>>) -> Response {
    let Some(handle) = &probe.metrics else {
        // A scrape that looks fine but has no series would hide the problem.
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "another metrics recorder was installed in this process before mqkit's; mqkit's metrics go to it, not to this endpoint\n",
        )
            .into_response();
    };
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        handle.render(),
    )
        .into_response()
}
