//! The process's Prometheus recorder (`metrics-exporter-prometheus`), which
//! every `metrics::counter!` / `histogram!` / `gauge!` of mqkit (and of the
//! application) reports to once an app serves `/metrics`; the metric
//! descriptions and the histogram buckets.
//!
//! Entry point: [`prometheus`].

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing::warn;

/// Histogram buckets in seconds, for handler and publish durations: 1 ms
/// to 60 s (a handler's default timeout is 30 s).
const BUCKETS: [f64; 15] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// How often histogram samples are folded into their buckets between scrapes
/// (so memory stays flat when nobody scrapes).
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// The handle `/metrics` renders, installing the global recorder on first
/// use; `None` when the application installed another recorder first (its
/// recorder then receives mqkit's metrics).
pub(crate) fn prometheus() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE.get_or_init(install).clone()
}

fn install() -> Option<PrometheusHandle> {
    let recorder = match PrometheusBuilder::new().set_buckets(&BUCKETS) {
        Ok(builder) => builder.build_recorder(),
        Err(e) => {
            warn!(error = %e, "cannot set up the Prometheus recorder; /metrics stays empty");
            return None;
        }
    };
    let handle = recorder.handle();
    if metrics::set_global_recorder(recorder).is_err() {
        warn!(
            "a metrics recorder is already installed in this process: mqkit's metrics go to it, and /metrics stays empty"
        );
        return None;
    }
    describe();
    let upkeep = handle.clone();
    let spawned = std::thread::Builder::new()
        .name("mqkit-metrics-upkeep".to_owned())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_EVERY);
                upkeep.run_upkeep();
            }
        });
    if let Err(e) = spawned {
        warn!(error = %e, "cannot start the metrics upkeep thread; histograms are folded at each scrape only");
    }
    Some(handle)
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "mqkit_messages_total",
        "Deliveries by outcome: ack, retry, dead-letter, duplicate, requeue"
    );
    describe_counter!(
        "mqkit_dead_letters_total",
        "Messages mqkit dead-lettered, by kind"
    );
    describe_histogram!(
        "mqkit_handler_duration_seconds",
        Unit::Seconds,
        "How long handler calls took (each call, retries included)"
    );
    describe_gauge!(
        "mqkit_in_flight",
        "Deliveries being processed now (decoded, handled or being acked)"
    );
    describe_gauge!(
        "mqkit_connected",
        "1 while connected to RabbitMQ with every consumer consuming (a shutdown's drain included), else 0"
    );
    describe_counter!(
        "mqkit_reconnects_total",
        "Times the RabbitMQ connection was re-established after a loss"
    );
    describe_counter!(
        "mqkit_acks_lost_total",
        "Acks, nacks or rejects that could not be sent (the broker redelivers)"
    );
    describe_histogram!(
        "mqkit_publish_duration_seconds",
        Unit::Seconds,
        "Publish until the broker's confirm (follow-ups, retries, dead letters)"
    );
    describe_counter!(
        "mqkit_stuck_keys_total",
        "Messages that waited for a busy idempotency key longer than 3 lock TTLs"
    );
    describe_counter!(
        "mqkit_dlq_archived_total",
        "Dead letters the archiver handled, by DLQ and outcome"
    );
    describe_counter!(
        "mqkit_dlq_alerts_total",
        "Dead-letter alerts sent, by queue and whether the webhook took them"
    );
    describe_counter!(
        "mqkit_outbox_published_total",
        "Outbox messages of transactional consumers published, by path (relay: right after the commit; sweeper: left unsent)"
    );
    describe_counter!(
        "mqkit_outbox_failures_total",
        "Outbox publishes that failed (unroutable, nacked, no broker) and wait to be retried"
    );
    describe_gauge!(
        "mqkit_outbox_unsent",
        "Outbox rows unsent longer than the sweeper's age threshold (its backlog)"
    );
    describe_counter!(
        "mqkit_outbox_retention_deleted_total",
        "Sent outbox rows and inbox rows deleted after their retention"
    );
}
