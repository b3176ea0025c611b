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
//! ```
//!
//! The macro checks the attribute and the signature at compile time (an
//! idempotency field the type lacks is a compile error on the attribute) and
//! implements [`Consumer`] for a companion type named like the function
//! (`on_order {}`); the function itself stays an ordinary async fn.
//!
//! Each delivery goes through the [`pipeline`]: decode the JSON body, claim
//! the business key in the [idempotency store](idempotency), run the
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
//! See [`dlq`].

pub mod app;
pub mod broker;
#[cfg(feature = "cli")]
pub mod cli;
pub mod config;
pub mod consumer;
pub mod context;
pub mod dlq;
pub mod error;
pub mod handler;
pub mod idempotency;
pub mod mask;
pub mod pipeline;
pub mod publish;
pub mod retry;
pub mod testing;
pub mod topology;

pub use app::{App, Running, run};
pub use broker::ConnectionState;
pub use config::{Config, DlqTuning};
pub use consumer::{Consumer, ConsumerSpec, DecodeError, ExchangeBinding, QueueType, Registration};
pub use context::Context;
pub use error::Error;
pub use handler::{BoxError, Disposition, HandlerError};
pub use idempotency::{IdempotencyStore, MemoryStore, RedisStore};
pub use mqkit_macros::consumer;
pub use pipeline::{DeadLetterKind, Outcome, RequeueReason};
pub use publish::{PublishError, Publisher};

/// Items used by the code `#[mqkit::consumer]` generates. Not a stable API.
#[doc(hidden)]
pub mod __private {
    pub use crate::consumer::{
        Consumer, ConsumerSpec, DecodeError, ExchangeBinding, QueueType, Registration,
    };
    pub use crate::context::Context;
    pub use crate::handler::HandlerError;
    pub use crate::idempotency::KeyBuilder;
    pub use crate::pipeline::decode_json;
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
