//! [`Context`]: what a handler can know about the delivery it is handling.

use std::any::Any;
use std::fmt;
use std::sync::{Arc, Mutex};

use super::headers::{FieldValue, Headers, Properties};
use super::publish::Publisher;
use super::state::StateMap;

/// The delivery around a message, for handlers that take it as a parameter:
/// `async fn f(msg: T, ctx: mqkit::Context)`.
#[derive(Debug, Clone)]
pub struct Context {
    queue: Arc<str>,
    properties: Arc<Properties>,
    redelivered: bool,
    attempt: u32,
    publisher: Publisher,
    state: Arc<StateMap>,
    tx: TxSlot,
}

/// Where a transactional delivery's `mqkit::Tx` waits until the handler's
/// parameter takes it.
#[derive(Clone, Default)]
struct TxSlot(Option<Arc<Mutex<Option<ErasedTx>>>>);

/// A transactional delivery's `Tx`, type-erased (core names no database).
type ErasedTx = Box<dyn Any + Send>;

impl fmt::Debug for TxSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() { "Some(Tx)" } else { "None" })
    }
}

impl Context {
    /// A context for one delivery. The pipeline builds these; tests may too.
    pub fn new(
        queue: Arc<str>,
        properties: Properties,
        redelivered: bool,
        attempt: u32,
        publisher: Publisher,
    ) -> Self {
        Context {
            queue,
            properties: Arc::new(properties),
            redelivered,
            attempt,
            publisher,
            state: Arc::default(),
            tx: TxSlot::default(),
        }
    }

    /// A context over properties shared with the delivery's publisher.
    pub(crate) fn from_shared(
        queue: Arc<str>,
        properties: Arc<Properties>,
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
            state: Arc::default(),
            tx: TxSlot::default(),
        }
    }

    /// The same context with the app's shared state.
    pub(crate) fn with_state(mut self, state: Arc<StateMap>) -> Self {
        self.state = state;
        self
    }

    /// The same context carrying a transactional delivery's `Tx`.
    pub(crate) fn with_tx(mut self, tx: Box<dyn Any + Send>) -> Self {
        self.tx = TxSlot(Some(Arc::new(Mutex::new(Some(tx)))));
        self
    }

    #[cfg_attr(not(feature = "tx"), allow(dead_code))]
    /// Takes the delivery's `Tx` (once; `None` for a consumer that is not
    /// transactional or when it was taken).
    pub(crate) fn take_tx(&self) -> Option<Box<dyn Any + Send>> {
        let slot = self.tx.0.as_ref()?;
        slot.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// A clone of the shared state of type `T` given to the app with
    /// [`App::state`](crate::App::state) (what a `State<T>` parameter
    /// receives), if there is one.
    pub fn state<T: Clone + Send + Sync + 'static>(&self) -> Option<T> {
        self.state.get::<T>()
    }

    /// The delivery's properties, shared.
    #[cfg_attr(not(feature = "tx"), allow(dead_code))]
    pub(crate) fn shared_properties(&self) -> Arc<Properties> {
        self.properties.clone()
    }

    /// The work queue the message came from.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// The AMQP `message_id` property, if the publisher set one.
    pub fn message_id(&self) -> Option<&str> {
        self.properties.message_id.as_deref()
    }

    /// The AMQP `correlation_id` property, if the publisher set one.
    pub fn correlation_id(&self) -> Option<&str> {
        self.properties.correlation_id.as_deref()
    }

    /// All message headers (`None` when the message had no header table).
    pub fn headers(&self) -> Option<&Headers> {
        self.properties.headers.as_ref()
    }

    /// One message header.
    pub fn header(&self, name: &str) -> Option<&FieldValue> {
        self.properties.header(name)
    }

    /// All AMQP properties of the delivery.
    pub fn properties(&self) -> &Properties {
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
