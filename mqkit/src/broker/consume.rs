//! One consumer's loop: its own channel with `basic.qos(prefetch)`, manual
//! acks, at most `concurrency` handlers at once, and each [`Outcome`]
//! applied on the channel that delivered it.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures_util::StreamExt as _;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
    BasicRejectOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Connection};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn};

use crate::consumer::ConsumerSpec;
use crate::error::Error;
use crate::pipeline::{ErasedPipeline, Outcome, attempt_of};
use crate::publish::Publisher;
use crate::retry::{ATTEMPT_HEADER, delay_queue_name};

/// Headers of a DLQ copy (DESIGN.md rule 3).
pub(crate) const H_ERROR: &str = "x-mqkit-error";
pub(crate) const H_ERROR_KIND: &str = "x-mqkit-error-kind";
pub(crate) const H_ATTEMPTS: &str = "x-mqkit-attempts";
pub(crate) const H_ORIGINAL_QUEUE: &str = "x-mqkit-original-queue";
pub(crate) const H_FAILED_AT: &str = "x-mqkit-failed-at";

/// Error texts longer than this are cut in headers (frames have limits).
const MAX_ERROR_HEADER: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub(crate) enum ConsumeError {
    /// The channel or connection went away: reconnect.
    #[error("{0}")]
    Lost(String),
    /// Cannot consume at all (e.g. access refused): stop the service.
    #[error(transparent)]
    Fatal(Error),
}

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

pub(crate) async fn run(
    connection: Arc<Connection>,
    pipeline: Arc<dyn ErasedPipeline>,
    publisher: Publisher,
    stop: CancellationToken,
    drain: Drain,
    ready: tokio::sync::mpsc::Sender<()>,
) -> Result<(), ConsumeError> {
    let spec = pipeline.spec().clone();
    let queue = spec.queue.to_string();
    let lost =
        |what: &str, e: lapin::Error| ConsumeError::Lost(format!("{what} on queue `{queue}`: {e}"));
    let channel = connection
        .create_channel()
        .await
        .map_err(|e| lost("cannot open a channel", e))?;
    channel
        .basic_qos(spec.prefetch, BasicQosOptions { global: false })
        .await
        .map_err(|e| lost("basic.qos failed", e))?;
    let tag = format!("{}.{}", queue, std::process::id());
    let mut deliveries = channel
        .basic_consume(
            queue.as_str().into(),
            tag.as_str().into(),
            BasicConsumeOptions {
                no_ack: false,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(|e| match e.kind() {
            lapin::ErrorKind::ProtocolError(_) => ConsumeError::Fatal(Error::Consume {
                queue: queue.clone(),
                source: e,
            }),
            _ => lost("basic.consume failed", e),
        })?;
    info!(queue = %queue, prefetch = spec.prefetch, concurrency = spec.concurrency, "consuming");
    let _ = ready.send(()).await;

    let slots = Arc::new(Semaphore::new(usize::from(spec.concurrency)));
    let tasks = TaskTracker::new();
    let worker = Arc::new(Worker {
        counters: Counters::new(&queue),
        pipeline,
        spec,
        publisher,
    });
    let result = loop {
        // A free handler slot first, then a delivery: never more than
        // `concurrency` handlers, and no delivery taken that cannot start.
        let permit = tokio::select! {
            biased;
            _ = stop.cancelled() => break Ok(()),
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break Ok(()),
            },
        };
        let next = tokio::select! {
            biased;
            _ = stop.cancelled() => break Ok(()),
            next = deliveries.next() => next,
        };
        match next {
            Some(Ok(delivery)) => {
                let worker = worker.clone();
                tasks.spawn(async move {
                    worker.handle(delivery).await;
                    drop(permit);
                });
            }
            Some(Err(e)) => break Err(lost("consumer stream failed", e)),
            None => {
                break Err(ConsumeError::Lost(format!(
                    "consumer of queue `{queue}` was cancelled by the broker (queue deleted?)"
                )));
            }
        }
    };
    tasks.close();
    if channel.status().connected() {
        // Stop deliveries at once; prefetched but unstarted ones go back to
        // the queue when the channel closes.
        if let Err(e) = channel
            .basic_cancel(tag.as_str().into(), BasicCancelOptions::default())
            .await
        {
            warn!(queue = %queue, error = %e, "basic.cancel failed");
        }
        if let Some(grace) = drain.grace() {
            if !tasks.is_empty() {
                info!(queue = %queue, in_flight = tasks.len(), grace = ?grace, "waiting for in-flight handlers");
            }
            if tokio::time::timeout(grace, tasks.wait()).await.is_err() {
                warn!(queue = %queue, abandoned = tasks.len(), "grace period over; abandoning unfinished handlers unacked (the broker redelivers them)");
            }
        }
        if channel.status().connected() {
            let _ = channel.close(200, "OK".into()).await;
        }
    }
    result
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
        let started = Instant::now();
        let outcome = self.pipeline.process(&delivery).await;
        let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let message_id = delivery
            .properties
            .message_id()
            .as_ref()
            .map(|s| s.as_str())
            .unwrap_or("");
        let attempt = attempt_of(&delivery.properties);
        let queue = self.spec.queue.as_ref();
        let name = outcome.name();
        match &outcome {
            Outcome::Ack => debug!(
                queue,
                message_id,
                attempt,
                outcome = name,
                elapsed_ms,
                "handled"
            ),
            Outcome::Duplicate => {
                info!(
                    queue,
                    message_id,
                    attempt,
                    outcome = name,
                    elapsed_ms,
                    "duplicate skipped"
                )
            }
            Outcome::Retry { delay, error, .. } => {
                warn!(queue, message_id, attempt, outcome = name, elapsed_ms, retry_in = ?delay, error = %error, "handler failed; retrying later")
            }
            Outcome::Requeue { delay, reason } => {
                info!(queue, message_id, attempt, outcome = name, elapsed_ms, retry_in = ?delay, reason = %reason, "requeued without counting an attempt")
            }
            Outcome::DeadLetter {
                kind,
                error,
                attempts,
            } => {
                error!(queue, message_id, attempt, outcome = name, elapsed_ms, kind = %kind, attempts, error = %error, "dead-lettered")
            }
        }
        self.counters.outcome(&outcome).increment(1);
        self.apply(&delivery, outcome).await;
    }

    /// Turns an outcome into ack / publish-then-ack / reject.
    async fn apply(&self, delivery: &Delivery, outcome: Outcome) {
        let spec = &self.spec;
        let queue = spec.queue.as_ref();
        match outcome {
            Outcome::Ack | Outcome::Duplicate => self.ack(delivery).await,
            Outcome::Retry { attempt, delay, .. } => {
                let next = i64::from(attempt.saturating_add(1));
                let props = with_headers(&delivery.properties, |h| {
                    h.insert(ATTEMPT_HEADER.into(), AMQPValue::LongLongInt(next));
                });
                self.republish(delivery, delay, props).await;
            }
            Outcome::Requeue { delay, .. } => {
                let props = delivery.properties.clone();
                self.republish(delivery, delay, props).await;
            }
            Outcome::DeadLetter {
                kind,
                error,
                attempts,
            } => {
                let failed_at = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
                let props = with_headers(&delivery.properties, |h| {
                    let error = truncate(&error, MAX_ERROR_HEADER);
                    h.insert(
                        H_ERROR.into(),
                        AMQPValue::LongString(LongString::from(error)),
                    );
                    h.insert(
                        H_ERROR_KIND.into(),
                        AMQPValue::LongString(kind.as_str().into()),
                    );
                    h.insert(H_ATTEMPTS.into(), AMQPValue::LongLongInt(attempts.into()));
                    h.insert(H_ORIGINAL_QUEUE.into(), AMQPValue::LongString(queue.into()));
                    h.insert(H_FAILED_AT.into(), AMQPValue::LongString(failed_at.into()));
                });
                match self
                    .publisher
                    .publish_raw(&spec.dlx, &spec.dlq, &delivery.data, props, true)
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

    async fn republish(&self, delivery: &Delivery, delay: Duration, props: BasicProperties) {
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

fn with_headers(props: &BasicProperties, edit: impl FnOnce(&mut FieldTable)) -> BasicProperties {
    let mut headers = props.headers().clone().unwrap_or_default();
    edit(&mut headers);
    props.clone().with_headers(headers).with_delivery_mode(2)
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
