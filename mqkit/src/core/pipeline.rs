//! One delivery in, one [`Outcome`] out: decode, idempotency claim, handler
//! (with timeout and panic containment), classification.
//!
//! Entry points: [`Pipeline::process`] (generic) and [`ErasedPipeline`] (the
//! object-safe form the AMQP layer drives). Nothing here talks to RabbitMQ:
//! the AMQP layer turns each [`Outcome`] into ack / publish / reject calls,
//! and handlers publish through the [`Publisher`] handle.

use std::any::Any;
use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt as _;
use tracing::{error, warn};

use super::consumer::Consumer;
use super::context::Context;
use super::headers::{self, FieldValue, Properties};
use super::idempotency::{BoxFuture, Claim, IdempotencyStore, KeyBuilder};
use super::inbox::{Begun, CommitError, Inbox};
use super::outcome::{DeadLetterKind, Outcome, RequeueReason};
use super::publish::Publisher;
use super::retry::delay_for;
use super::spec::ConsumerSpec;
use super::state::StateMap;
use super::text::truncate;
use super::trace::delivery_span;

/// A delivered message as the pipeline sees it.
pub(crate) trait Delivery: Sync {
    /// The raw body.
    fn body(&self) -> &[u8];
    /// The message properties, headers included.
    fn properties(&self) -> &Properties;
    /// The broker's redelivered flag.
    fn redelivered(&self) -> bool;
}

/// What a pipeline needs from outside: the idempotency store and a
/// publisher for handlers' follow-up events.
#[derive(Clone)]
pub(crate) struct Deps {
    /// Idempotency records.
    pub store: Arc<dyn IdempotencyStore>,
    /// Handed to handlers through [`Context`].
    pub publisher: Publisher,
    /// What `State<T>` parameters receive.
    pub state: Arc<StateMap>,
    /// The transactional consumers' inbox (from the `tx` add-on).
    pub inbox: Option<Arc<dyn Inbox>>,
}

impl fmt::Debug for Deps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Deps")
            .field("publisher", &self.publisher)
            .finish_non_exhaustive()
    }
}

/// One consumer's per-delivery logic.
pub(crate) struct Pipeline<C> {
    consumer: C,
    spec: ConsumerSpec,
    queue: Arc<str>,
    deps: Deps,
    /// `mqkit_handler_duration_seconds{queue}`, registered once.
    handler_seconds: metrics::Histogram,
    /// `mqkit_stuck_keys_total{queue}`.
    stuck_keys: metrics::Counter,
}

impl<C> fmt::Debug for Pipeline<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pipeline")
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

impl<C: Consumer> Pipeline<C> {
    /// A pipeline running `consumer` under `spec` (which may differ from
    /// `consumer.spec()`, e.g. a renamed queue in tests).
    pub(crate) fn new(consumer: C, spec: ConsumerSpec, deps: Deps) -> Self {
        let queue: Arc<str> = Arc::from(spec.queue.as_ref());
        let label = queue.to_string();
        Pipeline {
            consumer,
            handler_seconds: metrics::histogram!("mqkit_handler_duration_seconds", "queue" => label.clone()),
            stuck_keys: metrics::counter!("mqkit_stuck_keys_total", "queue" => label),
            spec,
            queue,
            deps,
        }
    }

    /// The span a delivery is processed in (see [`delivery_span`]).
    pub(crate) fn span<D: Delivery + ?Sized>(&self, delivery: &D) -> tracing::Span {
        delivery_span(&self.queue, delivery.properties())
    }

    /// The spec this pipeline runs under.
    pub(crate) fn spec(&self) -> &ConsumerSpec {
        &self.spec
    }

    /// What the pipeline was given (the test harness adds state).
    pub(crate) fn deps_mut(&mut self) -> &mut Deps {
        &mut self.deps
    }

    /// Turns one delivery into an [`Outcome`]. Never panics because of the
    /// message or the handler. Logs nothing about the outcome (the caller
    /// writes the one line per outcome); run it inside [`Pipeline::span`].
    pub(crate) async fn process<D: Delivery + ?Sized>(&self, delivery: &D) -> Outcome {
        let spec = &self.spec;
        let properties = delivery.properties();
        let attempt = properties.attempt();
        let message_id = properties.message_id.as_deref().unwrap_or("");

        let msg = match self.consumer.decode(delivery.body()) {
            Ok(msg) => msg,
            Err(e) => {
                return Outcome::DeadLetter {
                    kind: DeadLetterKind::Decode,
                    error: e.0,
                    attempts: attempt,
                };
            }
        };

        let key = if spec.idempotency.is_empty() {
            None
        } else {
            let mut key = KeyBuilder::new(&spec.queue);
            self.consumer.idempotency_key(&msg, &mut key);
            Some(key.finish())
        };
        if self.consumer.transaction().is_some() {
            return self.process_tx(delivery, msg, key).await;
        }
        let store = &*self.deps.store;
        if let Some(key) = &key {
            tracing::Span::current().record("key", key.as_str());
            match store.claim(key, spec.lock_ttl()).await {
                Ok(Claim::Acquired) => {}
                Ok(Claim::Done) => return Outcome::Duplicate,
                Ok(Claim::Busy) => return self.busy(properties),
                Ok(Claim::Foreign { value }) => {
                    let error = foreign_record(key, &value);
                    return Outcome::DeadLetter {
                        kind: DeadLetterKind::Rejected,
                        error,
                        attempts: attempt,
                    };
                }
                Err(e) => {
                    return Outcome::Requeue {
                        delay: spec.retry_delay,
                        reason: RequeueReason::StoreUnavailable(e.message().to_owned()),
                    };
                }
            }
        }

        let ctx = self.context(delivery);
        match self.run_handler(msg, ctx).await {
            Ran::Ok => {
                if let Some(key) = &key
                    && let Err(e) = store.complete(key, spec.idempotency_ttl).await
                {
                    // The side effects happened; acking is right. Only
                    // duplicate suppression is weaker for this key.
                    error!(queue = %spec.queue, message_id, key = %key, error = %e, "handler succeeded but the idempotency record could not be marked done");
                }
                Outcome::Ack
            }
            failed => {
                self.release(key.as_deref(), message_id).await;
                self.failed(failed, attempt)
            }
        }
    }

    /// A transactional delivery: the inbox row, the handler and its staged
    /// messages in one database transaction (DESIGN.md "Transactional
    /// consumers"). `key` is the business key, if the consumer has one.
    async fn process_tx<D: Delivery + ?Sized>(
        &self,
        delivery: &D,
        msg: C::Message,
        key: Option<String>,
    ) -> Outcome {
        let spec = &self.spec;
        let properties = delivery.properties();
        let attempt = properties.attempt();
        let message_id = properties.message_id.as_deref().filter(|m| !m.is_empty());
        let Some(inbox) = &self.deps.inbox else {
            // Startup refuses a transactional consumer without a database.
            return Outcome::Requeue {
                delay: spec.retry_delay,
                reason: RequeueReason::DatabaseUnavailable(
                    "no database is configured for transactional consumers".to_owned(),
                ),
            };
        };
        let Some(inbox_key) = inbox_key(spec, key.as_deref(), message_id) else {
            return Outcome::DeadLetter {
                kind: DeadLetterKind::Rejected,
                error: format!(
                    "a transactional consumer needs a business key (idempotency = \"…\") or a message id to keep this message's inbox row, and `{}` has no idempotency fields while the message has no message_id: publish it with a message id",
                    spec.queue
                ),
                attempts: attempt,
            };
        };
        tracing::Span::current().record("key", inbox_key.as_str());
        let ctx = self.context(delivery);
        let mut open = match inbox.begin(&spec.queue, &inbox_key, message_id, &ctx).await {
            Ok(Begun::Fresh(open)) => open,
            Ok(Begun::Duplicate) => return Outcome::Duplicate,
            Err(e) => {
                return Outcome::Requeue {
                    delay: spec.retry_delay,
                    reason: RequeueReason::DatabaseUnavailable(e.0),
                };
            }
        };
        let ctx = ctx.with_tx(open.hand_out());
        match self.run_handler(msg, ctx).await {
            Ran::Ok => match open.commit().await {
                Ok(()) => Outcome::Ack,
                // Committed or not, the inbox row decides on redelivery.
                Err(CommitError::Database(e)) => Outcome::Requeue {
                    delay: spec.retry_delay,
                    reason: RequeueReason::DatabaseUnavailable(e),
                },
                Err(CommitError::Aborted(error)) => self.failed(
                    Ran::Failed {
                        error,
                        kind_if_last: DeadLetterKind::RetriesExhausted,
                    },
                    attempt,
                ),
                Err(CommitError::TxKept) => self.failed(
                    Ran::Failed {
                        error: "the handler kept its mqkit::Tx after returning (moved into a task?), so nothing was committed".to_owned(),
                        kind_if_last: DeadLetterKind::RetriesExhausted,
                    },
                    attempt,
                ),
            },
            failed => {
                let reachable = open.rollback().await;
                match failed {
                    // The connection died under the handler (its query
                    // failed, and so did the rollback): the database's
                    // outage, not an attempt.
                    Ran::Failed { error, .. } if !reachable => Outcome::Requeue {
                        delay: spec.retry_delay,
                        reason: RequeueReason::DatabaseUnavailable(format!(
                            "the database connection failed while the handler ran: {error}"
                        )),
                    },
                    failed => self.failed(failed, attempt),
                }
            }
        }
    }

    /// The handler's context for `delivery`.
    fn context<D: Delivery + ?Sized>(&self, delivery: &D) -> Context {
        let properties = delivery.properties();
        // One copy of the properties, shared by the context and its
        // publisher (which reads the lineage from it only when publishing).
        let shared = Arc::new(properties.clone());
        Context::from_shared(
            self.queue.clone(),
            shared.clone(),
            delivery.redelivered(),
            properties.attempt(),
            self.deps.publisher.for_delivery(shared),
        )
        .with_state(self.deps.state.clone())
    }

    /// Runs the handler with the timeout and panic containment, and records
    /// its duration.
    async fn run_handler(&self, msg: C::Message, ctx: Context) -> Ran {
        let spec = &self.spec;
        let run = AssertUnwindSafe(self.consumer.handle(msg, ctx)).catch_unwind();
        let started = std::time::Instant::now();
        let result = tokio::time::timeout(spec.timeout, run).await;
        self.handler_seconds.record(started.elapsed().as_secs_f64());
        match result {
            Ok(Ok(Ok(()))) => Ran::Ok,
            Ok(Ok(Err(e))) if e.is_reject() => Ran::Reject(e.to_string()),
            Ok(Ok(Err(e))) => Ran::Failed {
                error: e.to_string(),
                kind_if_last: DeadLetterKind::RetriesExhausted,
            },
            Ok(Err(panic)) => Ran::Failed {
                error: format!("panic: {}", panic_text(&*panic)),
                kind_if_last: DeadLetterKind::Panic,
            },
            Err(_) => Ran::Failed {
                error: format!("timeout after {}", humantime::format_duration(spec.timeout)),
                kind_if_last: DeadLetterKind::Timeout,
            },
        }
    }

    /// The outcome of a handler that did not succeed.
    fn failed(&self, ran: Ran, attempt: u32) -> Outcome {
        let spec = &self.spec;
        let (error, kind_if_last) = match ran {
            Ran::Ok => return Outcome::Ack,
            Ran::Reject(error) => {
                return Outcome::DeadLetter {
                    kind: DeadLetterKind::Rejected,
                    error,
                    attempts: attempt,
                };
            }
            Ran::Failed {
                error,
                kind_if_last,
            } => (error, kind_if_last),
        };
        if attempt <= spec.max_retries {
            Outcome::Retry {
                attempt,
                delay: delay_for(spec.retry_delay, attempt),
                error,
            }
        } else {
            let kind = if spec.max_retries == 0 {
                kind_if_last
            } else {
                DeadLetterKind::RetriesExhausted
            };
            Outcome::DeadLetter {
                kind,
                error,
                attempts: attempt,
            }
        }
    }

    /// A requeue for a key held elsewhere. The AMQP layer counts these on the
    /// message (`x-mqkit-busy-requeues`, `x-mqkit-busy-since`); once the same
    /// message has waited longer than [`STUCK_AFTER_LOCK_TTLS`] lock TTLs,
    /// that is reported once: [`RequeueReason::KeyStuck`] (logged at ERROR
    /// by the caller) and `mqkit_stuck_keys_total`.
    fn busy(&self, properties: &Properties) -> Outcome {
        let spec = &self.spec;
        let requeue = |reason| Outcome::Requeue {
            delay: spec.retry_delay,
            reason,
        };
        let waited = properties
            .header(headers::BUSY_SINCE)
            .and_then(FieldValue::as_i64)
            .and_then(|since| u64::try_from(unix_millis().saturating_sub(since)).ok())
            .map(Duration::from_millis);
        let limit = spec.lock_ttl() * STUCK_AFTER_LOCK_TTLS;
        match waited {
            Some(busy_for)
                if busy_for > limit && properties.header(headers::BUSY_REPORTED).is_none() =>
            {
                self.stuck_keys.increment(1);
                requeue(RequeueReason::KeyStuck { busy_for })
            }
            _ => requeue(RequeueReason::KeyBusy),
        }
    }

    async fn release(&self, key: Option<&str>, message_id: &str) {
        if let Some(key) = key
            && let Err(e) = self.deps.store.release(key).await
        {
            // The lock expires after lock_ttl; until then the retry is
            // requeued as busy rather than run twice at once.
            warn!(queue = %self.spec.queue, message_id, key, error = %e, "could not release idempotency key after a failure");
        }
    }
}

/// How a handler run ended.
enum Ran {
    Ok,
    /// `HandlerError::reject`: straight to the DLQ.
    Reject(String),
    /// A transient error, a panic or a timeout.
    Failed {
        error: String,
        /// The dead-letter kind if this was the last attempt and
        /// `max_retries = 0`.
        kind_if_last: DeadLetterKind,
    },
}

/// Longest inbox key stored as it is; longer keys are stored as
/// `uuid5:` + their UUID v5 (SHA-1), since MySQL indexes at most 3072 bytes.
const MAX_INBOX_KEY: usize = 512;

/// The inbox key of a delivery: the idempotency fields (the idempotency
/// key without its `mqkit:idem:{queue}:` prefix), else `id:` + the message
/// id, else `None`.
fn inbox_key(spec: &ConsumerSpec, key: Option<&str>, message_id: Option<&str>) -> Option<String> {
    let full = match (key, message_id) {
        (Some(key), _) => {
            let prefix_len = "mqkit:idem:".len() + spec.queue.len() + 1;
            key.get(prefix_len..).unwrap_or(key).to_owned()
        }
        (None, Some(id)) => format!("id:{id}"),
        (None, None) => return None,
    };
    if full.chars().count() <= MAX_INBOX_KEY {
        Some(full)
    } else {
        Some(format!(
            "uuid5:{}",
            uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, full.as_bytes())
        ))
    }
}

/// How many lock TTLs a message may wait for a busy key before it is
/// reported as stuck.
pub(crate) const STUCK_AFTER_LOCK_TTLS: u32 = 3;

/// Longest part of a foreign record's value quoted in an error.
const MAX_FOREIGN_VALUE: usize = 64;

fn foreign_record(key: &str, value: &str) -> String {
    let shown = truncate(value, MAX_FOREIGN_VALUE);
    let cut = if shown.len() < value.len() { "…" } else { "" };
    format!(
        "idempotency key {key} holds {shown:?}{cut}, a value mqkit never writes (it writes processing and done); the record was left as it is: delete it or fix what wrote it, then replay this message"
    )
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn unix_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn panic_text(panic: &(dyn Any + Send)) -> &str {
    if let Some(s) = panic.downcast_ref::<&'static str>() {
        s
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s
    } else {
        "(non-string panic payload)"
    }
}

/// The object-safe face of a [`Pipeline`], as the broker and the registry
/// hold it.
pub(crate) trait ErasedPipeline: Send + Sync + 'static {
    /// The spec this pipeline runs under.
    fn spec(&self) -> &ConsumerSpec;
    /// [`Pipeline::span`].
    fn span(&self, delivery: &dyn Delivery) -> tracing::Span;
    /// [`Pipeline::process`], boxed.
    fn process<'a>(&'a self, delivery: &'a dyn Delivery) -> BoxFuture<'a, Outcome>;
}

impl<C: Consumer> ErasedPipeline for Pipeline<C> {
    fn spec(&self) -> &ConsumerSpec {
        &self.spec
    }

    fn span(&self, delivery: &dyn Delivery) -> tracing::Span {
        Pipeline::span(self, delivery)
    }

    fn process<'a>(&'a self, delivery: &'a dyn Delivery) -> BoxFuture<'a, Outcome> {
        Box::pin(Pipeline::process(self, delivery))
    }
}
