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

use futures_util::FutureExt as _;
use tracing::{error, info, warn};

use super::consumer::Consumer;
use super::context::Context;
use super::headers::Properties;
use super::idempotency::{BoxFuture, Claim, IdempotencyStore, KeyBuilder};
use super::outcome::{DeadLetterKind, Outcome, RequeueReason};
use super::publish::Publisher;
use super::retry::delay_for;
use super::spec::ConsumerSpec;

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
        let queue = Arc::from(spec.queue.as_ref());
        Pipeline {
            consumer,
            spec,
            queue,
            deps,
        }
    }

    /// The spec this pipeline runs under.
    pub(crate) fn spec(&self) -> &ConsumerSpec {
        &self.spec
    }

    /// Turns one delivery into an [`Outcome`]. Never panics because of the
    /// message or the handler.
    pub(crate) async fn process<D: Delivery + ?Sized>(&self, delivery: &D) -> Outcome {
        let spec = &self.spec;
        let properties = delivery.properties();
        let attempt = properties.attempt();
        let message_id = properties.message_id.as_deref().unwrap_or("");

        let msg = match self.consumer.decode(delivery.body()) {
            Ok(msg) => msg,
            Err(e) => {
                error!(queue = %spec.queue, message_id, error = %e, "decode failed; dead-lettering");
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
        let store = &*self.deps.store;
        if let Some(key) = &key {
            match store.claim(key, spec.lock_ttl()).await {
                Ok(Claim::Acquired) => {}
                Ok(Claim::Done) => {
                    info!(queue = %spec.queue, message_id, key = %key, "duplicate: business key already handled; acking without calling the handler");
                    return Outcome::Duplicate;
                }
                Ok(Claim::Busy) => {
                    return Outcome::Requeue {
                        delay: spec.retry_delay,
                        reason: RequeueReason::KeyBusy,
                    };
                }
                Err(e) => {
                    warn!(queue = %spec.queue, message_id, error = %e, "idempotency store unavailable; requeueing without calling the handler");
                    return Outcome::Requeue {
                        delay: spec.retry_delay,
                        reason: RequeueReason::StoreUnavailable(e.message().to_owned()),
                    };
                }
            }
        }

        let ctx = Context::new(
            self.queue.clone(),
            properties.clone(),
            delivery.redelivered(),
            attempt,
            self.deps.publisher.clone(),
        );
        let run = AssertUnwindSafe(self.consumer.handle(msg, ctx)).catch_unwind();
        let (error, kind_if_last) = match tokio::time::timeout(spec.timeout, run).await {
            Ok(Ok(Ok(()))) => {
                if let Some(key) = &key
                    && let Err(e) = store.complete(key, spec.idempotency_ttl).await
                {
                    // The side effects happened; acking is right. Only
                    // duplicate suppression is weaker for this key.
                    error!(queue = %spec.queue, message_id, key = %key, error = %e, "handler succeeded but the idempotency record could not be marked done");
                }
                return Outcome::Ack;
            }
            Ok(Ok(Err(e))) if e.is_reject() => {
                self.release(key.as_deref(), message_id).await;
                return Outcome::DeadLetter {
                    kind: DeadLetterKind::Rejected,
                    error: e.to_string(),
                    attempts: attempt,
                };
            }
            Ok(Ok(Err(e))) => (e.to_string(), DeadLetterKind::RetriesExhausted),
            Ok(Err(panic)) => (
                format!("panic: {}", panic_text(&*panic)),
                DeadLetterKind::Panic,
            ),
            Err(_) => (
                format!("timeout after {}", humantime::format_duration(spec.timeout)),
                DeadLetterKind::Timeout,
            ),
        };
        self.release(key.as_deref(), message_id).await;
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
    /// [`Pipeline::process`], boxed.
    fn process<'a>(&'a self, delivery: &'a dyn Delivery) -> BoxFuture<'a, Outcome>;
}

impl<C: Consumer> ErasedPipeline for Pipeline<C> {
    fn spec(&self) -> &ConsumerSpec {
        &self.spec
    }

    fn process<'a>(&'a self, delivery: &'a dyn Delivery) -> BoxFuture<'a, Outcome> {
        Box::pin(Pipeline::process(self, delivery))
    }
}
