//! Idempotency behaviour through the pipeline on the in-process
//! [`MemoryStore`]. The same scenarios run against a real Redis, with the
//! Redis-only checks, in `tests/idempotency.rs` of the `mqkit-tests` crate.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use mqkit::{IdempotencyStore, MemoryStore};

#[path = "support/orders.rs"]
mod orders;
#[path = "support/idempotency.rs"]
mod scenarios;

use scenarios::{Backend, unique_queue};

/// One shared in-process store per test.
struct Memory {
    queue: String,
    store: Arc<MemoryStore>,
}

impl Memory {
    async fn new(tag: &str) -> Self {
        Memory {
            queue: unique_queue(tag),
            store: Arc::new(MemoryStore::new()),
        }
    }
}

impl Backend for Memory {
    fn queue(&self) -> &str {
        &self.queue
    }

    /// The one shared in-process store, as every instance would see it.
    fn store(&self) -> Arc<dyn IdempotencyStore> {
        self.store.clone()
    }

    async fn ttl(&self, key: &str) -> Option<Duration> {
        self.store.ttl(key)
    }

    async fn value(&self, key: &str) -> Option<String> {
        self.store.value(key)
    }

    async fn assert_no_keys(&self) {
        assert!(self.store.is_empty());
    }

    async fn cleanup(self) {}
}

mod memory_store {
    crate::scenarios::store_scenarios!(super::Memory::new);
}
