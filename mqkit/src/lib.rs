//! # mqkit
//!
//! Consume RabbitMQ messages without losing, double-processing or silently
//! dropping any of them. Write one annotated async function per queue:
//!
//! ```no_run
//! use serde::Deserialize;
//!
//! #[derive(Deserialize)]
//! struct OrderEvent { order_id: String, event_type: String, amount_cents: i64 }
//!
//! #[mqkit::consumer(queue = "order", dlx = "dlx", idempotency = "order_id,event_type")]
//! async fn on_order(evt: OrderEvent) -> Result<(), mqkit::HandlerError> {
//!     if evt.amount_cents < 0 {
//!         return Err(mqkit::HandlerError::reject("negative amount")); // permanent: straight to the DLQ
//!     }
//!     charge(&evt).await?; // any std error: transient, retried with back-off, then DLQ
//!     Ok(())
//! }
//! # async fn charge(_: &OrderEvent) -> Result<(), std::io::Error> { Ok(()) }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), mqkit::Error> {
//!     mqkit::run().await // every #[consumer] in this binary, config from the environment
//! }
//! ```
//!
//! The macro checks the attribute and the signature at compile time (an
//! idempotency field the type lacks is a compile error on the attribute) and
//! implements [`Consumer`] for a companion type named like the function
//! (`on_order {}`); the function itself stays an ordinary async fn.
//!
//! Each delivery goes through the pipeline: decode the JSON body, claim the
//! business key in the [idempotency store](IdempotencyStore), run the
//! handler with a timeout and panic containment, and classify the result
//! into an [`Outcome`]:
//!
//! | handler result | outcome |
//! |---|---|
//! | `Ok(())` | [`Outcome::Ack`]; idempotency record set to done |
//! | transient error (`?`, [`HandlerError::retry`]), a panic, a timeout | [`Outcome::Retry`] with a doubling delay; after `max_retries`, [`Outcome::DeadLetter`] `retries-exhausted` |
//! | [`HandlerError::reject`] | [`Outcome::DeadLetter`] `rejected` |
//! | body that does not decode | [`Outcome::DeadLetter`] `decode` |
//! | business key already done | [`Outcome::Duplicate`]: ack, handler not called |
//! | key being processed elsewhere, or store unreachable | [`Outcome::Requeue`]: delayed, not counted as an attempt |
//!
//! [`testing`] runs a consumer on a payload in memory, for your own tests.
//!
//! Dead letters: with the `dlq` feature and `MQKIT_DLQ_ARCHIVE_URL`,
//! [`run`] archives every DLQ into MySQL/MariaDB and can alert a webhook;
//! the `cli` feature builds the `mqkit` command (`mqkit dlq list|show|replay|purge`).
//!
//! The crate's layers (`core` → `amqp` → `app` → `addons`) and the rules it
//! enforces are described in the repository's `ARCHITECTURE.md`.

mod addons;
mod amqp;
mod app;
mod core;
pub mod testing;

pub use crate::amqp::supervisor::ConnectionState;
pub use crate::amqp::topology::TopologyError;
pub use crate::app::builder::{App, run};
pub use crate::app::config::{Config, DEFAULT_AMQP_URL, DlqTuning, OutboxTuning};
pub use crate::app::error::Error;
pub use crate::app::logging::init_logging;
pub use crate::app::registry::registered;
pub use crate::app::running::Running;
pub use crate::app::tools::declare_topology;
pub use crate::core::consumer::{Consumer, DecodeError, Registration};
pub use crate::core::context::Context;
pub use crate::core::decode::decode_json;
pub use crate::core::handler::{BoxError, Disposition, HandlerError};
pub use crate::core::headers::{FieldValue, Headers, Properties};
pub use crate::core::idempotency::{
    BoxFuture, Claim, IdempotencyStore, KeyBuilder, MemoryStore, RedisStore, StoreError,
};
pub use crate::core::inbox::DatabaseKind;
pub use crate::core::outcome::{DeadLetterKind, Outcome, RequeueReason};
pub use crate::core::publish::{MessageBuilder, Outgoing, Publish, PublishError, Publisher};
pub use crate::core::retry::MAX_RETRY_DELAY;
pub use crate::core::spec::{ConsumerSpec, ExchangeBinding, QueueType, SpecError};
pub use crate::core::state::{State, StateType};
pub use mqkit_macros::consumer;

#[cfg(feature = "tx")]
pub use crate::addons::tx::{Tx, TxDatabase};

/// The add-ons compiled into this build, as the app layer starts them: the
/// crate root is where the layers are wired together, so the app layer never
/// names the add-ons above it.
const ADDONS: &[app::addon::AddonFactory] = &[
    #[cfg(feature = "dlq")]
    addons::dlq::addon::factory,
    #[cfg(feature = "tx")]
    addons::tx::factory,
];

/// The `mqkit` operator command (feature `cli`): `mqkit dlq list | show |
/// replay | purge`, for binaries that embed it.
#[cfg(feature = "cli")]
pub mod cli {
    pub use crate::addons::cli::{main, main_with_args};
}

/// Items used by the code `#[mqkit::consumer]` generates. Not a stable API.
#[doc(hidden)]
pub mod __private {
    pub use crate::core::consumer::{Consumer, DecodeError, Registration};
    pub use crate::core::context::Context;
    pub use crate::core::decode::decode_json;
    pub use crate::core::handler::HandlerError;
    pub use crate::core::idempotency::KeyBuilder;
    pub use crate::core::inbox::{DatabaseKind, TxParam};
    pub use crate::core::spec::{ConsumerSpec, ExchangeBinding, QueueType};
    pub use crate::core::state::{FromContext, StateType};
    pub use linkme;
    pub use serde::de::DeserializeOwned;
    pub use std::borrow::Cow;
    pub use std::time::Duration;

    /// Every `#[consumer]` linked into the binary.
    #[linkme::distributed_slice]
    #[linkme(crate = linkme)]
    pub static CONSUMERS: [Registration];

    /// Converts a handler's error into a [`HandlerError`]; a function so the
    /// `E: Into<HandlerError>` requirement is reported on the user's type.
    pub fn into_handler_error<E: Into<HandlerError>>(e: E) -> HandlerError {
        e.into()
    }
}

/// The README's Rust examples, compiled as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
