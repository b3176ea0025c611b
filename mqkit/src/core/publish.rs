//! Publishing as the core sees it: the small [`Publish`] trait that the AMQP
//! layer implements on its confirm-mode channel (and the test harness with a
//! recording stand-in), the cheap [`Publisher`] handle handlers get, and
//! [`PublishError`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::handler::BoxError;
use super::headers::{FieldValue, Properties};
use super::idempotency::BoxFuture;
use super::trace::Lineage;

/// One message to publish.
#[derive(Debug, Clone, Copy)]
pub struct Outgoing<'a> {
    /// Target exchange (`""` for the default exchange).
    pub exchange: &'a str,
    /// Routing key.
    pub routing_key: &'a str,
    /// Body.
    pub body: &'a [u8],
    /// Properties; the publisher makes the message persistent.
    pub properties: &'a Properties,
    /// Whether an unroutable message is an error ([`PublishError::Unroutable`]).
    pub mandatory: bool,
}

/// Somewhere messages can be published, persistent and confirmed. The AMQP
/// layer implements it; so does `mqkit::testing`'s recording publisher.
pub trait Publish: Send + Sync + 'static {
    /// Publishes one message and waits for the broker's confirm.
    fn publish<'a>(&'a self, message: Outgoing<'a>) -> BoxFuture<'a, Result<(), PublishError>>;

    /// Releases what the target holds (a standalone publisher's channel and
    /// connection). The default does nothing.
    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

/// Publishes messages: persistent, with publisher confirms, `mandatory` so
/// that an unroutable message is an error rather than silently dropped.
///
/// Cheap to clone. A handler gets one from
/// [`Context::publisher`](crate::Context::publisher); what it publishes with
/// [`publish_json`](Self::publish_json) or [`message`](Self::message)
/// carries the delivery's correlation id (its `correlation_id`, else its
/// `message_id`) and W3C trace context (`traceparent`, `tracestate`) unless
/// the message sets its own.
#[derive(Clone)]
pub struct Publisher {
    inner: Option<Arc<dyn Publish>>,
    /// The delivery a handler's publisher publishes for (what follow-ups
    /// inherit is read from it when they are sent).
    delivery: Option<Arc<Properties>>,
}

impl fmt::Debug for Publisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Publisher")
            .field("connected", &self.inner.is_some())
            .field("for_delivery", &self.delivery.is_some())
            .finish()
    }
}

/// Why a publish failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The message could not be serialized.
    #[error("cannot serialize message for {exchange:?}/{routing_key:?} as JSON: {source}")]
    Serialize {
        /// Target exchange.
        exchange: String,
        /// Routing key.
        routing_key: String,
        /// The serde error.
        source: serde_json::Error,
    },
    /// This publisher is not connected to a broker.
    #[error("publisher is not connected to a broker")]
    NotConnected,
    /// The broker returned the message: no queue is bound for it.
    #[error(
        "message to exchange {exchange:?} with routing key {routing_key:?} is unroutable ({reply_code} {reply_text}); check that the exchange has a binding for this key"
    )]
    Unroutable {
        /// Target exchange.
        exchange: String,
        /// Routing key.
        routing_key: String,
        /// AMQP reply code (312 NO_ROUTE).
        reply_code: u16,
        /// The broker's text.
        reply_text: String,
    },
    /// The broker refused the message (`basic.nack`).
    #[error("broker nacked the message to exchange {exchange:?} with routing key {routing_key:?}")]
    Nacked {
        /// Target exchange.
        exchange: String,
        /// Routing key.
        routing_key: String,
    },
    /// The broker did not answer the publish in time.
    #[error("no publisher confirm for exchange {exchange:?} within {timeout:?}")]
    ConfirmTimeout {
        /// Target exchange.
        exchange: String,
        /// How long mqkit waited.
        timeout: Duration,
    },
    /// A transactional handler's message could not be staged in its
    /// outbox (the database refused the row, or the message is not valid
    /// AMQP): the transaction rolls back when the handler returns it.
    #[error(
        "cannot stage message to exchange {exchange:?} with routing key {routing_key:?} in the outbox: {source}"
    )]
    Outbox {
        /// Target exchange.
        exchange: String,
        /// Routing key.
        routing_key: String,
        /// What failed.
        source: BoxError,
    },
    /// The AMQP operation failed (channel closed, exchange missing, connection lost…).
    #[error("publish to exchange {exchange:?} with routing key {routing_key:?} failed: {source}")]
    Amqp {
        /// Target exchange.
        exchange: String,
        /// Routing key.
        routing_key: String,
        /// The AMQP client's error.
        source: BoxError,
    },
}

impl Publisher {
    /// A publisher over `target`.
    pub fn new(target: Arc<dyn Publish>) -> Self {
        Publisher {
            inner: Some(target),
            delivery: None,
        }
    }

    /// A publisher with no broker; every publish fails with
    /// [`PublishError::NotConnected`].
    pub fn disconnected() -> Self {
        Publisher {
            inner: None,
            delivery: None,
        }
    }

    /// The same target, for a handler of the delivery with `properties`.
    pub(crate) fn for_delivery(&self, properties: Arc<Properties>) -> Self {
        Publisher {
            inner: self.inner.clone(),
            delivery: Some(properties),
        }
    }

    /// Publishes `message` as JSON (content type `application/json`, a new
    /// message id) to `exchange` with `routing_key`, and waits for the
    /// broker's confirm. [`Publisher::message`] sets more.
    pub async fn publish_json<T: Serialize + ?Sized>(
        &self,
        exchange: &str,
        routing_key: &str,
        message: &T,
    ) -> Result<(), PublishError> {
        self.message(exchange, routing_key)
            .json(message)
            .send()
            .await
    }

    /// A message to `exchange` with `routing_key`, to fill in and
    /// [`send`](MessageBuilder::send):
    ///
    /// ```no_run
    /// # async fn f(publisher: &mqkit::Publisher) -> Result<(), mqkit::PublishError> {
    /// # #[derive(serde::Serialize)] struct Charged { order_id: String }
    /// publisher
    ///     .message("billing", "order.charged")
    ///     .json(&Charged { order_id: "A-1".into() })
    ///     .message_id("charge-A-1")
    ///     .header("x-tenant", "acme")
    ///     .expiration(std::time::Duration::from_secs(60))
    ///     .priority(5)
    ///     .send()
    ///     .await
    /// # }
    /// ```
    pub fn message(&self, exchange: &str, routing_key: &str) -> MessageBuilder<&Publisher> {
        MessageBuilder {
            target: self,
            draft: Draft::new(exchange, routing_key),
        }
    }

    /// Closes what this publisher holds: for one from
    /// [`Publisher::connect`], its channel and connection.
    pub async fn close(&self) {
        if let Some(target) = &self.inner {
            target.close().await;
        }
    }

    /// Publishes `body` with `properties` (made persistent) and waits for the
    /// broker's confirm. With `mandatory`, an unroutable message is
    /// [`PublishError::Unroutable`].
    pub async fn publish_raw(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: &Properties,
        mandatory: bool,
    ) -> Result<(), PublishError> {
        let Some(target) = &self.inner else {
            return Err(PublishError::NotConnected);
        };
        target
            .publish(Outgoing {
                exchange,
                routing_key,
                body,
                properties,
                mandatory,
            })
            .await
    }
}

/// A message being built by [`Publisher::message`] (or staged in a
/// transactional handler's outbox by `Tx::message`). Unless set: a new
/// message id (UUID v4), the delivery's correlation id and trace context
/// (from a handler's publisher), persistent, `mandatory`.
#[must_use = "a message is published only by .send().await"]
pub struct MessageBuilder<T> {
    pub(crate) target: T,
    pub(crate) draft: Draft,
}

/// What a [`MessageBuilder`] holds until it is sent.
pub(crate) struct Draft {
    exchange: String,
    routing_key: String,
    body: Result<Vec<u8>, serde_json::Error>,
    properties: Properties,
    mandatory: bool,
}

/// A message ready to publish: serialized, with its message id and what it
/// inherits from the delivery.
#[derive(Debug, Clone)]
pub(crate) struct Ready {
    pub(crate) exchange: String,
    pub(crate) routing_key: String,
    pub(crate) body: Vec<u8>,
    pub(crate) properties: Properties,
    pub(crate) mandatory: bool,
}

impl Draft {
    pub(crate) fn new(exchange: &str, routing_key: &str) -> Self {
        Draft {
            exchange: exchange.to_owned(),
            routing_key: routing_key.to_owned(),
            body: Ok(Vec::new()),
            properties: Properties::default(),
            mandatory: true,
        }
    }

    /// The message as it is sent: a serialization error is reported now, a
    /// message id is set unless given, and a handler's message inherits the
    /// delivery's correlation id and trace context.
    pub(crate) fn finish(self, delivery: Option<&Properties>) -> Result<Ready, PublishError> {
        let Draft {
            exchange,
            routing_key,
            body,
            mut properties,
            mandatory,
        } = self;
        let body = body.map_err(|source| PublishError::Serialize {
            exchange: exchange.clone(),
            routing_key: routing_key.clone(),
            source,
        })?;
        properties
            .message_id
            .get_or_insert_with(|| uuid::Uuid::new_v4().to_string());
        if let Some(delivery) = delivery {
            Lineage::of(delivery).stamp(&mut properties);
        }
        Ok(Ready {
            exchange,
            routing_key,
            body,
            properties,
            mandatory,
        })
    }
}

impl<T> fmt::Debug for MessageBuilder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageBuilder")
            .field("exchange", &self.draft.exchange)
            .field("routing_key", &self.draft.routing_key)
            .field("properties", &self.draft.properties)
            .finish_non_exhaustive()
    }
}

impl<T> MessageBuilder<T> {
    /// The body: `value` as JSON, content type `application/json` (unless
    /// set). A value that does not serialize fails [`send`](Self::send).
    pub fn json<V: Serialize + ?Sized>(mut self, value: &V) -> Self {
        self.draft.body = serde_json::to_vec(value);
        self.draft
            .properties
            .content_type
            .get_or_insert_with(|| "application/json".to_owned());
        self
    }

    /// The body as bytes (set the content type with
    /// [`content_type`](Self::content_type)).
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.draft.body = Ok(body.into());
        self
    }

    /// The `message_id` property (default: a new UUID v4).
    pub fn message_id(mut self, id: impl Into<String>) -> Self {
        self.draft.properties.message_id = Some(id.into());
        self
    }

    /// The `correlation_id` property (default: the delivery's).
    pub fn correlation_id(mut self, id: impl Into<String>) -> Self {
        self.draft.properties.correlation_id = Some(id.into());
        self
    }

    /// One header.
    pub fn header(mut self, name: &str, value: impl Into<FieldValue>) -> Self {
        self.draft.properties.headers_mut().insert(name, value);
        self
    }

    /// The per-message TTL (`expiration`, whole milliseconds): the broker
    /// drops or dead-letters the message if it waits longer in a queue.
    pub fn expiration(mut self, ttl: Duration) -> Self {
        self.draft.properties.expiration = Some(ttl.as_millis().to_string());
        self
    }

    /// The priority (0 to 9 for priority queues; higher values are capped
    /// by the broker).
    pub fn priority(mut self, priority: u8) -> Self {
        self.draft.properties.priority = Some(priority);
        self
    }

    /// The content type.
    pub fn content_type(mut self, content_type: impl Into<String>) -> Self {
        self.draft.properties.content_type = Some(content_type.into());
        self
    }

    /// Whether an unroutable message is an error (default `true`).
    pub fn mandatory(mut self, mandatory: bool) -> Self {
        self.draft.mandatory = mandatory;
        self
    }
}

impl MessageBuilder<&Publisher> {
    /// Publishes the message and waits for the broker's confirm.
    pub async fn send(self) -> Result<(), PublishError> {
        let publisher = self.target;
        let m = self.draft.finish(publisher.delivery.as_deref())?;
        publisher
            .publish_raw(
                &m.exchange,
                &m.routing_key,
                &m.body,
                &m.properties,
                m.mandatory,
            )
            .await
    }
}
