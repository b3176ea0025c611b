//! The AMQP layer: everything that talks to RabbitMQ, built on the core.
//!
//! - [`connection`]: the one connection per process (URL list, heartbeat).
//! - [`supervisor`]: startup, sessions, reconnects, shutdown, readiness state.
//! - [`consume`]: the one consume loop (channel, qos, slots, cancel, drain),
//!   shared by the consumers and the dead-letter archiver.
//! - [`worker`]: a delivery through the pipeline, its outcome applied.
//! - [`publisher`]: the confirm-mode channel behind the core's `Publish`.
//! - [`topology`]: a spec's queues, exchanges and bindings, declared.
//! - [`convert`]: lapin's properties ↔ mqkit's own.

pub(crate) mod connection;
pub(crate) mod consume;
pub(crate) mod convert;
pub(crate) mod publisher;
pub(crate) mod supervisor;
pub(crate) mod topology;
pub(crate) mod worker;
