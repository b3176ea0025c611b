//! What a consumer is: the [`Consumer`] trait the `#[consumer]` macro
//! implements, and [`Registration`], the form in which the registry keeps
//! one (its name, spec and a constructor of its pipeline).

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use serde::de::DeserializeOwned;

use super::context::Context;
use super::handler::HandlerError;
use super::idempotency::KeyBuilder;
use super::inbox::DatabaseKind;
use super::pipeline::{Deps, ErasedPipeline, Pipeline};
use super::spec::ConsumerSpec;
use super::state::StateType;

/// One message handler: what `#[mqkit::consumer]` implements for an async fn.
///
/// Implement it by hand to use mqkit without the macro.
pub trait Consumer: Send + Sync + 'static {
    /// The decoded message type.
    type Message: DeserializeOwned + Send + 'static;

    /// The consumer's arguments.
    fn spec(&self) -> ConsumerSpec;

    /// The handler's name, for startup errors and logs. The macro writes
    /// the function's name.
    fn name(&self) -> &'static str {
        std::any::type_name::<Self>()
    }

    /// The shared state types the handler takes (one per `State<T>`
    /// parameter); startup fails, before connecting, when the app was not
    /// given one of them.
    fn state_types(&self) -> Vec<StateType> {
        Vec::new()
    }

    /// The database of the handler's `mqkit::Tx` parameter, if it takes
    /// one: such a consumer is transactional (its inbox row, effects and
    /// outbox rows commit together; no idempotency store is used), and
    /// startup fails when no database of that kind is configured.
    fn transaction(&self) -> Option<DatabaseKind> {
        None
    }

    /// Decodes a delivery body. The macro emits a call of
    /// [`decode_json`](super::decode::decode_json).
    fn decode(&self, body: &[u8]) -> Result<Self::Message, DecodeError>;

    /// Writes the idempotency key fields of `msg`, in the order of
    /// [`ConsumerSpec::idempotency`]. Not called when that list is empty.
    fn idempotency_key(&self, msg: &Self::Message, key: &mut KeyBuilder) {
        let _ = (msg, key);
    }

    /// Runs the user's handler.
    fn handle(
        &self,
        msg: Self::Message,
        ctx: Context,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send + 'static;
}

/// A body that does not decode into the consumer's message type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(pub String);

/// A consumer as the registry stores it: its name, its spec and a
/// constructor of its type-erased pipeline. The macro builds one with
/// [`Registration::of`].
pub struct Registration {
    /// Name of the handler function (for logs).
    name: &'static str,
    /// The consumer's spec as the attribute wrote it.
    spec: fn() -> ConsumerSpec,
    /// The state types its handler takes.
    state_types: fn() -> Vec<StateType>,
    /// The database of its `Tx` parameter.
    transaction: fn() -> Option<DatabaseKind>,
    /// Builds the consumer's pipeline from a (possibly adjusted) spec.
    pub(crate) build: fn(ConsumerSpec, &Deps) -> Arc<dyn ErasedPipeline>,
}

impl Registration {
    /// Name of the handler function.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The consumer's spec as the attribute wrote it.
    pub fn spec(&self) -> ConsumerSpec {
        (self.spec)()
    }

    /// The state types its handler takes.
    pub fn state_types(&self) -> Vec<StateType> {
        (self.state_types)()
    }

    /// The database of its handler's `Tx` parameter, if it takes one.
    pub fn transaction(&self) -> Option<DatabaseKind> {
        (self.transaction)()
    }

    /// The registration of consumer type `C`.
    pub const fn of<C: Consumer + Default>(name: &'static str) -> Self {
        Registration {
            name,
            spec: spec_of::<C>,
            state_types: state_types_of::<C>,
            transaction: transaction_of::<C>,
            build: build_of::<C>,
        }
    }
}

fn state_types_of<C: Consumer + Default>() -> Vec<StateType> {
    C::default().state_types()
}

fn transaction_of<C: Consumer + Default>() -> Option<DatabaseKind> {
    C::default().transaction()
}

fn spec_of<C: Consumer + Default>() -> ConsumerSpec {
    C::default().spec()
}

fn build_of<C: Consumer + Default>(spec: ConsumerSpec, deps: &Deps) -> Arc<dyn ErasedPipeline> {
    Arc::new(Pipeline::new(C::default(), spec, deps.clone()))
}

impl fmt::Debug for Registration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registration")
            .field("name", &self.name)
            .field("spec", &(self.spec)())
            .finish()
    }
}
