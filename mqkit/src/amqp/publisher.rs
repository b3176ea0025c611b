//! The AMQP side of publishing: [`BrokerPublisher`], the process's one
//! confirm-mode channel (reopened when a publish closes it, swapped when the
//! connection is replaced), implementing the core's [`Publish`] trait for
//! handlers' follow-up events and the framework's own retries and dead
//! letters.

use std::sync::Arc;
use std::time::Duration;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::ShortString;
use lapin::{Channel, Confirmation, Connection};
use tokio::sync::Mutex as AsyncMutex;
use tracing::{info, warn};

use super::convert::properties_to;
use crate::core::idempotency::BoxFuture;
use crate::core::publish::{Outgoing, Publish, PublishError};

/// The confirm-mode channel of one process, reopened when it closes (a
/// publish to a missing exchange closes a channel) and swapped when the
/// connection is replaced.
#[derive(Debug, Default)]
pub(crate) struct BrokerPublisher {
    state: AsyncMutex<PublisherState>,
    /// Whether [`Publish::close`] also closes the connection (a standalone
    /// publisher owns it; the service's supervisor owns its own).
    owns_connection: bool,
}

#[derive(Debug, Default)]
struct PublisherState {
    connection: Option<Arc<Connection>>,
    channel: Option<Channel>,
}

/// How long a publish waits for the broker's confirm.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(30);

impl BrokerPublisher {
    /// A publisher whose connection is attached later by the supervisor.
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(BrokerPublisher::default())
    }

    /// A publisher that owns `connection` and closes it on [`Publish::close`].
    pub(crate) async fn owning(connection: Arc<Connection>) -> Arc<Self> {
        let publisher = BrokerPublisher {
            owns_connection: true,
            ..BrokerPublisher::default()
        };
        publisher.attach(connection).await;
        Arc::new(publisher)
    }

    /// Points the publisher at a (new) connection; the confirm channel is
    /// opened on first use.
    pub(crate) async fn attach(&self, connection: Arc<Connection>) {
        let mut state = self.state.lock().await;
        state.connection = Some(connection);
        state.channel = None;
    }

    /// Forgets the connection (it was lost or closed), closing the channel.
    pub(crate) async fn detach(&self) {
        let mut state = self.state.lock().await;
        if let Some(channel) = state.channel.take()
            && channel.status().connected()
        {
            let _ = channel.close(200, "OK".into()).await;
        }
        state.connection = None;
    }

    /// Publishes one message (made persistent here) and waits for the
    /// broker's confirm. With `mandatory`, an unroutable message is
    /// [`PublishError::Unroutable`].
    async fn send(&self, message: Outgoing<'_>) -> Result<(), PublishError> {
        let Outgoing {
            exchange,
            routing_key,
            body,
            properties,
            mandatory,
        } = message;
        let amqp = |source: lapin::Error| PublishError::Amqp {
            exchange: exchange.to_owned(),
            routing_key: routing_key.to_owned(),
            source: Box::new(source),
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
        let channel = self.channel().await.map_err(amqp)?;
        self.wait_while_blocked().await;
        let confirm = channel
            .basic_publish(
                exchange_s,
                routing_key_s,
                BasicPublishOptions {
                    mandatory,
                    immediate: false,
                },
                body,
                properties_to(properties).with_delivery_mode(2),
            )
            .await
            .map_err(amqp)?;
        // A blocked connection (resource alarm) holds the message until the
        // alarm clears: keep waiting then, rather than failing the publish.
        tokio::pin!(confirm);
        let confirmation = loop {
            match tokio::time::timeout(CONFIRM_TIMEOUT, &mut confirm).await {
                Ok(c) => break c.map_err(amqp)?,
                Err(_) if self.blocked().await => {
                    warn!(
                        exchange,
                        routing_key,
                        "still waiting for a confirm: the broker blocks this connection"
                    );
                }
                Err(_) => {
                    self.replace(&channel).await;
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
            Confirmation::Nack(None) | Confirmation::NotRequested => {
                self.replace(&channel).await;
                Err(PublishError::Nacked {
                    exchange: exchange.to_owned(),
                    routing_key: routing_key.to_owned(),
                })
            }
        }
    }

    /// Stops using `channel` for new publishes: the next one opens a fresh
    /// channel. On RabbitMQ 3.10, a channel that published to a quorum
    /// queue while its leader was being elected keeps getting nacks for it
    /// for 40 s and more, while a new channel is accepted about a second
    /// after the old leader died (DESIGN.md, "Clusters and crashes").
    /// Publishes still waiting on the old channel get their confirms or
    /// fail when it closes, and take the usual path.
    async fn replace(&self, channel: &Channel) {
        let old = {
            let mut state = self.state.lock().await;
            match &state.channel {
                Some(current) if current.id() == channel.id() => state.channel.take(),
                _ => None,
            }
        };
        if let Some(old) = old {
            warn!(
                channel = old.id(),
                "a publish on this channel was nacked or not confirmed in time; publishing on a new channel"
            );
            tokio::spawn(async move {
                // Give the other publishes waiting on it their confirms.
                tokio::time::sleep(CONFIRM_TIMEOUT).await;
                if old.status().connected() {
                    let _ = old.close(200, "OK".into()).await;
                }
            });
        }
    }

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

impl Publish for BrokerPublisher {
    fn publish<'a>(&'a self, message: Outgoing<'a>) -> BoxFuture<'a, Result<(), PublishError>> {
        Box::pin(async move {
            let started = std::time::Instant::now();
            let result = self.send(message).await;
            metrics::histogram!("mqkit_publish_duration_seconds")
                .record(started.elapsed().as_secs_f64());
            result
        })
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let connection = self.state.lock().await.connection.clone();
            self.detach().await;
            if self.owns_connection
                && let Some(c) = connection
                && c.status().connected()
            {
                let _ = c.close(200, "OK".into()).await;
            }
        })
    }
}
