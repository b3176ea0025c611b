//! [`Outcome`]: what the pipeline decided for one delivery, and the reasons
//! it carries ([`DeadLetterKind`], [`RequeueReason`]). The AMQP layer turns
//! each into ack / publish-then-ack / reject (ARCHITECTURE.md rule 2).

use std::fmt;
use std::time::Duration;

/// What to do with a delivery. The AMQP layer applies it; see
/// ARCHITECTURE.md rule 2.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
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
#[non_exhaustive]
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
#[non_exhaustive]
pub enum RequeueReason {
    /// The same business key is being processed elsewhere right now.
    KeyBusy,
    /// The key has been busy for longer than several lock TTLs while this
    /// message waited (reported once per message; it keeps waiting).
    KeyStuck {
        /// How long this message has waited for the key.
        busy_for: Duration,
    },
    /// The idempotency store could not be asked (fail closed).
    StoreUnavailable(String),
    /// A transactional consumer's database could not be asked, or did not
    /// confirm the commit (fail closed; the inbox row decides next time).
    DatabaseUnavailable(String),
}

impl fmt::Display for RequeueReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequeueReason::KeyBusy => f.write_str("idempotency key is being processed elsewhere"),
            RequeueReason::KeyStuck { busy_for } => write!(
                f,
                "idempotency key has been busy for {}: a stuck lock?",
                humantime::format_duration(*busy_for)
            ),
            RequeueReason::StoreUnavailable(e) => write!(f, "idempotency store unavailable: {e}"),
            RequeueReason::DatabaseUnavailable(e) => write!(f, "database unavailable: {e}"),
        }
    }
}
