//! One delivery in, one [`Outcome`] out: decode, idempotency claim, handler
//! (with timeout and panic containment), classification.
//!
//! Entry points: [`Pipeline::process`] (generic) and [`ErasedPipeline`] (the
//! object-safe form the broker drives). Nothing here talks to RabbitMQ: the
//! broker module turns each [`Outcome`] into ack / publish / reject calls.

use std::any::Any;
use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt as _;
use lapin::BasicProperties;
use serde::de::DeserializeOwned;
use tracing::{error, info, warn};

use crate::consumer::{Consumer, ConsumerSpec, DecodeError};
use crate::context::Context;
use crate::idempotency::{BoxFuture, Claim, IdempotencyStore, KeyBuilder};
use crate::publish::Publisher;
use crate::retry::{ATTEMPT_HEADER, attempt_from_header, delay_for};

/// A delivered message as the pipeline sees it.
pub trait Delivery: Sync {
    /// The raw body.
    fn body(&self) -> &[u8];
    /// The AMQP properties, headers included.
    fn properties(&self) -> &BasicProperties;
    /// The broker's redelivered flag.
    fn redelivered(&self) -> bool;
}

impl Delivery for lapin::message::Delivery {
    fn body(&self) -> &[u8] {
        &self.data
    }
    fn properties(&self) -> &BasicProperties {
        &self.properties
    }
    fn redelivered(&self) -> bool {
        self.redelivered
    }
}

/// The attempt number a delivery carries in `x-mqkit-attempt` (1 if absent).
pub fn attempt_of(properties: &BasicProperties) -> u32 {
    attempt_from_header(
        properties
            .headers()
            .as_ref()
            .and_then(|h| h.inner().get(ATTEMPT_HEADER)),
    )
}

/// What to do with a delivery. The broker applies it; see DESIGN.md rule 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Handled: ack.
    Ack,
    /// Transient failure with retries left: republish to the delay queue for
    /// `delay` carrying attempt number `attempt + 1`, then ack.
    Retry {
        /// The attempt that failed (1-based).
        attempt: u32,
        /// How long the message waits before the next attempt.
        delay: Duration,
        /// The failure's text.
        error: String,
    },
    /// Give up: publish to the dead-letter exchange with `x-mqkit-*`
    /// headers, then ack.
    DeadLetter {
        /// Why.
        kind: DeadLetterKind,
        /// The error text (`x-mqkit-error`).
        error: String,
        /// Attempts made (`x-mqkit-attempts`).
        attempts: u32,
    },
    /// The idempotency record says this business key is done: ack without
    /// calling the handler.
    Duplicate,
    /// Not handled now and not counted as an attempt: republish through the
    /// first delay queue, then ack.
    Requeue {
        /// How long the message waits.
        delay: Duration,
        /// Why.
        reason: RequeueReason,
    },
}

impl Outcome {
    /// A short name for logs and metrics: `ack`, `retry`, `dead-letter`,
    /// `duplicate`, `requeue`.
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Ack => "ack",
            Outcome::Retry { .. } => "retry",
            Outcome::DeadLetter { .. } => "dead-letter",
            Outcome::Duplicate => "duplicate",
            Outcome::Requeue { .. } => "requeue",
        }
    }
}

/// Why a message was dead-lettered (`x-mqkit-error-kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeadLetterKind {
    /// The body did not decode into the message type.
    Decode,
    /// The handler returned [`HandlerError::reject`](crate::HandlerError::reject).
    Rejected,
    /// Transient failures used up `max_retries`.
    RetriesExhausted,
    /// The handler panicked and `max_retries = 0`.
    Panic,
    /// The handler ran past `timeout` and `max_retries = 0`.
    Timeout,
}

impl DeadLetterKind {
    /// The header value: `decode`, `rejected`, `retries-exhausted`, `panic`, `timeout`.
    pub const fn as_str(self) -> &'static str {
        match self {
            DeadLetterKind::Decode => "decode",
            DeadLetterKind::Rejected => "rejected",
            DeadLetterKind::RetriesExhausted => "retries-exhausted",
            DeadLetterKind::Panic => "panic",
            DeadLetterKind::Timeout => "timeout",
        }
    }
}

impl fmt::Display for DeadLetterKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a delivery was requeued without counting an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequeueReason {
    /// The same business key is being processed elsewhere right now.
    KeyBusy,
    /// The idempotency store could not be asked (fail closed).
    StoreUnavailable(String),
}

impl fmt::Display for RequeueReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequeueReason::KeyBusy => f.write_str("idempotency key is being processed elsewhere"),
            RequeueReason::StoreUnavailable(e) => write!(f, "idempotency store unavailable: {e}"),
        }
    }
}

/// Decodes a JSON body into `T`, with errors that say what is wrong:
/// empty body, not UTF-8, not JSON, or the wrong shape for `T`.
pub fn decode_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, DecodeError> {
    let fail =
        |what: String| DecodeError(format!("cannot decode {}: {what}", short_type_name::<T>()));
    if body.is_empty() {
        return Err(fail("body is empty".to_owned()));
    }
    // Checked up front: serde_json does not check bytes it skips (unknown
    // fields), and a body that is not UTF-8 is never a valid JSON message.
    let text =
        std::str::from_utf8(body).map_err(|e| fail(format!("body is not valid UTF-8 ({e})")))?;
    let describe = |e: serde_json::Error| {
        let what = match e.classify() {
            serde_json::error::Category::Data => "JSON does not match the type",
            serde_json::error::Category::Eof => "JSON ends too early",
            _ => "body is not valid JSON",
        };
        fail(format!("{what}: {e}"))
    };
    // serde lets a struct be written as an array of its field values in
    // declaration order; a message is an object with named fields, so a
    // top-level array is the wrong shape for a struct type (accepting it
    // would tie the meaning of a body to the Rust field order).
    if text.trim_start().starts_with('[')
        && let Some(name) = struct_name::<T>()
    {
        serde_json::from_str::<serde::de::IgnoredAny>(text).map_err(describe)?;
        let expected = format!("struct {name}");
        return Err(describe(serde::de::Error::invalid_type(
            serde::de::Unexpected::Seq,
            &expected.as_str(),
        )));
    }
    serde_json::from_str(text).map_err(describe)
}

/// The name of `T` if `T` deserializes as a struct (asks `T` which
/// `deserialize_*` method it calls, without any input).
fn struct_name<T: DeserializeOwned>() -> Option<&'static str> {
    match T::deserialize(ShapeProbe) {
        Err(ProbeError::Struct(name)) => Some(name),
        _ => None,
    }
}

struct ShapeProbe;

#[derive(Debug)]
enum ProbeError {
    Struct(&'static str),
    Other,
}

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("shape probe")
    }
}

impl std::error::Error for ProbeError {}

impl serde::de::Error for ProbeError {
    fn custom<M: fmt::Display>(_: M) -> Self {
        ProbeError::Other
    }
}

impl<'de> serde::Deserializer<'de> for ShapeProbe {
    type Error = ProbeError;

    fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, ProbeError> {
        Err(ProbeError::Other)
    }

    fn deserialize_struct<V: serde::de::Visitor<'de>>(
        self,
        name: &'static str,
        _: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, ProbeError> {
        Err(ProbeError::Struct(name))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

fn short_type_name<T>() -> &'static str {
    let full = std::any::type_name::<T>();
    let base = full.split('<').next().unwrap_or(full);
    base.rsplit("::").next().unwrap_or(base)
}

/// What a pipeline needs from outside: the idempotency store and a
/// publisher for handlers' follow-up events.
#[derive(Clone)]
pub struct Deps {
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
pub struct Pipeline<C> {
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
    pub fn new(consumer: C, spec: ConsumerSpec, deps: Deps) -> Self {
        let queue = Arc::from(spec.queue.as_ref());
        Pipeline {
            consumer,
            spec,
            queue,
            deps,
        }
    }

    /// The spec this pipeline runs under.
    pub fn spec(&self) -> &ConsumerSpec {
        &self.spec
    }

    /// Turns one delivery into an [`Outcome`]. Never panics because of the
    /// message or the handler.
    pub async fn process<D: Delivery + ?Sized>(&self, delivery: &D) -> Outcome {
        let spec = &self.spec;
        let properties = delivery.properties();
        let attempt = attempt_of(properties);
        let message_id = properties
            .message_id()
            .as_ref()
            .map(|s| s.as_str())
            .unwrap_or("");

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
                        reason: RequeueReason::StoreUnavailable(e.0),
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
pub trait ErasedPipeline: Send + Sync + 'static {
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
