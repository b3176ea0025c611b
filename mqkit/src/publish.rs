//! [`Publisher`]: publishing follow-up events from handlers and services.

use std::sync::{Arc, Mutex};

use serde::Serialize;

/// Publishes JSON messages: persistent, with publisher confirms, `mandatory`
/// so that an unroutable message is an error rather than silently dropped.
///
/// Cheap to clone. A handler gets one from [`Context::publisher`](crate::Context::publisher).
#[derive(Debug, Clone)]
pub struct Publisher {
    inner: Inner,
}

#[derive(Debug, Clone)]
enum Inner {
    /// No broker: every publish fails.
    Disconnected,
    /// Keeps what is published, for tests.
    Recording(Arc<Mutex<Vec<Published>>>),
}

/// A message published through a recording [`Publisher`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// Target exchange (`""` for the default exchange).
    pub exchange: String,
    /// Routing key.
    pub routing_key: String,
    /// JSON body.
    pub body: Vec<u8>,
}

impl Published {
    /// The body decoded as JSON.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }
}

/// Why a publish failed.
#[derive(Debug, thiserror::Error)]
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
}

impl Publisher {
    /// A publisher with no broker; every publish fails with
    /// [`PublishError::NotConnected`].
    pub fn disconnected() -> Self {
        Publisher {
            inner: Inner::Disconnected,
        }
    }

    /// A publisher that records messages in memory instead of sending them,
    /// with the list it records into.
    pub fn recording() -> (Self, Arc<Mutex<Vec<Published>>>) {
        let log = Arc::new(Mutex::new(Vec::new()));
        (
            Publisher {
                inner: Inner::Recording(log.clone()),
            },
            log,
        )
    }

    /// Publishes `message` as JSON to `exchange` with `routing_key` and waits
    /// for the broker's confirm.
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
        match &self.inner {
            Inner::Disconnected => Err(PublishError::NotConnected),
            Inner::Recording(log) => {
                log.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(Published {
                        exchange: exchange.to_owned(),
                        routing_key: routing_key.to_owned(),
                        body,
                    });
                Ok(())
            }
        }
    }
}
