//! [`Context`]: what a handler can know about the delivery it is handling.

use std::sync::Arc;

use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable};

use crate::publish::Publisher;

/// The delivery around a message, for handlers that take a second argument:
/// `async fn f(msg: T, ctx: mqkit::Context)`.
#[derive(Debug, Clone)]
pub struct Context {
    queue: Arc<str>,
    properties: BasicProperties,
    redelivered: bool,
    attempt: u32,
    publisher: Publisher,
}

impl Context {
    /// A context for one delivery. The pipeline builds these; tests may too.
    pub fn new(
        queue: Arc<str>,
        properties: BasicProperties,
        redelivered: bool,
        attempt: u32,
        publisher: Publisher,
    ) -> Self {
        Context {
            queue,
            properties,
            redelivered,
            attempt,
            publisher,
        }
    }

    /// The work queue the message came from.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// The AMQP `message_id` property, if the publisher set one.
    pub fn message_id(&self) -> Option<&str> {
        self.properties.message_id().as_ref().map(|s| s.as_str())
    }

    /// The AMQP `correlation_id` property, if the publisher set one.
    pub fn correlation_id(&self) -> Option<&str> {
        self.properties
            .correlation_id()
            .as_ref()
            .map(|s| s.as_str())
    }

    /// All message headers (empty when there are none).
    pub fn headers(&self) -> Option<&FieldTable> {
        self.properties.headers().as_ref()
    }

    /// One message header.
    pub fn header(&self, name: &str) -> Option<&AMQPValue> {
        self.headers().and_then(|h| h.inner().get(name))
    }

    /// All AMQP properties of the delivery.
    pub fn properties(&self) -> &BasicProperties {
        &self.properties
    }

    /// Whether the broker flagged this delivery as redelivered (an earlier
    /// delivery of it was not acked, e.g. a consumer died).
    pub fn redelivered(&self) -> bool {
        self.redelivered
    }

    /// Which attempt this is: 1 on the first delivery, 2 on the first retry…
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Publishes follow-up events (persistent, confirmed).
    pub fn publisher(&self) -> &Publisher {
        &self.publisher
    }
}
