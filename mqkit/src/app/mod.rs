//! The app layer: what a service author touches.
//!
//! - [`builder`]: [`App`](builder::App) and [`run`](builder::run): what is
//!   checked before connecting, and the wiring of the layers.
//! - [`running`]: [`Running`](running::Running), signals and graceful shutdown.
//! - [`config`], [`overrides`]: settings from the environment, per-consumer
//!   overrides.
//! - [`http`], [`telemetry`], [`logging`]: probes and `/metrics`, the
//!   Prometheus recorder, the default log output (and, with `otel`,
//!   [`otel`]: OTLP span export).
//! - [`error`]: [`Error`](error::Error), what startup and running report.
//! - [`registry`]: the consumers linked into the binary.
//! - [`addon`]: the hook add-ons (the dead-letter archiver) join through.
//! - [`tools`]: a standalone publisher and topology declaration, for
//!   services that only publish, deploy steps and tools.

pub(crate) mod addon;
pub(crate) mod builder;
pub(crate) mod config;
pub(crate) mod error;
pub(crate) mod http;
pub(crate) mod logging;
#[cfg(feature = "otel")]
pub(crate) mod otel;
pub(crate) mod overrides;
pub(crate) mod registry;
pub(crate) mod running;
pub(crate) mod telemetry;
pub(crate) mod tools;
