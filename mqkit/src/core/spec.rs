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
/// Built with [`ConsumerSpec::new`] and the setters named after the
/// attribute's arguments; the macro emits exactly that, one setter per
/// argument written, so the defaults live here only. The fields stay public
/// so tests and hand-written consumers can read or adjust a spec at run time
/// (e.g. to give a queue a unique name).
///
/// ```
/// use std::time::Duration;
/// use mqkit::ConsumerSpec;
///
/// let spec = ConsumerSpec::new("order")
///     .idempotency(&["order_id"])
///     .prefetch(20)
///     .timeout(Duration::from_secs(5))
///     .exchange("orders");
/// assert_eq!(spec.concurrency, 20); // follows `prefetch` unless set
/// assert_eq!(spec.binding.map(|b| b.routing_key), Some("#".into()));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConsumerSpec {
    /// Work queue name.
    pub queue: Cow<'static, str>,
    /// Dead-letter exchange (direct, durable).
    pub dlx: Cow<'static, str>,
    /// Dead-letter queue; also its routing key on the DLX.
    pub dlq: Cow<'static, str>,
    /// Names of the message fields that make up the idempotency key; empty
    /// means no idempotency check. Must match what
    /// [`Consumer::idempotency_key`](super::consumer::Consumer::idempotency_key) writes.
    pub idempotency: &'static [&'static str],
    /// How long a `done` record suppresses duplicates.
    pub idempotency_ttl: Duration,
    /// Retries after the first attempt before the message goes to the DLQ.
    pub max_retries: u32,
    /// First retry delay; doubles each attempt, capped at [`MAX_RETRY_DELAY`](super::retry::MAX_RETRY_DELAY).
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
        if self.concurrency > self.prefetch {
            return fail(
                "`concurrency` exceeds `prefetch`: a consumer never holds more than `prefetch` unacked messages",
            );
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

/// Builder setters, one per attribute argument (same names, same defaults).
impl ConsumerSpec {
    /// Sets the dead-letter exchange (`dlx`, default `"dlx"`).
    #[must_use]
    pub fn dlx(mut self, dlx: impl Into<Cow<'static, str>>) -> Self {
        self.dlx = dlx.into();
        self
    }

    /// Sets the dead-letter queue and its routing key on the DLX (`dlq`,
    /// default `"dlq.<queue>"`).
    #[must_use]
    pub fn dlq(mut self, dlq: impl Into<Cow<'static, str>>) -> Self {
        self.dlq = dlq.into();
        self
    }

    /// Sets the message fields that form the idempotency key (`idempotency`,
    /// default none). They must match what [`Consumer::idempotency_key`](super::consumer::Consumer::idempotency_key)
    /// writes, in the same order.
    #[must_use]
    pub fn idempotency(mut self, fields: &'static [&'static str]) -> Self {
        self.idempotency = fields;
        self
    }

    /// Sets how long a `done` record suppresses duplicates
    /// (`idempotency_ttl`, default 24 h).
    #[must_use]
    pub fn idempotency_ttl(mut self, ttl: Duration) -> Self {
        self.idempotency_ttl = ttl;
        self
    }

    /// Sets the retries after the first attempt before the DLQ
    /// (`max_retries`, default 3).
    #[must_use]
    pub fn max_retries(mut self, max_retries: u32) -> Self {
        self.max_retries = max_retries;
        self
    }

    /// Sets the first retry delay (`retry_delay`, default 1 s); it doubles
    /// each attempt, capped at [`MAX_RETRY_DELAY`](super::retry::MAX_RETRY_DELAY).
    #[must_use]
    pub fn retry_delay(mut self, delay: Duration) -> Self {
        self.retry_delay = delay;
        self
    }

    /// Sets the `basic.qos` prefetch count (`prefetch`, default 10).
    ///
    /// `concurrency` defaults to `prefetch`: while it still equals the old
    /// prefetch it follows, so `new(q).prefetch(20)` runs 20 handlers at once.
    /// Call [`concurrency`](Self::concurrency) after this to set it apart.
    #[must_use]
    pub fn prefetch(mut self, prefetch: u16) -> Self {
        if self.concurrency == self.prefetch {
            self.concurrency = prefetch;
        }
        self.prefetch = prefetch;
        self
    }

    /// Sets how many handlers of this consumer run at once (`concurrency`,
    /// default `prefetch`). More than `prefetch` never run, since the
    /// consumer never holds more unacked messages.
    #[must_use]
    pub fn concurrency(mut self, concurrency: u16) -> Self {
        self.concurrency = concurrency;
        self
    }

    /// Sets the handler timeout (`timeout`, default 30 s); a longer run is a
    /// transient failure.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Binds the work queue to a durable source exchange (`exchange`, default
    /// none): a `topic` exchange with routing key `#`, until
    /// [`exchange_type`](Self::exchange_type) or
    /// [`routing_key`](Self::routing_key) say otherwise. Replaces any earlier
    /// binding, so call it first.
    #[must_use]
    pub fn exchange(mut self, exchange: impl Into<Cow<'static, str>>) -> Self {
        self.binding = Some(ExchangeBinding {
            exchange: exchange.into(),
            exchange_type: Cow::Borrowed("topic"),
            routing_key: Cow::Borrowed("#"),
        });
        self
    }

    /// Sets the source exchange's type (`exchange_type`: `direct`, `topic`,
    /// `fanout` or `headers`; default `topic`). A routing key still at the
    /// old type's default follows the new type's: `#` for `topic`, the queue
    /// name otherwise. Does nothing without an [`exchange`](Self::exchange).
    #[must_use]
    pub fn exchange_type(mut self, exchange_type: impl Into<Cow<'static, str>>) -> Self {
        let queue = &self.queue;
        if let Some(binding) = &mut self.binding {
            let default_key = |kind: &str| -> Cow<'static, str> {
                if kind == "topic" {
                    Cow::Borrowed("#")
                } else {
                    Cow::Owned(queue.to_string())
                }
            };
            let kept_default = binding.routing_key == default_key(&binding.exchange_type);
            binding.exchange_type = exchange_type.into();
            if kept_default {
                binding.routing_key = default_key(&binding.exchange_type);
            }
        }
        self
    }

    /// Sets the binding key of the source exchange (`routing_key`, default
    /// `#` for `topic`, the queue name otherwise). Does nothing without an
    /// [`exchange`](Self::exchange).
    #[must_use]
    pub fn routing_key(mut self, routing_key: impl Into<Cow<'static, str>>) -> Self {
        if let Some(binding) = &mut self.binding {
            binding.routing_key = routing_key.into();
        }
        self
    }

    /// Sets the work queue's type (`queue_type`, default
    /// [`QueueType::Classic`]).
    #[must_use]
    pub fn queue_type(mut self, queue_type: QueueType) -> Self {
        self.queue_type = queue_type;
        self
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

#[cfg(test)]
mod tests {
    use super::*;

    /// What the macro emitted as a struct literal for every argument
    /// (`mqkit-macros`' `all_args` snapshot before it switched to setters).
    #[test]
    fn setters_give_what_the_struct_literal_gave() {
        let built = ConsumerSpec::new("payment")
            .dlx("payments.dlx")
            .dlq("payments.dead")
            .idempotency(&["payment_id", "event_type"])
            .idempotency_ttl(Duration::new(604_800, 0))
            .max_retries(5)
            .retry_delay(Duration::new(0, 250_000_000))
            .prefetch(20)
            .concurrency(4)
            .timeout(Duration::new(120, 0))
            .exchange("payments")
            .exchange_type("direct")
            .routing_key("payment.captured")
            .queue_type(QueueType::Quorum);
        let literal = ConsumerSpec {
            queue: Cow::Borrowed("payment"),
            dlx: Cow::Borrowed("payments.dlx"),
            dlq: Cow::Borrowed("payments.dead"),
            idempotency: &["payment_id", "event_type"],
            idempotency_ttl: Duration::new(604_800, 0),
            max_retries: 5,
            retry_delay: Duration::new(0, 250_000_000),
            prefetch: 20,
            concurrency: 4,
            timeout: Duration::new(120, 0),
            binding: Some(ExchangeBinding {
                exchange: Cow::Borrowed("payments"),
                exchange_type: Cow::Borrowed("direct"),
                routing_key: Cow::Borrowed("payment.captured"),
            }),
            queue_type: QueueType::Quorum,
        };
        assert_eq!(built, literal);
    }

    #[test]
    fn new_gives_the_documented_defaults() {
        let spec = ConsumerSpec::new("order");
        assert_eq!(spec.dlx, "dlx");
        assert_eq!(spec.dlq, "dlq.order");
        assert!(spec.idempotency.is_empty());
        assert_eq!(spec.idempotency_ttl, Duration::from_secs(86_400));
        assert_eq!(spec.max_retries, 3);
        assert_eq!(spec.retry_delay, Duration::from_secs(1));
        assert_eq!((spec.prefetch, spec.concurrency), (10, 10));
        assert_eq!(spec.timeout, Duration::from_secs(30));
        assert_eq!(spec.binding, None);
        assert_eq!(spec.queue_type, QueueType::Classic);
    }

    #[test]
    fn concurrency_follows_prefetch_until_set() {
        let follows = ConsumerSpec::new("order").prefetch(20);
        assert_eq!((follows.prefetch, follows.concurrency), (20, 20));
        let set_after = ConsumerSpec::new("order").prefetch(20).concurrency(4);
        assert_eq!((set_after.prefetch, set_after.concurrency), (20, 4));
        let set_before = ConsumerSpec::new("order").concurrency(4).prefetch(20);
        assert_eq!((set_before.prefetch, set_before.concurrency), (20, 4));
        let only_concurrency = ConsumerSpec::new("order").concurrency(4);
        assert_eq!(
            (only_concurrency.prefetch, only_concurrency.concurrency),
            (10, 4)
        );
    }

    fn binding(spec: &ConsumerSpec) -> Option<(&str, &str, &str)> {
        let b = spec.binding.as_ref()?;
        Some((&b.exchange, &b.exchange_type, &b.routing_key))
    }

    #[test]
    fn routing_key_follows_exchange_type_until_set() {
        let topic = ConsumerSpec::new("order").exchange("orders");
        assert_eq!(binding(&topic), Some(("orders", "topic", "#")));
        let direct = topic.clone().exchange_type("direct");
        assert_eq!(binding(&direct), Some(("orders", "direct", "order")));
        let back = direct.exchange_type("topic");
        assert_eq!(binding(&back), Some(("orders", "topic", "#")));
        let fanout = ConsumerSpec::new("order")
            .exchange("orders")
            .exchange_type("direct")
            .exchange_type("fanout");
        assert_eq!(binding(&fanout), Some(("orders", "fanout", "order")));
        let explicit = topic.routing_key("order.#").exchange_type("direct");
        assert_eq!(binding(&explicit), Some(("orders", "direct", "order.#")));
    }

    #[test]
    fn validate_refuses_more_handlers_than_prefetch() {
        let spec = ConsumerSpec::new("order").concurrency(11);
        let err = spec.validate().map_err(|e| e.to_string()).err();
        assert!(
            err.as_deref()
                .is_some_and(|e| e.contains("`concurrency` exceeds `prefetch`")),
            "{err:?}"
        );
        assert!(
            ConsumerSpec::new("order")
                .prefetch(20)
                .concurrency(11)
                .validate()
                .is_ok()
        );
    }

    #[test]
    fn binding_setters_need_an_exchange() {
        let spec = ConsumerSpec::new("order")
            .exchange_type("direct")
            .routing_key("order.created");
        assert_eq!(spec.binding, None);
        assert_eq!(spec, ConsumerSpec::new("order"));
    }
}
