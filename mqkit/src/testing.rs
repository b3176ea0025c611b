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

use serde::Serialize;
use tracing::Instrument as _;

use crate::core::consumer::Consumer;
use crate::core::headers::{self, FieldValue, Properties};
use crate::core::idempotency::{BoxFuture, IdempotencyStore, MemoryStore};
use crate::core::outcome::Outcome;
use crate::core::pipeline::{Delivery, Deps, Pipeline};
use crate::core::publish::{Outgoing, Publish, PublishError, Publisher};
use crate::core::spec::ConsumerSpec;
use crate::core::trace::record_outcome;

/// A message published through the harness's recording publisher.
#[derive(Debug, Clone, PartialEq)]
pub struct Published {
    /// Target exchange (`""` for the default exchange).
    pub exchange: String,
    /// Routing key.
    pub routing_key: String,
    /// Body.
    pub body: Vec<u8>,
    /// Properties as the handler set them.
    pub properties: Properties,
}

impl Published {
    /// The body decoded as JSON.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }
}

/// Keeps what handlers publish instead of sending it.
#[derive(Debug, Default)]
struct Recorder {
    log: Mutex<Vec<Published>>,
}

impl Publish for Recorder {
    fn publish<'a>(&'a self, m: Outgoing<'a>) -> BoxFuture<'a, Result<(), PublishError>> {
        self.log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Published {
                exchange: m.exchange.to_owned(),
                routing_key: m.routing_key.to_owned(),
                body: m.body.to_vec(),
                properties: m.properties.clone(),
            });
        Box::pin(async { Ok(()) })
    }
}

/// A delivery built in memory.
#[derive(Debug, Clone, Default)]
pub struct TestDelivery {
    body: Vec<u8>,
    properties: Properties,
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
        d.properties.content_type = Some("application/json".to_owned());
        Ok(d)
    }

    /// Sets the `x-mqkit-attempt` header.
    pub fn attempt(self, attempt: u32) -> Self {
        self.header(headers::ATTEMPT, FieldValue::I64(attempt.into()))
    }

    /// Sets a header.
    pub fn header(mut self, name: &str, value: impl Into<FieldValue>) -> Self {
        self.properties.headers_mut().insert(name, value);
        self
    }

    /// Sets the `message_id` property.
    pub fn message_id(mut self, id: &str) -> Self {
        self.properties.message_id = Some(id.to_owned());
        self
    }

    /// Sets the `correlation_id` property.
    pub fn correlation_id(mut self, id: &str) -> Self {
        self.properties.correlation_id = Some(id.to_owned());
        self
    }

    /// The body.
    pub fn body(&self) -> &[u8] {
        &self.body
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
    fn properties(&self) -> &Properties {
        &self.properties
    }
    fn redelivered(&self) -> bool {
        self.redelivered
    }
}

/// Runs one consumer in memory.
pub struct TestHarness<C> {
    pipeline: Pipeline<C>,
    published: Arc<Recorder>,
    #[cfg(feature = "tx")]
    outbox: Option<crate::addons::tx::TestOutbox>,
    /// What transactional handlers staged and committed.
    #[cfg(feature = "tx")]
    staged: Mutex<Vec<Published>>,
}

impl<C: Consumer> TestHarness<C> {
    /// A harness with the consumer's own spec and a fresh [`MemoryStore`].
    pub fn new(consumer: C) -> Self {
        let spec = consumer.spec();
        Self::with_store(consumer, spec, Arc::new(MemoryStore::new()))
    }

    /// A harness with an adjusted spec (e.g. a shorter timeout) and the
    /// given store (e.g. a [`RedisStore`](crate::RedisStore)).
    pub fn with_store(consumer: C, spec: ConsumerSpec, store: Arc<dyn IdempotencyStore>) -> Self {
        let recorder = Arc::new(Recorder::default());
        let publisher = Publisher::new(recorder.clone());
        TestHarness {
            pipeline: Pipeline::new(
                consumer,
                spec,
                Deps {
                    store,
                    publisher,
                    state: Arc::default(),
                    inbox: None,
                },
            ),
            published: recorder,
            #[cfg(feature = "tx")]
            outbox: None,
            #[cfg(feature = "tx")]
            staged: Mutex::default(),
        }
    }

    /// Runs a transactional handler (one that takes `mqkit::Tx`) against
    /// a real database: mqkit's tables are created in `pool` (a
    /// `sqlx::PgPool` or `sqlx::MySqlPool`), each delivery runs in its own
    /// transaction with its inbox row as in a service, and what a committed
    /// transaction staged is kept for [`staged`](Self::staged) (its outbox
    /// rows are marked sent, so no service's relay publishes them).
    ///
    /// ```no_run
    /// # #[derive(serde::Deserialize)] struct Payment { payment_id: String }
    /// #[mqkit::consumer(queue = "payment", idempotency = "payment_id")]
    /// async fn capture(p: Payment, mut tx: mqkit::Tx) -> Result<(), mqkit::HandlerError> {
    ///     tx.publish_json("payments", "payment.captured", &serde_json::json!({"id": p.payment_id})).await?;
    ///     Ok(())
    /// }
    ///
    /// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
    /// let pool = sqlx::PgPool::connect("postgres://postgres@127.0.0.1:5432/test").await?;
    /// let harness = mqkit::testing::TestHarness::new(capture {}).database(pool).await?;
    /// let p = serde_json::json!({"payment_id": "P-1"});
    /// assert_eq!(harness.deliver_json(&p).await, mqkit::Outcome::Ack);
    /// assert_eq!(harness.deliver_json(&p).await, mqkit::Outcome::Duplicate);
    /// assert_eq!(harness.staged()[0].routing_key, "payment.captured");
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "tx")]
    pub async fn database<DB: crate::addons::tx::TxDatabase>(
        mut self,
        pool: sqlx::Pool<DB>,
    ) -> Result<Self, crate::app::error::Error> {
        let outbox = crate::addons::tx::TestOutbox::new(pool).await?;
        self.pipeline.deps_mut().inbox = Some(outbox.inbox.clone());
        self.outbox = Some(outbox);
        Ok(self)
    }

    /// What transactional handlers staged (`tx.publish_json`, `tx.message`)
    /// in transactions that committed, in order.
    #[cfg(feature = "tx")]
    pub fn staged(&self) -> Vec<Published> {
        self.staged
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Gives handlers a shared value of type `T` (what a `State<T>`
    /// parameter receives), as [`App::state`](crate::App::state) does.
    pub fn state<T: Clone + Send + Sync + 'static>(mut self, value: T) -> Self {
        Arc::make_mut(&mut self.pipeline.deps_mut().state).insert(value);
        self
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

    /// Delivers a prepared delivery, inside the same `tracing` span a
    /// real delivery runs in.
    pub async fn deliver(&self, delivery: &TestDelivery) -> Outcome {
        let span = self.pipeline.span(delivery);
        let outcome = self
            .pipeline
            .process(delivery)
            .instrument(span.clone())
            .await;
        record_outcome(&span, &outcome);
        #[cfg(feature = "tx")]
        if let Some(outbox) = &self.outbox {
            match outbox.take().await {
                Ok(staged) => self
                    .staged
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend(staged.into_iter().map(|m| Published {
                        exchange: m.exchange,
                        routing_key: m.routing_key,
                        body: m.body,
                        properties: m.properties,
                    })),
                Err(e) => tracing::error!(error = %e, "test harness"),
            }
        }
        outcome
    }

    /// The spec in force.
    pub fn spec(&self) -> &ConsumerSpec {
        self.pipeline.spec()
    }

    /// What handlers published so far, through [`Context::publisher`](crate::Context::publisher).
    pub fn published(&self) -> Vec<Published> {
        self.published
            .log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Runs `consumer` once on `payload` (as JSON) with a fresh in-memory store.
pub async fn run<C: Consumer, T: Serialize + ?Sized>(consumer: C, payload: &T) -> Outcome {
    TestHarness::new(consumer).deliver_json(payload).await
}
