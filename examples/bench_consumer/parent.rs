//! The parent process: per variant, round and consumer a fresh queue,
//! the prefill, the child, the cleanup; then the report.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use deadpool_redis::redis;
use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use serde::{Deserialize, Serialize};

use crate::child::{CHILD_TIMEOUT, topology_spec};
use crate::procfs::{cpu_secs, loadavg, postgres_cpu_secs};
use crate::transactional::{Database, followup_queue};
use crate::{Args, BoxError, OrderEvent, Role, Variant};

/// One child's report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Run {
    #[serde(default)]
    pub(crate) variant: String,
    #[serde(default)]
    pub(crate) round: usize,
    pub(crate) role: String,
    pub(crate) handled: u64,
    pub(crate) elapsed_s: f64,
    /// The consumer's user + system CPU time over `elapsed_s`.
    pub(crate) cpu_s: f64,
    /// RabbitMQ's (`beam.smp`) and Redis's CPU time during the child's run.
    #[serde(default)]
    pub(crate) broker_cpu_s: f64,
    #[serde(default)]
    pub(crate) redis_cpu_s: f64,
    /// PostgreSQL's CPU time during the child's run (all `postgres`
    /// processes, including backends that ended).
    #[serde(default)]
    pub(crate) postgres_cpu_s: f64,
    #[serde(default)]
    pub(crate) msgs_per_sec: f64,
    pub(crate) vm_hwm_kb: u64,
    pub(crate) idle_rss_kb: u64,
    pub(crate) idle_rss_anon_kb: u64,
    pub(crate) idle_rss_file_kb: u64,
    pub(crate) startup_rss_kb: u64,
    pub(crate) handled_at_startup: u64,
    pub(crate) end_rss_anon_kb: u64,
    pub(crate) end_rss_file_kb: u64,
    /// Variant t, mqkit: seconds from the last handler call until every
    /// follow-up was in its queue (mqkit acks before its relay publishes;
    /// included in `elapsed_s`).
    #[serde(default)]
    pub(crate) followup_wait_s: f64,
    #[serde(default)]
    pub(crate) prefill_s: f64,
    /// Redis commands per message during the run (variant c), from
    /// `INFO commandstats`.
    #[serde(default)]
    pub(crate) redis_calls_per_msg: std::collections::BTreeMap<String, f64>,
}

/// Publishes in flight before waiting for the oldest confirm.
const CONFIRM_WINDOW: usize = 2_000;

pub(crate) async fn parent(args: &Args) -> Result<(), BoxError> {
    let started = Instant::now();
    let load_before = loadavg();
    let connection = Connection::connect(&args.amqp_url, ConnectionProperties::default()).await?;
    let publish = connection.create_channel().await?;
    publish
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let redis = deadpool_redis::Config::from_url(args.redis_url.as_str())
        .create_pool(Some(deadpool_redis::Runtime::Tokio1))?;
    let database = if args.variants.iter().any(|v| v.transactional()) {
        let tag = std::process::id().to_string();
        Some(Database::create(&args.database_url, &tag).await?)
    } else {
        None
    };
    let bench = Bench {
        args,
        connection: &connection,
        publish: &publish,
        redis: &redis,
        database: database.as_ref(),
    };
    let runs = bench.all().await;
    if let Some(database) = &database
        && let Err(e) = database.drop_tables().await
    {
        eprintln!("bench_consumer: cannot drop variant t's tables: {e}");
    }
    let runs = runs?;
    connection.close(200, "OK".into()).await?;
    crate::report::report(args, &runs, started.elapsed(), [load_before, loadavg()])
}

/// What every run uses.
struct Bench<'a> {
    args: &'a Args,
    connection: &'a Connection,
    publish: &'a Channel,
    redis: &'a deadpool_redis::Pool,
    /// Variant t's tables, when it runs.
    database: Option<&'a Database>,
}

impl Bench<'_> {
    /// Every variant, round and consumer.
    async fn all(&self) -> Result<Vec<Run>, BoxError> {
        let mut runs = Vec::new();
        let mut counter = 0u32;
        for &variant in &self.args.variants {
            for round in 1..=self.args.rounds {
                for role in [Role::Hand, Role::Mqkit] {
                    counter += 1;
                    let mut run = self.one(variant, role, counter).await?;
                    run.round = round;
                    let lag = if run.followup_wait_s > 0.0 {
                        format!(
                            "  follow-ups {:.2}s after the last call",
                            run.followup_wait_s
                        )
                    } else {
                        String::new()
                    };
                    eprintln!(
                        "({}) round {round} {:<5}: {:>8.0} msgs/s  elapsed {:.2}s  peak {} KiB  idle {} KiB  (prefill {:.2}s){}{lag}",
                        run.variant,
                        run.role,
                        run.msgs_per_sec,
                        run.elapsed_s,
                        run.vm_hwm_kb,
                        run.idle_rss_kb,
                        run.prefill_s,
                        redis_summary(&run.redis_calls_per_msg)
                    );
                    runs.push(run);
                }
            }
        }
        Ok(runs)
    }

    /// One consumer's run on a fresh queue: declare, fill, run the child,
    /// clean up, check.
    async fn one(&self, variant: Variant, role: Role, counter: u32) -> Result<Run, BoxError> {
        let args = self.args;
        let queue = format!(
            "mqkit.bench.{}.{counter}.{}.{}",
            std::process::id(),
            variant.name(),
            role.name()
        );
        let spec = topology_spec(&queue);
        mqkit::declare_topology(&args.amqp_url, &spec).await?;
        let mut plan = spec.declared_queues();
        let database = match self.database {
            Some(db) if variant.transactional() => {
                db.reset().await?;
                let followups = followup_queue(&queue);
                self.publish
                    .queue_declare(
                        followups.as_str().into(),
                        QueueDeclareOptions {
                            durable: true,
                            ..QueueDeclareOptions::default()
                        },
                        FieldTable::default(),
                    )
                    .await?;
                plan.push(followups);
                Some(db)
            }
            _ => None,
        };
        let prefill = Instant::now();
        fill(self.publish, &queue, args.messages, counter).await?;
        let prefill_s = prefill.elapsed().as_secs_f64();
        let before = redis_calls(self.redis).await?;
        let servers = server_pids(self.redis).await?;
        let servers_cpu = servers.map(cpu_secs);
        let postgres_cpu = postgres_cpu_secs();
        let result = run_child(args, role, variant, &queue).await;
        let postgres_cpu = postgres_cpu_secs() - postgres_cpu;
        let after = redis_calls(self.redis).await?;
        let servers_cpu = [0, 1].map(|i| cpu_secs(servers[i]) - servers_cpu[i]);
        let mut cleaned = cleanup(self.connection, &plan, self.redis, &queue).await;
        if cleaned.is_err() {
            // The broker dropped our connection (e.g. restarted): still
            // leave no queue behind.
            let fresh =
                Connection::connect(&args.amqp_url, ConnectionProperties::default()).await?;
            cleaned = cleanup(&fresh, &plan, self.redis, &queue).await;
            let _ = fresh.close(200, "OK".into()).await;
        }
        // Also deletes mqkit's inbox and outbox rows of the queue.
        let checked = match database {
            Some(db) => db.check(&queue, role, args.messages).await,
            None => Ok(()),
        };
        let mut run = result?;
        let Cleaned {
            left,
            dead,
            followups,
            keys,
        } = cleaned?;
        if run.handled != args.messages || left != 0 || dead != 0 {
            return Err(format!(
                "{queue}: handled {} of {}, {left} left in the queue, {dead} dead-lettered",
                run.handled, args.messages
            )
            .into());
        }
        if variant.idempotent() && keys != args.messages {
            return Err(format!(
                "{queue}: {keys} idempotency keys, expected {}",
                args.messages
            )
            .into());
        }
        if variant.transactional() && u64::from(followups) != args.messages {
            let mut error = format!(
                "{queue}: {followups} follow-ups in {}, expected {}",
                followup_queue(&queue),
                args.messages
            );
            if let Err(e) = checked {
                error = format!("{error}; {e}");
            }
            return Err(error.into());
        }
        checked?;
        run.variant = variant.name().to_owned();
        run.prefill_s = prefill_s;
        if variant.idempotent() {
            for (cmd, n) in after {
                let d = n - before.get(&cmd).copied().unwrap_or(0);
                if d > 0 && cmd != "info" {
                    run.redis_calls_per_msg
                        .insert(cmd, d as f64 / args.messages as f64);
                }
            }
        }
        run.msgs_per_sec = args.messages as f64 / run.elapsed_s;
        [run.broker_cpu_s, run.redis_cpu_s] = servers_cpu;
        run.postgres_cpu_s = postgres_cpu;
        Ok(run)
    }
}

/// N persistent order events, confirms pipelined.
async fn fill(channel: &Channel, queue: &str, n: u64, run: u32) -> Result<(), BoxError> {
    let properties = BasicProperties::default()
        .with_content_type("application/json".into())
        .with_delivery_mode(2);
    let mut pending = VecDeque::with_capacity(CONFIRM_WINDOW);
    for i in 0..n {
        let mut evt = OrderEvent {
            order_id: format!("ord-{run:04}-{i:08}"),
            event_type: ["created", "paid", "shipped"][(i % 3) as usize].to_owned(),
            amount_cents: (i % 100_000) as i64,
            currency: "EUR".to_owned(),
            note: String::new(),
        };
        let bare = serde_json::to_vec(&evt)?.len();
        evt.note = "x".repeat(250usize.saturating_sub(bare));
        let body = serde_json::to_vec(&evt)?;
        let confirm = channel
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions::default(),
                &body,
                properties.clone().with_message_id(evt.order_id.into()),
            )
            .await?;
        pending.push_back(confirm);
        if pending.len() >= CONFIRM_WINDOW
            && let Some(oldest) = pending.pop_front()
        {
            confirmed(oldest.await?)?;
        }
    }
    for confirm in pending {
        confirmed(confirm.await?)?;
    }
    Ok(())
}

fn confirmed(c: lapin::Confirmation) -> Result<(), BoxError> {
    if c.is_ack() {
        Ok(())
    } else {
        Err("the broker nacked a prefill publish".into())
    }
}

async fn run_child(
    args: &Args,
    role: Role,
    variant: Variant,
    queue: &str,
) -> Result<Run, BoxError> {
    let exe = std::env::current_exe()?;
    let child = tokio::process::Command::new(exe)
        .args([
            "--role",
            role.name(),
            "--queue",
            queue,
            "--variant",
            variant.name(),
        ])
        .args(["--prefetch", &variant.prefetch().to_string()])
        .args(["--expect", &args.messages.to_string()])
        .args(["--amqp-url", &args.amqp_url, "--redis-url", &args.redis_url])
        .args(["--database-url", &args.database_url])
        .args(["--tables", &std::process::id().to_string()])
        .args(if args.hand_get_per_command {
            &["--hand-redis-get", "per-command"][..]
        } else {
            &[]
        })
        .args(if args.observe {
            &["--observe"][..]
        } else {
            &[]
        })
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let output = tokio::time::timeout(
        CHILD_TIMEOUT + Duration::from_secs(30),
        child.wait_with_output(),
    )
    .await
    .map_err(|_| format!("{} child on {queue} did not finish", role.name()))??;
    if !output.status.success() {
        return Err(format!("{} child on {queue} failed: {}", role.name(), output.status).into());
    }
    let stdout = String::from_utf8(output.stdout)?;
    let line = stdout.lines().last().ok_or("child printed nothing")?;
    Ok(serde_json::from_str(line)?)
}

/// `  Redis/msg: set 2.00 ping 1.00 …`, or nothing.
pub(crate) fn redis_summary(calls: &std::collections::BTreeMap<String, f64>) -> String {
    if calls.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = calls.iter().map(|(c, n)| format!("{c} {n:.2}")).collect();
    format!("  Redis/msg: {}", parts.join(" "))
}

/// Calls per Redis command so far (`INFO commandstats`).
async fn redis_calls(
    redis: &deadpool_redis::Pool,
) -> Result<std::collections::BTreeMap<String, u64>, BoxError> {
    let mut conn = redis.get().await?;
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut *conn)
        .await?;
    Ok(info
        .lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(":calls=")?;
            let calls = rest.split(',').next()?.parse().ok()?;
            Some((name.to_owned(), calls))
        })
        .collect())
}

/// What a run left behind (and cleanup deleted).
struct Cleaned {
    /// Messages left in the work queue.
    left: u32,
    /// Messages in the DLQ.
    dead: u32,
    /// Messages in the follow-up queue (variant t).
    followups: u32,
    /// Idempotency keys in Redis.
    keys: u64,
}

/// Deletes the consumer's queues (work, DLQ, delay, follow-ups) and its
/// idempotency keys.
async fn cleanup(
    connection: &Connection,
    plan: &[String],
    redis: &deadpool_redis::Pool,
    queue: &str,
) -> Result<Cleaned, BoxError> {
    let channel = connection.create_channel().await?;
    let (mut left, mut dead, mut followups) = (0, 0, 0);
    let followup = followup_queue(queue);
    for q in plan {
        let n = channel
            .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
            .await?;
        if q == queue {
            left = n;
        } else if *q == followup {
            followups = n;
        } else if q.starts_with("dlq.") {
            dead = n;
        }
    }
    channel.close(200, "OK".into()).await?;
    let mut conn = redis.get().await?;
    let pattern = format!("mqkit:idem:{queue}:*");
    let (mut cursor, mut deleted) = (0u64, 0u64);
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(10_000)
            .query_async(&mut *conn)
            .await?;
        if !keys.is_empty() {
            let n: u64 = redis::cmd("UNLINK")
                .arg(&keys)
                .query_async(&mut *conn)
                .await?;
            deleted += n;
        }
        if next == 0 {
            break;
        }
        cursor = next;
    }
    Ok(Cleaned {
        left,
        dead,
        followups,
        keys: deleted,
    })
}

/// The pids of RabbitMQ (`beam.smp`) and Redis (from `INFO server`), to
/// account for their CPU time; 0 when not found (then their CPU reads 0).
async fn server_pids(redis: &deadpool_redis::Pool) -> Result<[u32; 2], BoxError> {
    let beam = std::fs::read_dir("/proc")?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "beam.smp")
        })
        .unwrap_or(0);
    let mut conn = redis.get().await?;
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(&mut *conn)
        .await?;
    let redis_pid = info
        .lines()
        .find_map(|l| l.strip_prefix("process_id:"))
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or(0);
    Ok([beam, redis_pid])
}
