//! The child process: one consumer (hand-written or mqkit) until it has
//! handled N messages, then one JSON line on stdout.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use deadpool_redis::redis::{self, Value};
use futures_util::StreamExt as _;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Connection, ConnectionProperties};
use mqkit::{Consumer as _, ConsumerSpec};
use serde_json::json;
use tokio::sync::{Notify, Semaphore};

use crate::procfs::{Memory, cpu_secs, memory_kb};
use crate::transactional::{self, Followups, HandTx};
use crate::{Args, BoxError, OrderEvent, Role};

// What a child has done, shared by its handlers (one consumer per process).
static HANDLED: AtomicU64 = AtomicU64::new(0);
static EXPECT: AtomicU64 = AtomicU64::new(u64::MAX);
static FIRST: OnceLock<Instant> = OnceLock::new();
static IDLE: OnceLock<(Memory, f64)> = OnceLock::new();
static DONE: Notify = Notify::const_new();

/// The handler logic, identical for both consumers: a trivial check of the
/// decoded fields, and counting. The first call records the idle memory
/// (connected, consuming, nothing handled yet) and starts the clock.
pub(crate) fn handle_order(evt: &OrderEvent) -> bool {
    FIRST.get_or_init(|| {
        IDLE.get_or_init(|| (memory_kb(), cpu_secs(std::process::id())));
        Instant::now()
    });
    let ok = evt.amount_cents >= 0
        && evt.currency.len() == 3
        && !evt.order_id.is_empty()
        && !evt.event_type.is_empty()
        && evt.note.len() < 1024;
    if HANDLED.fetch_add(1, Ordering::Relaxed) + 1 == EXPECT.load(Ordering::Relaxed) {
        DONE.notify_one();
    }
    ok
}

/// Variants (a) and (b): no idempotency.
#[mqkit::consumer(queue = "bench")]
async fn bench_plain(evt: OrderEvent) -> Result<(), mqkit::HandlerError> {
    if handle_order(&evt) {
        Ok(())
    } else {
        Err(mqkit::HandlerError::reject("invalid order"))
    }
}

/// Variant (c): Redis idempotency on the business key.
#[mqkit::consumer(queue = "bench", idempotency = "order_id,event_type")]
async fn bench_idem(evt: OrderEvent) -> Result<(), mqkit::HandlerError> {
    if handle_order(&evt) {
        Ok(())
    } else {
        Err(mqkit::HandlerError::reject("invalid order"))
    }
}

/// The spec whose topology (work queue, DLQ, delay queues) the parent
/// declares and deletes around each run: what mqkit declares for the queue.
pub(crate) fn topology_spec(queue: &str) -> ConsumerSpec {
    let mut spec = bench_plain {}.spec();
    spec.rename_queue(queue.to_owned());
    spec
}

/// How long a child may take before it gives up.
pub(crate) const CHILD_TIMEOUT: Duration = Duration::from_secs(600);

pub(crate) async fn child(role: Role, args: &Args) -> Result<(), BoxError> {
    EXPECT.store(args.expect, Ordering::Relaxed);
    let Stopped {
        startup,
        handled_at_startup,
        end,
        followup_wait,
    } = match role {
        Role::Hand => run_hand(args).await?,
        Role::Mqkit => run_mqkit(args).await?,
    };
    let end_mem = memory_kb();
    let cpu_s = IDLE
        .get()
        .map_or(0.0, |(_, cpu)| cpu_secs(std::process::id()) - cpu);
    let idle = IDLE.get().map_or(startup, |(m, _)| *m);
    let elapsed = FIRST
        .get()
        .map_or(0.0, |first| (end - *first).as_secs_f64());
    println!(
        "{}",
        json!({
            "role": role.name(),
            "handled": HANDLED.load(Ordering::Relaxed),
            "elapsed_s": elapsed,
            "cpu_s": cpu_s,
            "vm_hwm_kb": end_mem.hwm,
            "idle_rss_kb": idle.rss,
            "idle_rss_anon_kb": idle.anon,
            "idle_rss_file_kb": idle.file,
            "startup_rss_kb": startup.rss,
            "handled_at_startup": handled_at_startup,
            "end_rss_anon_kb": end_mem.anon,
            "end_rss_file_kb": end_mem.file,
            "followup_wait_s": followup_wait.as_secs_f64(),
        })
    );
    Ok(())
}

async fn wait_done() -> Result<(), BoxError> {
    tokio::time::timeout(CHILD_TIMEOUT, DONE.notified())
        .await
        .map_err(|_| format!("not all messages handled within {CHILD_TIMEOUT:?}").into())
}

/// How a consumer's run ended.
struct Stopped {
    /// Memory when it was connected and consuming.
    startup: Memory,
    /// Messages handled by then.
    handled_at_startup: u64,
    /// When it had closed gracefully.
    end: Instant,
    /// Variant (t), mqkit: from the last handler call until every
    /// follow-up was in its queue.
    followup_wait: Duration,
}

/// The mqkit consumer: the App builder, as a service would use it.
/// Variant (t)'s run ends once every follow-up is in its queue, since
/// mqkit acks a delivery before its relay publishes the follow-up.
async fn run_mqkit(args: &Args) -> Result<Stopped, BoxError> {
    let (queue, prefetch) = (args.queue.clone(), args.prefetch);
    let adjust = move |spec: &mut ConsumerSpec| {
        spec.rename_queue(queue);
        spec.prefetch = prefetch;
        spec.concurrency = prefetch;
    };
    let mut config = mqkit::Config::default();
    if args.variant.transactional() {
        config.database_url = Some(args.database_url.clone());
    }
    let mut app = mqkit::App::new().config(config).amqp_url(&args.amqp_url);
    if args.observe {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .init();
        app = app.http_addr("127.0.0.1:0");
    }
    let (app, followups) = if args.variant.transactional() {
        let followups = Followups::watch(args).await?;
        (transactional::mqkit_app(app, args, adjust), Some(followups))
    } else if args.variant.idempotent() {
        let app = app
            .redis_url(&args.redis_url)
            .consumer_with(bench_idem {}, adjust);
        (app, None)
    } else {
        (app.consumer_with(bench_plain {}, adjust), None)
    };
    let running = app.start().await?;
    let startup = memory_kb();
    let at_startup = HANDLED.load(Ordering::Relaxed);
    wait_done().await?;
    let mut followup_wait = Duration::ZERO;
    if let Some(followups) = &followups {
        let last_call = Instant::now();
        followups.wait_for(args.expect).await?;
        followup_wait = last_call.elapsed();
    }
    running.shutdown().await?;
    let end = Instant::now();
    if let Some(followups) = followups {
        followups.close().await;
    }
    Ok(Stopped {
        startup,
        handled_at_startup: at_startup,
        end,
        followup_wait,
    })
}

/// What the hand-written consumer's tasks share.
struct Hand {
    redis: Option<deadpool_redis::Pool>,
    /// Variant (t): the database and the follow-up channel.
    tx: Option<HandTx>,
    get_per_command: bool,
    key_prefix: String,
}

/// The hand-written consumer, as a careful lapin user writes it: manual
/// acks, `basic.qos(prefetch)`, handlers spawned up to the prefetch, acks
/// from the handler tasks, a graceful stop. Variant (t)'s handler is
/// [`transactional::handle_hand_tx`].
async fn run_hand(args: &Args) -> Result<Stopped, BoxError> {
    let queue = args.queue.as_str();
    let connection = Connection::connect(&args.amqp_url, ConnectionProperties::default()).await?;
    let channel = connection.create_channel().await?;
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            work_queue_arguments(queue),
        )
        .await?;
    channel
        .basic_qos(args.prefetch, BasicQosOptions::default())
        .await?;
    let redis = if args.variant.idempotent() {
        let mut cfg = deadpool_redis::Config::from_url(args.redis_url.as_str());
        cfg.pool = Some(deadpool_redis::PoolConfig::new(16));
        Some(cfg.create_pool(Some(deadpool_redis::Runtime::Tokio1))?)
    } else {
        None
    };
    let tx = if args.variant.transactional() {
        Some(HandTx::new(args, &connection).await?)
    } else {
        None
    };
    let hand = Arc::new(Hand {
        redis,
        tx,
        get_per_command: args.hand_get_per_command,
        key_prefix: format!("mqkit:idem:{queue}:"),
    });
    let tag = format!("hand.{}", std::process::id());
    let mut deliveries = channel
        .basic_consume(
            queue.into(),
            tag.as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let startup = memory_kb();
    let at_startup = HANDLED.load(Ordering::Relaxed);

    let permits = usize::from(args.prefetch);
    let slots = Arc::new(Semaphore::new(permits));
    let deadline = tokio::time::sleep(CHILD_TIMEOUT);
    tokio::pin!(deadline);
    loop {
        let permit = tokio::select! {
            biased;
            _ = DONE.notified() => break,
            _ = &mut deadline => return Err("timed out".into()),
            p = slots.clone().acquire_owned() => p?,
        };
        let delivery = tokio::select! {
            biased;
            _ = DONE.notified() => break,
            _ = &mut deadline => return Err("timed out".into()),
            d = deliveries.next() => d.ok_or("consumer cancelled by the broker")??,
        };
        let hand = hand.clone();
        tokio::spawn(async move {
            handle_hand(&hand, delivery).await;
            drop(permit);
        });
    }
    channel
        .basic_cancel(tag.as_str().into(), BasicCancelOptions::default())
        .await?;
    // Every handler task has finished (and acked) once all permits are back.
    let all = u32::try_from(permits)?;
    drop(slots.acquire_many(all).await?);
    if let Some(tx) = &hand.tx {
        tx.close().await;
    }
    channel.close(200, "OK".into()).await?;
    connection.close(200, "OK".into()).await?;
    Ok(Stopped {
        startup,
        handled_at_startup: at_startup,
        end: Instant::now(),
        followup_wait: Duration::ZERO,
    })
}

async fn handle_hand(hand: &Hand, delivery: Delivery) {
    if let Some(tx) = &hand.tx {
        return transactional::handle_hand_tx(tx, delivery).await;
    }
    let evt: OrderEvent = match serde_json::from_slice(&delivery.data) {
        Ok(evt) => evt,
        Err(_) => return reject(&delivery).await,
    };
    let Some(pool) = &hand.redis else {
        return if handle_order(&evt) {
            ack(&delivery).await
        } else {
            reject(&delivery).await
        };
    };
    let key = format!("{}{}:{}", hand.key_prefix, evt.order_id, evt.event_type);
    let Ok(mut conn) = pool.get().await else {
        return requeue(&delivery).await;
    };
    let claimed: Result<Value, _> = redis::cmd("SET")
        .arg(&key)
        .arg("processing")
        .arg("NX")
        .arg("EX")
        .arg(35)
        .query_async(&mut *conn)
        .await;
    match claimed {
        Ok(Value::Okay) => {}
        Ok(_) => return ack(&delivery).await, // done or busy elsewhere: not ours
        Err(_) => return requeue(&delivery).await,
    }
    if hand.get_per_command {
        // Back to the pool, and a fresh checkout (with deadpool's recycle
        // check) for the second command, as mqkit's RedisStore does.
        drop(conn);
        conn = match pool.get().await {
            Ok(c) => c,
            Err(_) => return requeue(&delivery).await,
        };
    }
    if handle_order(&evt) {
        let done: Result<(), _> = redis::cmd("SET")
            .arg(&key)
            .arg("done")
            .arg("EX")
            .arg(86_400)
            .query_async(&mut *conn)
            .await;
        drop(done); // the effect happened; ack regardless
        ack(&delivery).await;
    } else {
        let _: Result<(), _> = redis::cmd("DEL").arg(&key).query_async(&mut *conn).await;
        reject(&delivery).await;
    }
}

pub(crate) async fn ack(delivery: &Delivery) {
    let _ = delivery.ack(BasicAckOptions::default()).await;
}

pub(crate) async fn reject(delivery: &Delivery) {
    let _ = delivery
        .nack(BasicNackOptions {
            requeue: false,
            multiple: false,
        })
        .await;
}

pub(crate) async fn requeue(delivery: &Delivery) {
    let _ = delivery
        .nack(BasicNackOptions {
            requeue: true,
            multiple: false,
        })
        .await;
}

/// The work queue's arguments as mqkit declares them (so both consumers
/// consume the same kind of queue and either may declare it).
fn work_queue_arguments(queue: &str) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString("dlx".into()),
    );
    args.insert(
        "x-dead-letter-routing-key".into(),
        AMQPValue::LongString(format!("dlq.{queue}").into()),
    );
    args
}
