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
//! - `crypto` (features `dlq`, `cli`): the rustls crypto provider every
//!   reqwest client of the process needs.

pub(crate) mod addon;
pub(crate) mod builder;
pub(crate) mod config;
#[cfg(any(feature = "dlq", feature = "cli"))]
pub(crate) mod crypto;
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
