//! The add-ons layer, on top of the app layer: dead-letter operations
//! ([`dlq`]: the archive and alerts, joining a service through the app's
//! add-on hook), transactional consumers ([`tx`], feature `tx`: inbox,
//! outbox relay, retention) and the operator command ([`cli`], feature `cli`).

pub(crate) mod dlq;

#[cfg(feature = "tx")]
pub(crate) mod tx;

#[cfg(feature = "cli")]
pub(crate) mod cli;
