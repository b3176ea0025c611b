//! The add-ons layer, on top of the app layer: dead-letter operations
//! ([`dlq`]: the archive and alerts, joining a service through the app's
//! add-on hook) and the operator command ([`cli`], feature `cli`).

pub(crate) mod dlq;

#[cfg(feature = "cli")]
pub(crate) mod cli;
