//! Publishing as the core sees it: the small [`Publish`] trait that the AMQP
//! layer implements on its confirm-mode channel (and the test harness with a
//! recording stand-in), the cheap [`Publisher`] handle handlers get, and
//! [`PublishError`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::handler::BoxError;
use super::headers::Properties;
use super::idempotency::BoxFuture;

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

/// Publishes JSON messages: persistent, with publisher confirms, `mandatory`
/// so that an unroutable message is an error rather than silently dropped.
///
/// Cheap to clone. A handler gets one from [`Context::publisher`](crate::Context::publisher).
#[derive(Clone)]
pub struct Publisher {
    inner: Option<Arc<dyn Publish>>,
}

impl fmt::Debug for Publisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Publisher")
            .field("connected", &self.inner.is_some())
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
        }
    }

    /// A publisher with no broker; every publish fails with
    /// [`PublishError::NotConnected`].
    pub fn disconnected() -> Self {
        Publisher { inner: None }
    }

    /// Publishes `message` as JSON (content type `application/json`, a new
    /// message id) to `exchange` with `routing_key`, and waits for the
    /// broker's confirm.
    pub async fn publish_json<T: Serialize + ?Sized>(
        &self,
        exchange: &str,
        routing_key: &str,
        message: &T,
    ) -> Result<(), PublishError> {
        let body = serde_json::to_vec(message).map_err(|source| PublishError::Serialize {
            exchange: exchange.to_owned(),
            routing_key: routing_key.to_owned(),
            source,
        })?;
        let properties = Properties {
            content_type: Some("application/json".to_owned()),
            message_id: Some(uuid::Uuid::new_v4().to_string()),
            ..Properties::default()
        };
        self.publish_raw(exchange, routing_key, &body, &properties, true)
            .await
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
