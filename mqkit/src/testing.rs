//! Run a consumer on a payload in memory and see its [`Outcome`]: no broker,
//! an in-memory idempotency store, a recording publisher.
//!
//! ```
//! use mqkit::testing::TestHarness;
//! use mqkit::Outcome;
//! # #[derive(serde::Deserialize)]
//! # struct OrderEvent { order_id: String, event_type: String }
//!
//! #[mqkit::consumer(queue = "order", idempotency = "order_id,event_type")]
//! async fn on_order(evt: OrderEvent) -> Result<(), mqkit::HandlerError> {
//!     Ok(())
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let harness = TestHarness::new(on_order {});
//! let evt = serde_json::json!({"order_id": "A-1", "event_type": "created"});
//! assert_eq!(harness.deliver_json(&evt).await, Outcome::Ack);
//! assert_eq!(harness.deliver_json(&evt).await, Outcome::Duplicate);
//! # }
//! ```

use std::sync::{Arc, Mutex};

use lapin::BasicProperties;
use lapin::types::{AMQPValue, ShortString};
use serde::Serialize;

use crate::consumer::{Consumer, ConsumerSpec};
use crate::idempotency::{IdempotencyStore, MemoryStore};
use crate::pipeline::{Delivery, Deps, Outcome, Pipeline};
use crate::publish::{Published, Publisher};
use crate::retry::ATTEMPT_HEADER;

/// A delivery built in memory.
#[derive(Debug, Clone, Default)]
pub struct TestDelivery {
    body: Vec<u8>,
    properties: BasicProperties,
    redelivered: bool,
}

impl TestDelivery {
    /// A delivery with this raw body and no properties.
    pub fn new(body: impl Into<Vec<u8>>) -> Self {
        TestDelivery {
            body: body.into(),
            ..TestDelivery::default()
        }
    }

    /// A delivery whose body is `value` as JSON, with content type
    /// `application/json`.
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<Self, serde_json::Error> {
        let mut d = TestDelivery::new(serde_json::to_vec(value)?);
        d.properties = d.properties.with_content_type("application/json".into());
        Ok(d)
    }

    /// Sets the `x-mqkit-attempt` header.
    pub fn attempt(self, attempt: u32) -> Self {
        self.header(ATTEMPT_HEADER, AMQPValue::LongLongInt(attempt.into()))
    }

    /// Sets a header.
    pub fn header(mut self, name: &str, value: AMQPValue) -> Self {
        let mut headers = self.properties.headers().clone().unwrap_or_default();
        headers.insert(ShortString::from(name), value);
        self.properties = self.properties.with_headers(headers);
        self
    }

    /// Sets the `message_id` property.
    pub fn message_id(mut self, id: &str) -> Self {
        self.properties = self.properties.with_message_id(id.into());
        self
    }

    /// Sets the `correlation_id` property.
    pub fn correlation_id(mut self, id: &str) -> Self {
        self.properties = self.properties.with_correlation_id(id.into());
        self
    }

    /// Sets the broker's redelivered flag.
    pub fn redelivered(mut self, redelivered: bool) -> Self {
        self.redelivered = redelivered;
        self
    }
}

impl Delivery for TestDelivery {
    fn body(&self) -> &[u8] {
        &self.body
    }
    fn properties(&self) -> &BasicProperties {
        &self.properties
    }
    fn redelivered(&self) -> bool {
        self.redelivered
    }
}

/// Runs one consumer in memory.
pub struct TestHarness<C> {
    pipeline: Pipeline<C>,
    published: Arc<Mutex<Vec<Published>>>,
}

impl<C: Consumer> TestHarness<C> {
    /// A harness with the consumer's own spec and a fresh [`MemoryStore`].
    pub fn new(consumer: C) -> Self {
        let spec = consumer.spec();
        Self::with_store(consumer, spec, Arc::new(MemoryStore::new()))
    }

    /// A harness with an adjusted spec (e.g. a shorter timeout) and the
    /// given store (e.g. a [`RedisStore`](crate::idempotency::RedisStore)).
    pub fn with_store(consumer: C, spec: ConsumerSpec, store: Arc<dyn IdempotencyStore>) -> Self {
        let (publisher, published) = Publisher::recording();
        TestHarness {
            pipeline: Pipeline::new(consumer, spec, Deps { store, publisher }),
            published,
        }
    }

    /// Delivers `value` as a JSON body on the first attempt.
    ///
    /// # Panics
    /// If `value` cannot be serialized as JSON (a bug in the test).
    pub async fn deliver_json<T: Serialize + ?Sized>(&self, value: &T) -> Outcome {
        #[allow(clippy::expect_used)]
        let delivery = TestDelivery::json(value).expect("test payload serializes as JSON");
        self.deliver(&delivery).await
    }

    /// Delivers a raw body on the first attempt.
    pub async fn deliver_bytes(&self, body: impl Into<Vec<u8>>) -> Outcome {
        self.deliver(&TestDelivery::new(body)).await
    }

    /// Delivers a prepared delivery.
    pub async fn deliver(&self, delivery: &TestDelivery) -> Outcome {
        self.pipeline.process(delivery).await
    }

    /// The spec in force.
    pub fn spec(&self) -> &ConsumerSpec {
        self.pipeline.spec()
    }

    /// What handlers published so far, through [`Context::publisher`](crate::Context::publisher).
    pub fn published(&self) -> Vec<Published> {
        self.published
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Runs `consumer` once on `payload` (as JSON) with a fresh in-memory store.
pub async fn run<C: Consumer, T: Serialize + ?Sized>(consumer: C, payload: &T) -> Outcome {
    TestHarness::new(consumer).deliver_json(payload).await
}
