//! The per-delivery pipeline alone, no broker: decode a ~250-byte JSON
//! order event, claim and complete its business key in a [`MemoryStore`]
//! (a new key every message, so the `Ack` path is measured, not
//! `Duplicate`), run a trivial handler, classify the outcome.
//!
//! ```text
//! cargo bench -p mqkit --bench pipeline
//! ```
//!
//! Three figures per message: `serde_json` alone (the floor), the pipeline
//! without idempotency, and the pipeline with idempotency. Then the
//! [`MemoryStore`] alone (claim + complete of a new key) in a fresh store and
//! in one already holding a million live records, since its periodic sweep
//! visits every record.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use mqkit::testing::TestDelivery;
use mqkit::{Claim, IdempotencyStore};
use mqkit::{ConsumerSpec, MemoryStore, Outcome};

/// The test consumer of `tests/support/orders.rs`; its handler does nothing
/// for these event types but count the call.
#[path = "../tests/support/orders.rs"]
mod orders;

use orders::{OrderEvent, Orders, Shared};

/// Deliveries prepared outside the timed loop; a fresh store every this
/// many messages keeps every key new.
const POOL: usize = 10_000;

fn deliveries() -> Vec<TestDelivery> {
    (0..POOL)
        .map(|i| {
            let mut evt = OrderEvent {
                order_id: format!("ord-0001-{i:08}"),
                event_type: ["created", "paid", "shipped"][i % 3].to_owned(),
                amount_cents: Some(i64::try_from(i).unwrap()),
                note: String::new(),
            };
            let bare = serde_json::to_vec(&evt).unwrap().len();
            evt.note = "x".repeat(250 - bare);
            TestDelivery::json(&evt).unwrap().message_id(&evt.order_id)
        })
        .collect()
}

/// Times `iters` deliveries through a fresh harness per [`POOL`] messages.
fn run(
    rt: &tokio::runtime::Runtime,
    spec: &ConsumerSpec,
    deliveries: &[TestDelivery],
    iters: u64,
) -> Duration {
    let shared = Arc::new(Shared::default());
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = usize::try_from(left.min(POOL as u64)).unwrap();
        let harness = Orders::harness(spec.clone(), &shared, Arc::new(MemoryStore::new()));
        let started = Instant::now();
        rt.block_on(async {
            for d in &deliveries[..n] {
                let outcome = harness.deliver(black_box(d)).await;
                assert!(outcome == Outcome::Ack, "{outcome:?}");
            }
        });
        total += started.elapsed();
        left -= n as u64;
    }
    assert_eq!(
        shared.calls() as u64,
        iters,
        "the handler ran once a message"
    );
    total
}

fn pipeline(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let deliveries = deliveries();
    let bodies: Vec<&[u8]> = deliveries.iter().map(TestDelivery::body).collect();
    let mut group = c.benchmark_group("pipeline");
    group.throughput(Throughput::Elements(1));
    group.bench_function("serde_json only", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % POOL;
            serde_json::from_slice::<OrderEvent>(black_box(bodies[i])).unwrap()
        });
    });
    let with_idempotency = orders::spec("bench");
    let mut without_idempotency = with_idempotency.clone();
    without_idempotency.idempotency = &[];
    group.bench_function("decode + outcome (no idempotency)", |b| {
        b.iter_custom(|iters| run(&rt, &without_idempotency, &deliveries, iters));
    });
    group.bench_function("decode + MemoryStore idempotency + outcome", |b| {
        b.iter_custom(|iters| run(&rt, &with_idempotency, &deliveries, iters));
    });
    group.finish();
}

fn memory_store(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let (lock, ttl) = (Duration::from_secs(35), Duration::from_secs(86_400));
    let claim_complete = |store: &MemoryStore, keys: &[String]| {
        rt.block_on(async {
            for k in keys {
                assert_eq!(store.claim(k, lock).await.unwrap(), Claim::Acquired);
                store.complete(k, ttl).await.unwrap();
            }
        });
    };
    let key = |i: u64| format!("mqkit:idem:bench:ord-{i:010}:created");
    let mut group = c.benchmark_group("MemoryStore claim + complete");
    group.throughput(Throughput::Elements(1));
    group.bench_function("fresh store", |b| {
        b.iter_custom(|iters| {
            let keys: Vec<String> = (0..iters).map(key).collect();
            let store = MemoryStore::new();
            let started = Instant::now();
            claim_complete(&store, &keys);
            started.elapsed()
        });
    });
    let big = MemoryStore::new();
    const LIVE: u64 = 1_000_000;
    claim_complete(&big, &(0..LIVE).map(key).collect::<Vec<_>>());
    let mut next = LIVE;
    group.bench_function("store holding 1M live records", |b| {
        b.iter_custom(|iters| {
            let keys: Vec<String> = (next..next + iters).map(key).collect();
            next += iters;
            let started = Instant::now();
            claim_complete(&big, &keys);
            started.elapsed()
        });
    });
    group.finish();
}

fn main() {
    let mut c = Criterion::default()
        .measurement_time(Duration::from_secs(5))
        .configure_from_args();
    pipeline(&mut c);
    memory_store(&mut c);
    c.final_summary();
}
