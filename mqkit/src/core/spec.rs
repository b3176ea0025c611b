//! [`ConsumerSpec`]: everything a `#[consumer(...)]` attribute says, as
//! data, with the defaults of ARCHITECTURE.md's attribute table in one place
//! ([`ConsumerSpec::new`]) and the invariants the macro checks at compile
//! time ([`ConsumerSpec::validate`]) for specs built by hand.

use std::borrow::Cow;
use std::time::Duration;

use super::retry::{delay_queue_name, delays};

/// The type of the work queue (`x-queue-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QueueType {
    /// A classic queue (RabbitMQ's default).
    Classic,
    /// A replicated quorum queue.
    Quorum,
}

impl QueueType {
    /// The value RabbitMQ expects in `x-queue-type`.
    pub const fn as_str(self) -> &'static str {
        match self {
            QueueType::Classic => "classic",
            QueueType::Quorum => "quorum",
        }
    }
}

/// An optional source exchange bound to the work queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExchangeBinding {
    /// Exchange name; declared durable.
    pub exchange: Cow<'static, str>,
    /// Exchange type: `topic`, `direct`, `fanout` or `headers`.
    pub exchange_type: Cow<'static, str>,
    /// Binding key. Defaults to `#` for topic exchanges, the queue name otherwise.
    pub routing_key: Cow<'static, str>,
}

/// Everything the `#[consumer(...)]` attribute says, as data.
///
/// The macro builds one as a constant; tests and hand-written consumers can
/// build or adjust one at run time (e.g. to give a queue a unique name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerSpec {
    /// Work queue name.
    pub queue: Cow<'static, str>,
    /// Dead-letter exchange (direct, durable).
    pub dlx: Cow<'static, str>,
    /// Dead-letter queue; also its routing key on the DLX.
    pub dlq: Cow<'static, str>,
    /// Names of the message fields that make up the idempotency key; empty
    /// means no idempotency check. Must match what
    /// [`Consumer::idempotency_key`] writes.
    pub idempotency: &'static [&'static str],
    /// How long a `done` record suppresses duplicates.
    pub idempotency_ttl: Duration,
    /// Retries after the first attempt before the message goes to the DLQ.
    pub max_retries: u32,
    /// First retry delay; doubles each attempt, capped at [`MAX_RETRY_DELAY`](crate::retry::MAX_RETRY_DELAY).
    pub retry_delay: Duration,
    /// `basic.qos` prefetch count of this consumer's channel.
    pub prefetch: u16,
    /// Handlers of this consumer running at once.
    pub concurrency: u16,
    /// A handler running longer counts as a transient failure.
    pub timeout: Duration,
    /// Optional source exchange and binding.
    pub binding: Option<ExchangeBinding>,
    /// Classic or quorum work queue.
    pub queue_type: QueueType,
}

impl ConsumerSpec {
    /// A spec for `queue` with every other argument at its documented default.
    pub fn new(queue: impl Into<Cow<'static, str>>) -> Self {
        let queue = queue.into();
        ConsumerSpec {
            dlq: Cow::Owned(format!("dlq.{queue}")),
            queue,
            dlx: Cow::Borrowed("dlx"),
            idempotency: &[],
            idempotency_ttl: Duration::from_secs(24 * 60 * 60),
            max_retries: 3,
            retry_delay: Duration::from_secs(1),
            prefetch: 10,
            concurrency: 10,
            timeout: Duration::from_secs(30),
            binding: None,
            queue_type: QueueType::Classic,
        }
    }

    /// Renames the work queue, and the DLQ with it when the DLQ kept its
    /// default name (`dlq.<queue>`). Used by tests to get unique names.
    pub fn rename_queue(&mut self, queue: impl Into<Cow<'static, str>>) {
        let old_default = format!("dlq.{}", self.queue);
        self.queue = queue.into();
        if self.dlq == old_default {
            self.dlq = Cow::Owned(format!("dlq.{}", self.queue));
        }
    }

    /// How long the idempotency lock lives: the handler timeout plus 5 s, so a
    /// lock left by a killed process expires soon after any handler could
    /// have finished.
    pub fn lock_ttl(&self) -> Duration {
        self.timeout + Duration::from_secs(5)
    }

    /// Every queue mqkit declares for this consumer: the DLQ, the work queue
    /// and its delay queues (`<queue>.retry.<ms>`), in declaration order.
    pub fn declared_queues(&self) -> Vec<String> {
        let mut names = vec![self.dlq.to_string(), self.queue.to_string()];
        names.extend(
            delays(self)
                .into_iter()
                .map(|d| delay_queue_name(&self.queue, d)),
        );
        names
    }

    /// Every exchange mqkit declares for this consumer: the DLX and the
    /// optional source exchange.
    pub fn declared_exchanges(&self) -> Vec<String> {
        let mut names = vec![self.dlx.to_string()];
        names.extend(self.binding.as_ref().map(|b| b.exchange.to_string()));
        names
    }

    /// Checks the invariants the macro checks at compile time, for specs built
    /// by hand.
    pub fn validate(&self) -> Result<(), SpecError> {
        let fail = |problem: &str| {
            Err(SpecError {
                queue: self.queue.to_string(),
                problem: problem.to_owned(),
            })
        };
        if self.queue.is_empty() {
            return fail("`queue` is empty");
        }
        if self.dlx.is_empty() {
            return fail("`dlx` is empty");
        }
        if self.dlq.is_empty() {
            return fail("`dlq` is empty");
        }
        if self.prefetch == 0 {
            return fail("`prefetch` is 0; it must be at least 1");
        }
        if self.concurrency == 0 {
            return fail("`concurrency` is 0; it must be at least 1");
        }
        if self.retry_delay.is_zero() || self.timeout.is_zero() {
            return fail("`retry_delay` and `timeout` must be greater than zero");
        }
        if !self.idempotency.is_empty() && self.idempotency_ttl < Duration::from_secs(1) {
            return fail("`idempotency_ttl` must be at least 1s");
        }
        Ok(())
    }
}

/// A [`ConsumerSpec`] that breaks an invariant.
#[derive(Debug, Clone, thiserror::Error)]
#[error("consumer spec for queue `{queue}` is invalid: {problem}")]
pub struct SpecError {
    /// The spec's queue.
    pub queue: String,
    /// What is wrong.
    pub problem: String,
}
