//! Idempotency on business keys: the [`IdempotencyStore`] trait, the key
//! format (`mqkit:idem:{queue}:{field1}:{field2}…`), and two stores:
//! [`RedisStore`] for production and [`MemoryStore`] for one process.
//!
//! The protocol is two-phase. Before the handler, [`IdempotencyStore::claim`]
//! sets the key to `processing` only if it is absent (with a lock TTL);
//! after success [`IdempotencyStore::complete`] sets it to `done` (with the
//! idempotency TTL); after a failure [`IdempotencyStore::release`] deletes it.

mod memory;
mod redis;

use std::fmt::{self, Write as _};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

pub use memory::MemoryStore;
pub use redis::RedisStore;

/// A boxed future, as the object-safe store methods return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the store said when the pipeline tried to claim a key.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Claim {
    /// The key was free and is now `processing` for this delivery.
    Acquired,
    /// The key is `done`: this business event was already handled.
    Done,
    /// The key is `processing`: another delivery is handling it right now.
    /// A `processing` record without an expiry is given the lock TTL by the
    /// store when it is found (a lock that can never expire is foreign
    /// state), so it ends like any other lock.
    Busy,
    /// The key holds a value mqkit never writes (another tool, a typo in a
    /// shared Redis). The store leaves it as it is; the pipeline
    /// dead-letters the message as `rejected`, naming the key and value.
    Foreign {
        /// What the key holds.
        value: String,
    },
}

/// Logs, once per lock (the store fixes it here), a `processing` record
/// found without an expiry.
pub(crate) fn no_ttl_lock(key: &str, lock_ttl: Duration) {
    tracing::error!(
        key,
        lock_ttl = ?lock_ttl,
        "idempotency lock had no TTL (removed by PERSIST, a manual SET or a restore?), so it could never expire; gave it the lock TTL, the message is handled once it expires"
    );
}

/// The idempotency store could not be reached or gave an unexpected answer.
#[derive(Debug, thiserror::Error)]
#[error("idempotency store: {message}")]
pub struct StoreError {
    message: String,
    #[source]
    source: Option<crate::core::handler::BoxError>,
}

impl StoreError {
    /// An error with this text (what failed and what to check).
    pub fn new(message: impl Into<String>) -> Self {
        StoreError {
            message: message.into(),
            source: None,
        }
    }

    /// An error with this text, caused by `source`.
    pub fn with_source(
        message: impl Into<String>,
        source: impl Into<crate::core::handler::BoxError>,
    ) -> Self {
        StoreError {
            message: message.into(),
            source: Some(source.into()),
        }
    }

    /// The text, without the `idempotency store:` prefix.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// A place to keep idempotency records. Implement it for other databases.
pub trait IdempotencyStore: Send + Sync + 'static {
    /// Sets `key` to `processing` with expiry `lock_ttl` unless it exists,
    /// and says what was there.
    fn claim<'a>(
        &'a self,
        key: &'a str,
        lock_ttl: Duration,
    ) -> BoxFuture<'a, Result<Claim, StoreError>>;

    /// Marks `key` as `done` for `ttl`: later deliveries of the same business
    /// key are duplicates.
    fn complete<'a>(&'a self, key: &'a str, ttl: Duration)
    -> BoxFuture<'a, Result<(), StoreError>>;

    /// Deletes `key` after a failed attempt so a retry can claim it again.
    fn release<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), StoreError>>;
}

/// Builds an idempotency key. The `#[consumer]` macro calls
/// [`KeyBuilder::push`] once per idempotency field, in attribute order.
///
/// Values are written with `Display`; `:` and `%` inside a value are
/// percent-encoded so that two different field tuples never share a key.
#[derive(Debug, Clone)]
pub struct KeyBuilder {
    key: String,
}

impl KeyBuilder {
    /// A builder for a key of `queue`: `mqkit:idem:{queue}`.
    pub fn new(queue: &str) -> Self {
        let mut key = String::with_capacity(32 + queue.len());
        key.push_str("mqkit:idem:");
        key.push_str(queue);
        KeyBuilder { key }
    }

    /// Appends `:{value}`.
    pub fn push<T: fmt::Display + ?Sized>(&mut self, value: &T) {
        self.key.push(':');
        // Writing into a String cannot fail.
        let _ = write!(Escaper(&mut self.key), "{value}");
    }

    /// The key so far.
    pub fn as_str(&self) -> &str {
        &self.key
    }

    /// The finished key.
    pub fn finish(self) -> String {
        self.key
    }
}

struct Escaper<'a>(&'a mut String);

impl fmt::Write for Escaper<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut rest = s;
        while let Some(i) = rest.find([':', '%']) {
            self.0.push_str(&rest[..i]);
            self.0.push_str(if rest.as_bytes()[i] == b':' {
                "%3A"
            } else {
                "%25"
            });
            rest = &rest[i + 1..];
        }
        self.0.push_str(rest);
        Ok(())
    }
}

/// Whole seconds for Redis `EX`, rounded up and at least 1.
pub(crate) fn ttl_secs(ttl: Duration) -> u64 {
    let secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
    secs.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_format() {
        let mut k = KeyBuilder::new("order");
        k.push("A-1");
        k.push(&42);
        assert_eq!(k.finish(), "mqkit:idem:order:A-1:42");
    }

    #[test]
    fn separators_inside_values_are_escaped() {
        let mut a = KeyBuilder::new("q");
        a.push("x:y");
        a.push("z");
        let mut b = KeyBuilder::new("q");
        b.push("x");
        b.push("y:z");
        assert_ne!(a.as_str(), b.as_str());
        assert_eq!(a.as_str(), "mqkit:idem:q:x%3Ay:z");
        let mut c = KeyBuilder::new("q");
        c.push("100%");
        assert_eq!(c.as_str(), "mqkit:idem:q:100%25");
    }

    #[test]
    fn ttl_rounds_up_to_whole_seconds() {
        assert_eq!(ttl_secs(Duration::from_millis(1500)), 2);
        assert_eq!(ttl_secs(Duration::from_secs(35)), 35);
        assert_eq!(ttl_secs(Duration::ZERO), 1);
    }
}
