//! The core layer: what a consumer is and what happens to one delivery,
//! with no broker in sight (this layer never names the AMQP client).
//!
//! - [`spec`]: [`ConsumerSpec`](spec::ConsumerSpec), the attribute as data.
//! - [`consumer`]: the [`Consumer`](consumer::Consumer) trait and its registration form.
//! - [`handler`], [`outcome`]: what a handler returns and what mqkit decides.
//! - [`retry`]: the back-off schedule and delay-queue names.
//! - [`headers`]: properties, headers, `x-mqkit-*` names and readers.
//! - [`decode`], [`idempotency`], [`pipeline`]: decode → claim → handler → outcome.
//! - [`inbox`]: transactional consumers as the pipeline sees them (the
//!   database itself is the `tx` add-on's).
//! - [`publish`], [`context`], [`state`]: the publishing trait, what a
//!   handler sees, and the shared state it asks for by type.
//! - [`trace`]: the span of a delivery and what follow-ups inherit
//!   (correlation id, W3C trace context).
//! - [`mask`], [`text`], [`backoff`]: secrets out of texts; bounded texts;
//!   the one back-off builder.

pub(crate) mod backoff;
pub(crate) mod consumer;
pub(crate) mod context;
pub(crate) mod decode;
pub(crate) mod handler;
pub(crate) mod headers;
pub(crate) mod idempotency;
pub(crate) mod inbox;
pub(crate) mod mask;
pub(crate) mod outcome;
pub(crate) mod pipeline;
pub(crate) mod publish;
pub(crate) mod retry;
pub(crate) mod spec;
pub(crate) mod state;
pub(crate) mod text;
pub(crate) mod trace;
