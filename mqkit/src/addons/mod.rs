//! The add-ons layer, on top of the app layer: dead-letter operations
//! ([`dlq`]: the archive and alerts, joining a service through the app's
//! add-on hook), transactional consumers ([`tx`], feature `tx`: inbox,
//! outbox relay, retention), the operator command ([`cli`], feature `cli`)
//! and the schema migrations both databases share ([`migrate`]).

pub(crate) mod dlq;

#[cfg(any(feature = "dlq", feature = "tx", feature = "cli"))]
pub(crate) mod migrate;

#[cfg(feature = "tx")]
pub(crate) mod tx;

#[cfg(feature = "cli")]
pub(crate) mod cli;
