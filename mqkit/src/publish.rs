//! [`Publisher`]: publishing follow-up events from handlers and services,
//! and the framework's own confirmed publishes (retries, dead letters) on
//! the process's confirm-mode channel.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::ShortString;
use lapin::{BasicProperties, Channel, Confirmation, Connection};
use serde::Serialize;
use tokio::sync::Mutex as AsyncMutex;
use tracing::{info, warn};

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
    /// Publishes to RabbitMQ.
    Broker(Arc<BrokerPublisher>),
}

/// The confirm-mode channel of one process, reopened when it closes (a
/// publish to a missing exchange closes a channel) and swapped when the
/// connection is replaced.
#[derive(Debug, Default)]
pub(crate) struct BrokerPublisher {
    state: AsyncMutex<PublisherState>,
}

#[derive(Debug, Default)]
struct PublisherState {
    connection: Option<Arc<Connection>>,
    channel: Option<Channel>,
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
        /// The lapin error.
        source: lapin::Error,
    },
}

/// How long a publish waits for the broker's confirm.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(30);

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
            Inner::Broker(_) => {
                let properties = BasicProperties::default()
                    .with_content_type("application/json".into())
                    .with_message_id(uuid::Uuid::new_v4().to_string().into());
                self.publish_raw(exchange, routing_key, &body, properties, true)
                    .await
            }
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

    /// A publisher with a connection of its own to `urls` (comma-separated
    /// cluster nodes, tried in turn), for services that only publish and for
    /// tools. Call [`Publisher::close`] when done.
    pub async fn connect(urls: &str) -> Result<Self, crate::Error> {
        let config = crate::Config {
            amqp_urls: crate::config::split_urls(urls),
            ..crate::Config::default()
        };
        let connection =
            crate::broker::connect_any(&config)
                .await
                .map_err(|cause| crate::Error::Connect {
                    urls: config.masked_urls(),
                    waited_secs: 0,
                    cause,
                })?;
        let publisher = Publisher::broker();
        publisher.attach(connection).await;
        Ok(publisher)
    }

    /// Closes the publisher's channel and, for a publisher from
    /// [`Publisher::connect`], its connection.
    pub async fn close(&self) {
        if let Inner::Broker(b) = &self.inner {
            let connection = b.state.lock().await.connection.clone();
            self.detach().await;
            if let Some(c) = connection
                && Arc::strong_count(&c) == 1
                && c.status().connected()
            {
                let _ = c.close(200, "OK".into()).await;
            }
        }
    }

    /// A publisher on the broker; channels come with [`Publisher::attach`].
    pub(crate) fn broker() -> Self {
        Publisher {
            inner: Inner::Broker(Arc::new(BrokerPublisher::default())),
        }
    }

    /// Points a broker publisher at a (new) connection; the confirm channel
    /// is opened on first use.
    pub(crate) async fn attach(&self, connection: Arc<Connection>) {
        if let Inner::Broker(b) = &self.inner {
            let mut state = b.state.lock().await;
            state.connection = Some(connection);
            state.channel = None;
        }
    }

    /// Forgets the connection (it was lost or closed).
    pub(crate) async fn detach(&self) {
        if let Inner::Broker(b) = &self.inner {
            let mut state = b.state.lock().await;
            if let Some(channel) = state.channel.take()
                && channel.status().connected()
            {
                let _ = channel.close(200, "OK".into()).await;
            }
            state.connection = None;
        }
    }

    /// Publishes `body` with `properties` (made persistent here) and waits
    /// for the broker's confirm. With `mandatory`, an unroutable message is
    /// [`PublishError::Unroutable`].
    pub async fn publish_raw(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
        mandatory: bool,
    ) -> Result<(), PublishError> {
        let Inner::Broker(b) = &self.inner else {
            return Err(PublishError::NotConnected);
        };
        let amqp = |source| PublishError::Amqp {
            exchange: exchange.to_owned(),
            routing_key: routing_key.to_owned(),
            source,
        };
        let (exchange_s, routing_key_s) = match (
            ShortString::try_new(exchange),
            ShortString::try_new(routing_key),
        ) {
            (Ok(e), Ok(r)) => (e, r),
            _ => {
                return Err(PublishError::Unroutable {
                    exchange: exchange.to_owned(),
                    routing_key: routing_key.to_owned(),
                    reply_code: 0,
                    reply_text: "exchange or routing key longer than 255 bytes".to_owned(),
                });
            }
        };
        let channel = b.channel().await.map_err(amqp)?;
        b.wait_while_blocked().await;
        let confirm = channel
            .basic_publish(
                exchange_s,
                routing_key_s,
                BasicPublishOptions {
                    mandatory,
                    immediate: false,
                },
                body,
                properties.with_delivery_mode(2),
            )
            .await
            .map_err(amqp)?;
        // A blocked connection (resource alarm) holds the message until the
        // alarm clears: keep waiting then, rather than failing the publish.
        tokio::pin!(confirm);
        let confirmation = loop {
            match tokio::time::timeout(CONFIRM_TIMEOUT, &mut confirm).await {
                Ok(c) => break c.map_err(amqp)?,
                Err(_) if b.blocked().await => {
                    warn!(
                        exchange,
                        routing_key,
                        "still waiting for a confirm: the broker blocks this connection"
                    );
                }
                Err(_) => {
                    return Err(PublishError::ConfirmTimeout {
                        exchange: exchange.to_owned(),
                        timeout: CONFIRM_TIMEOUT,
                    });
                }
            }
        };
        match confirmation {
            Confirmation::Ack(None) => Ok(()),
            Confirmation::Ack(Some(returned)) | Confirmation::Nack(Some(returned)) => {
                Err(PublishError::Unroutable {
                    exchange: exchange.to_owned(),
                    routing_key: routing_key.to_owned(),
                    reply_code: returned.reply_code,
                    reply_text: returned.reply_text.to_string(),
                })
            }
            Confirmation::Nack(None) | Confirmation::NotRequested => Err(PublishError::Nacked {
                exchange: exchange.to_owned(),
                routing_key: routing_key.to_owned(),
            }),
        }
    }
}

impl BrokerPublisher {
    /// The open confirm channel, opening one if needed.
    async fn channel(&self) -> Result<Channel, lapin::Error> {
        let mut state = self.state.lock().await;
        if let Some(channel) = &state.channel
            && channel.status().connected()
        {
            return Ok(channel.clone());
        }
        let Some(connection) = &state.connection else {
            return Err(lapin::Error::from(
                lapin::ErrorKind::InvalidConnectionState(lapin::ConnectionState::Closed),
            ));
        };
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        info!(
            channel = channel.id(),
            "opened confirm-mode publisher channel"
        );
        state.channel = Some(channel.clone());
        Ok(channel)
    }
}

impl BrokerPublisher {
    async fn blocked(&self) -> bool {
        let state = self.state.lock().await;
        state
            .connection
            .as_ref()
            .is_some_and(|c| c.status().blocked())
    }

    /// While the broker blocks the connection (memory or disk alarm),
    /// publishes wait here instead of piling up in the socket or failing.
    async fn wait_while_blocked(&self) {
        let mut warned = false;
        while self.blocked().await {
            if !warned {
                warn!(
                    "connection blocked by the broker (resource alarm); publishing waits until it is unblocked"
                );
                warned = true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
