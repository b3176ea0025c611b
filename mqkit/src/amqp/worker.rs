//! One consumer's deliveries: each goes through the core pipeline, and its
//! [`Outcome`] is applied on the channel that delivered it: ack, publish to
//! a delay queue or the DLQ (confirmed) then ack, or reject so the broker's
//! own dead-letter route catches what could not be published.
//!
//! Each consumer recovers on its own within a session: when its queue cannot
//! be declared or consumed (the queue's node is down, access is refused, the
//! broker cancelled the consumer because the queue was deleted), it logs
//! why, shows as stopped in readiness, waits with back-off and declares and
//! consumes again, while the other consumers of the connection go on.
//!
//! Entry point: [`run`], one consumer for one session.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use lapin::Connection;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicNackOptions, BasicRejectOptions};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument as _, debug, error, info, warn};

use super::consume::{ConsumeError, Consumption, consume};
use super::convert::properties_from;
use super::supervisor::ConsumerStatus;
use super::topology;
use crate::core::backoff;
use crate::core::headers::{self, FieldValue, Properties};
use crate::core::outcome::{DeadLetterKind, Outcome, RequeueReason};
use crate::core::pipeline::{self, ErasedPipeline, STUCK_AFTER_LOCK_TTLS, unix_millis};
use crate::core::publish::Publisher;
use crate::core::retry::delay_queue_name;
use crate::core::spec::ConsumerSpec;
use crate::core::text::truncate;
use crate::core::trace::record_outcome;

/// Error texts longer than this are cut in headers (frames have limits).
const MAX_ERROR_HEADER: usize = 4096;

/// Whether a stopping consumer waits for its in-flight handlers.
#[derive(Debug, Clone)]
pub(crate) struct Drain {
    /// Cancelled on a shutdown request (as opposed to a lost connection).
    pub(crate) shutdown: CancellationToken,
    /// How long to wait for in-flight handlers on shutdown.
    pub(crate) grace: Duration,
}

impl Drain {
    /// The grace period if this stop is a shutdown; `None` when the session
    /// is being replaced and in-flight handlers finish on their own.
    fn grace(&self) -> Option<Duration> {
        self.shutdown.is_cancelled().then_some(self.grace)
    }
}

/// How one session runs a consumer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SessionMode {
    /// Declare the consumer's topology before consuming (not in the first
    /// session: startup declared everything, strictly).
    pub(crate) declare: bool,
    /// A refusal before the consumer ever consumed is returned (the
    /// startup error) instead of retried.
    pub(crate) strict: bool,
}

/// A consumer that consumed at least this long was healthy: its next
/// failure starts the back-off afresh.
const HEALTHY_CONSUMER: Duration = Duration::from_secs(30);

/// Consumes the pipeline's queue on `connection` until `stop`, recovering
/// on its own from failures of its queue or channel. Returns an error only
/// when the connection itself is gone (`Lost`) or, in `strict` mode, when
/// the broker refused the consumer before it ever consumed (`Refused`).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn run(
    connection: Arc<Connection>,
    pipeline: Arc<dyn ErasedPipeline>,
    status: Arc<ConsumerStatus>,
    publisher: Publisher,
    stop: CancellationToken,
    drain: Drain,
    ready: tokio::sync::mpsc::Sender<()>,
    mode: SessionMode,
) -> Result<(), ConsumeError> {
    let spec = pipeline.spec().clone();
    let what = Consumption {
        queue: spec.queue.to_string(),
        tag: format!("{}.{}", spec.queue, std::process::id()),
        prefetch: spec.prefetch,
        concurrency: spec.concurrency,
    };
    let plan = topology::plan(&spec);
    let worker = Arc::new(Worker {
        counters: Counters::new(&spec.queue),
        pipeline,
        spec,
        publisher,
    });
    let mut declare = mode.declare;
    let mut strict = mode.strict;
    let mut retry = consumer_backoff();
    loop {
        let started = Instant::now();
        let result = match declare_for(&connection, &plan, declare).await {
            Err(e) => Err(ConsumeError::Lost(e.to_string())),
            Ok(()) => {
                consume(
                    &connection,
                    &what,
                    &stop,
                    || drain.grace(),
                    || {
                        status.set_consuming(true);
                        let _ = ready.try_send(());
                    },
                    |delivery| {
                        let worker = worker.clone();
                        async move { worker.handle(delivery).await }
                    },
                )
                .await
            }
        };
        let consumed = status.is_consuming();
        status.set_consuming(false);
        let error = match result {
            Ok(()) => return Ok(()),
            Err(e @ ConsumeError::Refused { .. }) if strict && !consumed => return Err(e),
            Err(e) if !connection.status().connected() || stop.is_cancelled() => return Err(e),
            Err(e) => e,
        };
        strict &= !consumed;
        // Whatever broke (a deleted queue, a node that went down), the
        // queue is declared again before the next consume.
        declare = true;
        if consumed && started.elapsed() >= HEALTHY_CONSUMER {
            retry = consumer_backoff();
        }
        let wait = retry.next().unwrap_or(Duration::from_secs(10));
        status.set_error(Some(error.to_string()));
        warn!(queue = %what.queue, error = %error, retry_in = ?wait, "consumer stopped; the other consumers go on, this one declares and consumes again after the wait");
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// A consumer's own retries: 250 ms doubling to 10 s, plus up to 100 %
/// jitter.
fn consumer_backoff() -> backon::ExponentialBackoff {
    backoff::exponential(Duration::from_millis(250), Duration::from_secs(10))
}

/// Declares `plan` when `declare` says so.
async fn declare_for(
    connection: &Connection,
    plan: &topology::Plan,
    declare: bool,
) -> Result<(), topology::TopologyError> {
    if declare {
        topology::declare(connection, plan).await?;
    }
    Ok(())
}

/// A lapin delivery with its properties converted once for the pipeline.
struct Received {
    delivery: Delivery,
    properties: Properties,
}

impl pipeline::Delivery for Received {
    fn body(&self) -> &[u8] {
        &self.delivery.data
    }
    fn properties(&self) -> &Properties {
        &self.properties
    }
    fn redelivered(&self) -> bool {
        self.delivery.redelivered
    }
}

/// What each delivery's task needs, shared behind one `Arc`.
struct Worker {
    pipeline: Arc<dyn ErasedPipeline>,
    spec: ConsumerSpec,
    publisher: Publisher,
    counters: Counters,
}

/// Metric handles registered once per consumer, so the hot path allocates
/// no label strings.
struct Counters {
    ack: metrics::Counter,
    retry: metrics::Counter,
    dead_letter: metrics::Counter,
    duplicate: metrics::Counter,
    requeue: metrics::Counter,
    lost_ack: metrics::Counter,
    lost_nack: metrics::Counter,
    lost_reject: metrics::Counter,
    in_flight: metrics::Gauge,
}

/// Counts a delivery in `mqkit_in_flight` until dropped (also when its
/// task is abandoned at the end of a shutdown grace period).
struct InFlight<'a>(&'a metrics::Gauge);

impl<'a> InFlight<'a> {
    fn enter(gauge: &'a metrics::Gauge) -> Self {
        gauge.increment(1.0);
        InFlight(gauge)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

impl Counters {
    fn new(queue: &str) -> Self {
        let outcome = |name: &'static str| metrics::counter!("mqkit_messages_total", "queue" => queue.to_owned(), "outcome" => name);
        let lost = |kind: &'static str| metrics::counter!("mqkit_acks_lost_total", "queue" => queue.to_owned(), "kind" => kind);
        Counters {
            ack: outcome("ack"),
            retry: outcome("retry"),
            dead_letter: outcome("dead-letter"),
            duplicate: outcome("duplicate"),
            requeue: outcome("requeue"),
            lost_ack: lost("ack"),
            lost_nack: lost("nack"),
            lost_reject: lost("reject"),
            in_flight: metrics::gauge!("mqkit_in_flight", "queue" => queue.to_owned()),
        }
    }

    fn outcome(&self, outcome: &Outcome) -> &metrics::Counter {
        match outcome {
            Outcome::Ack => &self.ack,
            Outcome::Retry { .. } => &self.retry,
            Outcome::DeadLetter { .. } => &self.dead_letter,
            Outcome::Duplicate => &self.duplicate,
            Outcome::Requeue { .. } => &self.requeue,
        }
    }
}

impl Worker {
    async fn handle(&self, delivery: Delivery) {
        let _in_flight = InFlight::enter(&self.counters.in_flight);
        let received = Received {
            properties: properties_from(&delivery.properties),
            delivery,
        };
        let span = self.pipeline.span(&received);
        async {
            let started = Instant::now();
            let outcome = self.pipeline.process(&received).await;
            self.log(&outcome, started.elapsed());
            self.counters.outcome(&outcome).increment(1);
            self.apply(&received, outcome).await;
        }
        .instrument(span)
        .await;
    }

    /// The one log line of a delivery's outcome (inside its span, which
    /// carries queue, message id, correlation id, attempt and key), and the
    /// outcome on the span.
    fn log(&self, outcome: &Outcome, elapsed: Duration) {
        let elapsed_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
        record_outcome(&tracing::Span::current(), outcome);
        match outcome {
            Outcome::Ack => {
                debug!(elapsed_ms, "handled");
            }
            Outcome::Duplicate => {
                info!(
                    elapsed_ms,
                    "duplicate: business key already handled; acked without calling the handler"
                );
            }
            Outcome::Retry { delay, error, .. } => {
                warn!(elapsed_ms, retry_in = ?delay, error = %error, "handler failed; retrying later");
            }
            Outcome::Requeue {
                delay,
                reason: reason @ RequeueReason::KeyStuck { .. },
            } => {
                error!(elapsed_ms, retry_in = ?delay, reason = %reason, lock_ttl = ?self.spec.lock_ttl(), "idempotency key has been busy for longer than {STUCK_AFTER_LOCK_TTLS} lock TTLs: a stuck lock or a handler that never ends? The message keeps waiting for it");
            }
            Outcome::Requeue { delay, reason } => {
                info!(elapsed_ms, retry_in = ?delay, reason = %reason, "requeued without calling the handler or counting an attempt");
            }
            Outcome::DeadLetter {
                kind,
                error,
                attempts,
            } => {
                metrics::counter!("mqkit_dead_letters_total", "queue" => self.spec.queue.to_string(), "kind" => kind.as_str()).increment(1);
                // A body that does not decode says so first: the usual question.
                let what = if matches!(kind, DeadLetterKind::Decode) {
                    "decode failed; dead-lettered"
                } else {
                    "dead-lettered"
                };
                error!(elapsed_ms, kind = %kind, attempts, error = %error, "{what}");
            }
        }
    }

    /// Turns an outcome into ack / publish-then-ack / reject.
    async fn apply(&self, received: &Received, outcome: Outcome) {
        let spec = &self.spec;
        let queue = spec.queue.as_ref();
        let delivery = &received.delivery;
        match outcome {
            Outcome::Ack | Outcome::Duplicate => self.ack(delivery).await,
            Outcome::Retry { attempt, delay, .. } => {
                let next = i64::from(attempt.saturating_add(1));
                let props = with_headers(&received.properties, |h| {
                    h.insert(headers::ATTEMPT, next);
                    headers::end_busy_wait(h);
                });
                self.republish(delivery, delay, &props).await;
            }
            Outcome::Requeue {
                delay,
                reason: reason @ (RequeueReason::KeyBusy | RequeueReason::KeyStuck { .. }),
            } => {
                // Counted on the message, not as an attempt.
                let props = with_headers(&received.properties, |h| {
                    let requeues = h.get(headers::BUSY_REQUEUES).and_then(FieldValue::as_i64);
                    h.insert(
                        headers::BUSY_REQUEUES,
                        requeues.unwrap_or(0).saturating_add(1),
                    );
                    if !h.contains(headers::BUSY_SINCE) {
                        h.insert(headers::BUSY_SINCE, unix_millis());
                    }
                    if matches!(reason, RequeueReason::KeyStuck { .. }) {
                        h.insert(headers::BUSY_REPORTED, true);
                    }
                });
                self.republish(delivery, delay, &props).await;
            }
            Outcome::Requeue { delay, .. } => {
                self.republish(delivery, delay, &received.properties).await;
            }
            Outcome::DeadLetter {
                kind,
                error,
                attempts,
            } => {
                let failed_at = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
                let props = with_headers(&received.properties, |h| {
                    h.insert(headers::ERROR, truncate(&error, MAX_ERROR_HEADER));
                    h.insert(headers::ERROR_KIND, kind.as_str());
                    h.insert(headers::ATTEMPTS, i64::from(attempts));
                    h.insert(headers::ORIGINAL_QUEUE, queue);
                    h.insert(headers::FAILED_AT, failed_at);
                    headers::end_busy_wait(h);
                });
                match self
                    .publisher
                    .publish_raw(&spec.dlx, &spec.dlq, &delivery.data, &props, true)
                    .await
                {
                    Ok(()) => self.ack(delivery).await,
                    Err(e) => {
                        // The broker's own dead-letter route (x-dead-letter-*
                        // on the work queue) still catches it: nothing is lost.
                        error!(queue, error = %e, "DLQ publish not confirmed; rejecting so the broker dead-letters the message");
                        let sent = delivery
                            .acker
                            .reject(BasicRejectOptions { requeue: false })
                            .await;
                        if !matches!(sent, Ok(true)) {
                            self.lost("reject", &self.counters.lost_reject);
                        }
                    }
                }
            }
        }
    }

    async fn republish(&self, delivery: &Delivery, delay: Duration, props: &Properties) {
        let queue = self.spec.queue.as_ref();
        let target = delay_queue_name(queue, delay);
        match self
            .publisher
            .publish_raw("", &target, &delivery.data, props, true)
            .await
        {
            Ok(()) => self.ack(delivery).await,
            Err(e) => {
                // Not lost: back to the work queue at once, attempt unchanged.
                error!(queue, delay_queue = %target, error = %e, "could not publish to the delay queue; requeueing at once");
                let options = BasicNackOptions {
                    requeue: true,
                    multiple: false,
                };
                if !matches!(delivery.acker.nack(options).await, Ok(true)) {
                    self.lost("nack", &self.counters.lost_nack);
                }
            }
        }
    }

    async fn ack(&self, delivery: &Delivery) {
        match delivery.acker.ack(BasicAckOptions::default()).await {
            Ok(true) => {}
            // The channel that delivered the message is gone: the broker will
            // redeliver it, and the idempotency record keeps effects single.
            Ok(false) | Err(_) => self.lost("ack", &self.counters.lost_ack),
        }
    }

    fn lost(&self, what: &'static str, counter: &metrics::Counter) {
        warn!(queue = %self.spec.queue, what, "could not send {what}: the delivering channel is closed; the broker redelivers the message");
        counter.increment(1);
    }
}

/// A copy of `props` with headers edited, persistent.
fn with_headers(
    props: &Properties,
    edit: impl FnOnce(&mut crate::core::headers::Headers),
) -> Properties {
    let mut props = props.clone();
    edit(props.headers_mut());
    props.delivery_mode = Some(2);
    props
}
