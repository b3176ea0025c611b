//! The app layer: what a service author touches.
//!
//! - [`builder`]: [`App`](builder::App), [`run`](builder::run), [`Running`](builder::Running),
//!   signals and graceful shutdown.
//! - [`config`]: settings from the environment.
//! - [`error`]: [`Error`](error::Error), what startup and running report.
//! - [`registry`]: the consumers linked into the binary.
//! - [`addon`]: the hook add-ons (the dead-letter archiver) join through.
//! - [`tools`]: a standalone publisher and topology declaration, for
//!   services that only publish, deploy steps and tools.

pub(crate) mod addon;
pub(crate) mod builder;
pub(crate) mod config;
pub(crate) mod error;
pub(crate) mod registry;
pub(crate) mod tools;
