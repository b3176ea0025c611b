//! Throughput and memory of an mqkit consumer against a hand-written lapin
//! consumer doing the same work, on the local RabbitMQ (and Redis for
//! variant c, PostgreSQL for variant t).
//!
//! ```text
//! cargo run --release -p mqkit-examples --example bench_consumer -- --messages 50000 --rounds 3
//! cargo run --release -p mqkit-examples --example bench_consumer -- --messages 20000 --variants t
//! ```
//!
//! Variants: (a) prefetch 1, (b) prefetch 100, (c) prefetch 100 plus the
//! two-step Redis idempotency check per message, (t) prefetch 100,
//! transactional on PostgreSQL: per message one effect row insert plus one
//! follow-up event, exactly once. The default set is `abc`; `t` runs only
//! when asked for (`--variants t` or `abct`).
//!
//! For each variant and round
//! the parent fills a fresh durable queue with N persistent ~250-byte JSON
//! order events (publisher confirms, many in flight), then runs one consumer
//! in a child process (this binary again, with the hidden `--role` option)
//! until it has handled N messages: hand-written, then mqkit, alternately.
//! A child reports its elapsed time (first handler call until the graceful
//! close after the last ack), its idle RSS (`VmRSS` at the first handler
//! call: connected and consuming, nothing handled yet) and its peak RSS
//! (`VmHWM` at the end), and its CPU time; the parent adds RabbitMQ's,
//! Redis's and PostgreSQL's CPU time (all `postgres` processes, including
//! backends that ended during the run) and Redis's command counts during
//! the run. It prints a table and writes it as JSON to
//! `target/bench/consumer.json` (`--out` to change).
//!
//! Variant (t), in `transactional.rs`: mqkit's handler takes `mqkit::Tx`
//! (inbox row keyed on `order_id,event_type`, one `INSERT` into the effect
//! table, one follow-up staged with `tx.publish_json` to a per-run durable
//! queue; mqkit commits, acks, and its relay publishes the follow-up). The
//! hand-written one does the same with lapin and sqlx (a pool of 100, as
//! mqkit's for concurrency 100): `BEGIN`, its own inbox row
//! (`ON CONFLICT DO NOTHING`; none inserted = a duplicate, rolled back and
//! acked), the effect row, `COMMIT`, then the follow-up on a confirm-mode
//! channel (persistent, mandatory), its confirm awaited, then the ack. It
//! has no outbox: a crash between the commit and the confirm loses the
//! follow-up, which is what mqkit's outbox adds. The mqkit child's clock
//! stops only once every follow-up is in the follow-up queue, since mqkit
//! acks before its relay publishes. The parent creates the effect and
//! hand-written inbox tables (`bench_effects_<pid>`, `bench_inbox_<pid>`)
//! in the database at `--database-url`, empties them before each run, and
//! after each run checks N effect rows, N inbox rows and N messages in the
//! follow-up queue (an error otherwise), deletes mqkit's `mqkit_inbox` and
//! `mqkit_outbox` rows of the run's queue, and drops its tables at the end.
//! The machine's PostgreSQL must allow about 100 connections besides
//! whatever else uses it (the default `max_connections` is 100), since
//! each consumer holds up to 100.
//!
//! Options: `--messages N` (10000), `--rounds R` (3), `--variants abc`
//! (any of `abct`), `--amqp-url URL`, `--redis-url URL`,
//! `--database-url URL` (`postgres://postgres@127.0.0.1:5432/test`, variant
//! t), `--out PATH`, and
//! `--hand-redis-get per-command` to have the hand-written consumer check a
//! Redis connection out of the pool per command, as mqkit's `RedisStore`
//! does, instead of once per message; `--observe` to run the mqkit consumer
//! with `MQKIT_HTTP_ADDR` set (metrics recorded) and a `tracing` subscriber
//! at `info` (a live span per delivery), for the cost of observability
//! against a run without it.
//!
//! Layout: `child.rs` (the two consumers), `transactional.rs` (variant t's
//! consumers and tables), `parent.rs` (queues, prefill, children, cleanup),
//! `report.rs` (table, JSON), `procfs.rs` (`/proc`).

mod child;
mod parent;
mod procfs;
mod report;
mod transactional;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The message both consumers decode.
#[derive(Debug, Serialize, Deserialize)]
struct OrderEvent {
    order_id: String,
    event_type: String,
    amount_cents: i64,
    currency: String,
    note: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    A,
    B,
    C,
    T,
}

impl Variant {
    fn parse(s: &str) -> Result<Self, BoxError> {
        match s {
            "a" => Ok(Variant::A),
            "b" => Ok(Variant::B),
            "c" => Ok(Variant::C),
            "t" => Ok(Variant::T),
            _ => Err(format!("unknown variant {s:?} (a, b, c or t)").into()),
        }
    }
    fn name(self) -> &'static str {
        match self {
            Variant::A => "a",
            Variant::B => "b",
            Variant::C => "c",
            Variant::T => "t",
        }
    }
    fn describe(self) -> &'static str {
        match self {
            Variant::A => "prefetch 1",
            Variant::B => "prefetch 100",
            Variant::C => "prefetch 100 + Redis idempotency",
            Variant::T => "prefetch 100 + PostgreSQL tx",
        }
    }
    fn prefetch(self) -> u16 {
        if self == Variant::A { 1 } else { 100 }
    }
    /// Redis idempotency (variant c).
    fn idempotent(self) -> bool {
        self == Variant::C
    }
    /// A database transaction per message (variant t).
    fn transactional(self) -> bool {
        self == Variant::T
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Hand,
    Mqkit,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Hand => "hand",
            Role::Mqkit => "mqkit",
        }
    }
}

#[derive(Debug)]
struct Args {
    messages: u64,
    rounds: usize,
    variants: Vec<Variant>,
    amqp_url: String,
    redis_url: String,
    database_url: String,
    out: Option<PathBuf>,
    /// The hand-written consumer takes a pooled Redis connection once per
    /// message (default) or once per command, as mqkit does.
    hand_get_per_command: bool,
    /// The mqkit consumer runs as in production: `MQKIT_HTTP_ADDR` set
    /// (probes and the Prometheus recorder) and a `tracing` subscriber at
    /// `info`, so every delivery's span is live.
    observe: bool,
    // Child options (hidden).
    role: Option<Role>,
    queue: String,
    prefetch: u16,
    variant: Variant,
    expect: u64,
    /// Variant t's table names end in `_<tables>` (the parent's pid).
    tables: String,
}

impl Args {
    fn parse() -> Result<Self, BoxError> {
        let mut args = Args {
            messages: 10_000,
            rounds: 3,
            variants: vec![Variant::A, Variant::B, Variant::C],
            amqp_url: mqkit::DEFAULT_AMQP_URL.to_owned(),
            redis_url: "redis://127.0.0.1:6379".to_owned(),
            database_url: "postgres://postgres@127.0.0.1:5432/test".to_owned(),
            out: None,
            hand_get_per_command: false,
            observe: false,
            role: None,
            queue: String::new(),
            prefetch: 1,
            variant: Variant::A,
            expect: 0,
            tables: String::new(),
        };
        let mut it = std::env::args().skip(1);
        while let Some(flag) = it.next() {
            let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
            match flag.as_str() {
                "--messages" => args.messages = value()?.parse()?,
                "--rounds" => args.rounds = value()?.parse()?,
                "--variants" => {
                    args.variants = value()?
                        .chars()
                        .map(|c| Variant::parse(&c.to_string()))
                        .collect::<Result<_, _>>()?;
                }
                "--amqp-url" => args.amqp_url = value()?,
                "--redis-url" => args.redis_url = value()?,
                "--database-url" => args.database_url = value()?,
                "--out" => args.out = Some(value()?.into()),
                "--hand-redis-get" => {
                    args.hand_get_per_command = match value()?.as_str() {
                        "per-message" => false,
                        "per-command" => true,
                        other => return Err(format!("unknown --hand-redis-get {other:?}").into()),
                    };
                }
                "--observe" => args.observe = true,
                "--role" => {
                    args.role = Some(match value()?.as_str() {
                        "hand" => Role::Hand,
                        "mqkit" => Role::Mqkit,
                        other => return Err(format!("unknown role {other:?}").into()),
                    });
                }
                "--queue" => args.queue = value()?,
                "--prefetch" => args.prefetch = value()?.parse()?,
                "--variant" => args.variant = Variant::parse(&value()?)?,
                "--expect" => args.expect = value()?.parse()?,
                "--tables" => args.tables = value()?,
                other => return Err(format!("unknown option {other:?}").into()),
            }
        }
        if args.messages == 0 || args.rounds == 0 || args.prefetch == 0 {
            return Err("--messages, --rounds and --prefetch must be at least 1".into());
        }
        Ok(args)
    }
}

#[tokio::main]
async fn main() {
    let result = match Args::parse() {
        Ok(args) => match args.role {
            Some(role) => child::child(role, &args).await,
            None => parent::parent(&args).await,
        },
        Err(e) => Err(e),
    };
    if let Err(e) = result {
        eprintln!("bench_consumer: {e}");
        std::process::exit(1);
    }
}
