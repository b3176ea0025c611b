//! [`MemoryStore`]: idempotency records in this process's memory.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{BoxFuture, Claim, IdempotencyStore, StoreError};

/// Idempotency records kept in this process only.
///
/// Used when no Redis URL is configured (with a startup warning) and by
/// [`testing`](crate::testing). Duplicates are only caught within one
/// process and are forgotten on restart; use [`RedisStore`](super::RedisStore)
/// when more than one instance consumes a queue.
#[derive(Debug, Default)]
pub struct MemoryStore {
    records: Mutex<Records>,
}

#[derive(Debug, Default)]
struct Records {
    /// Value and expiry; `None` = never expires (only records planted with
    /// [`MemoryStore::insert_raw`]: mqkit's own always expire).
    map: HashMap<String, (State, Option<Instant>)>,
    writes_since_sweep: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Processing,
    Done,
    Foreign(String),
}

fn live(expires: Option<Instant>, now: Instant) -> bool {
    expires.is_none_or(|e| e > now)
}

const SWEEP_EVERY: usize = 1024;

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The remaining time to live of `key`, if it exists (like Redis `TTL`).
    pub fn ttl(&self, key: &str) -> Option<Duration> {
        let now = Instant::now();
        let records = self.lock();
        records
            .map
            .get(key)
            .and_then(|(_, expires)| expires.and_then(|e| e.checked_duration_since(now)))
    }

    /// The value of `key` if it is live (`processing`, `done`, or whatever
    /// [`MemoryStore::insert_raw`] planted), like Redis `GET`.
    pub fn value(&self, key: &str) -> Option<String> {
        let now = Instant::now();
        let records = self.lock();
        records
            .map
            .get(key)
            .filter(|(_, expires)| live(*expires, now))
            .map(|(state, _)| match state {
                State::Processing => "processing".to_owned(),
                State::Done => "done".to_owned(),
                State::Foreign(v) => v.clone(),
            })
    }

    /// Plants a record as another tool would: any value, and no expiry when
    /// `ttl` is `None` (like `SET key value` without `EX`). For tests of what
    /// mqkit does with records it never writes.
    pub fn insert_raw(&self, key: &str, value: &str, ttl: Option<Duration>) {
        let state = match value {
            "processing" => State::Processing,
            "done" => State::Done,
            other => State::Foreign(other.to_owned()),
        };
        let expires = ttl.map(|t| Instant::now() + t);
        self.lock().map.insert(key.to_owned(), (state, expires));
    }

    /// Number of live records.
    pub fn len(&self) -> usize {
        let now = Instant::now();
        self.lock()
            .map
            .values()
            .filter(|(_, e)| live(*e, now))
            .count()
    }

    /// Whether no live record exists.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Records> {
        // A panic while holding this lock cannot leave the map inconsistent
        // (every update is a single insert or remove), so poisoning is ignored.
        self.records.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set(&self, key: &str, state: State, ttl: Duration) {
        let now = Instant::now();
        let mut records = self.lock();
        match records.map.get_mut(key) {
            // The usual case: `complete` after `claim` inserted the key.
            Some(record) => *record = (state, Some(now + ttl)),
            None => {
                records.map.insert(key.to_owned(), (state, Some(now + ttl)));
            }
        }
        records.writes_since_sweep += 1;
        // Sweeping costs O(len): doing it once per `len` writes keeps it
        // O(1) per write however many records are live.
        if records.writes_since_sweep >= SWEEP_EVERY.max(records.map.len()) {
            records.writes_since_sweep = 0;
            records.map.retain(|_, (_, expires)| live(*expires, now));
        }
    }
}

impl IdempotencyStore for MemoryStore {
    fn claim<'a>(
        &'a self,
        key: &'a str,
        lock_ttl: Duration,
    ) -> BoxFuture<'a, Result<Claim, StoreError>> {
        let now = Instant::now();
        let mut records = self.lock();
        let claim = match records
            .map
            .get_mut(key)
            .filter(|(_, expires)| live(*expires, now))
        {
            Some((State::Done, _)) => Claim::Done,
            Some((State::Processing, expires)) => {
                if expires.is_none() {
                    // The same rule as the Redis store: a lock that can
                    // never expire gets the lock TTL.
                    *expires = Some(now + lock_ttl);
                    super::no_ttl_lock(key, lock_ttl);
                }
                Claim::Busy
            }
            Some((State::Foreign(value), _)) => Claim::Foreign {
                value: value.clone(),
            },
            None => {
                records
                    .map
                    .insert(key.to_owned(), (State::Processing, Some(now + lock_ttl)));
                Claim::Acquired
            }
        };
        Box::pin(std::future::ready(Ok(claim)))
    }

    fn complete<'a>(
        &'a self,
        key: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.set(key, State::Done, ttl);
        Box::pin(std::future::ready(Ok(())))
    }

    fn release<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        self.lock().map.remove(key);
        Box::pin(std::future::ready(Ok(())))
    }
}
