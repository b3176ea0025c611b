//! The table on stdout and the JSON file.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;

use crate::parent::{Run, redis_summary};
use crate::{Args, BoxError, Role};

/// Median, min, max.
fn stats(xs: &[f64]) -> (f64, f64, f64) {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let median = match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    };
    (
        median,
        v.first().copied().unwrap_or(f64::NAN),
        v.last().copied().unwrap_or(f64::NAN),
    )
}

pub(crate) fn report(
    args: &Args,
    runs: &[Run],
    took: Duration,
    load: [String; 2],
) -> Result<(), BoxError> {
    let mib = |kb: u64| kb as f64 / 1024.0;
    println!(
        "\n{} messages x {} rounds per consumer and variant; throughput = N / (first handler call .. graceful close after the last ack)\n",
        args.messages, args.rounds
    );
    println!(
        "{:<36} {:<6} {:>9} {:>9} {:>9} {:>11} {:>9} {:>9} {:>8} {:>8} {:>8} {:>8}",
        "variant",
        "who",
        "median/s",
        "min/s",
        "max/s",
        "mqkit/hand",
        "peak MiB",
        "idle MiB",
        "cpu µs",
        "rmq µs",
        "redis µs",
        "pg µs"
    );
    let mut variants = Vec::new();
    for &variant in &args.variants {
        let mut per_role = serde_json::Map::new();
        let mut medians = Vec::new();
        for role in [Role::Hand, Role::Mqkit] {
            let mine: Vec<&Run> = runs
                .iter()
                .filter(|r| r.variant == variant.name() && r.role == role.name())
                .collect();
            let rates: Vec<f64> = mine.iter().map(|r| r.msgs_per_sec).collect();
            let (median, min, max) = stats(&rates);
            let peak = mine.iter().map(|r| r.vm_hwm_kb).max().unwrap_or(0);
            let idle = mine.iter().map(|r| r.idle_rss_kb).max().unwrap_or(0);
            // Median CPU microseconds per message: consumer, RabbitMQ, Redis,
            // PostgreSQL.
            let per_msg = |f: fn(&Run) -> f64| {
                let xs: Vec<f64> = mine.iter().map(|r| f(r) * 1e6 / r.handled as f64).collect();
                stats(&xs).0
            };
            let followup_wait =
                stats(&mine.iter().map(|r| r.followup_wait_s).collect::<Vec<_>>()).0;
            let cpu = [
                per_msg(|r| r.cpu_s),
                per_msg(|r| r.broker_cpu_s),
                per_msg(|r| r.redis_cpu_s),
                per_msg(|r| r.postgres_cpu_s),
            ];
            medians.push(median);
            let ratio = if role == Role::Mqkit {
                format!("{:.3}", median / medians[0])
            } else {
                String::new()
            };
            let label = format!("({}) {}", variant.name(), variant.describe());
            println!(
                "{:<36} {:<6} {median:>9.0} {min:>9.0} {max:>9.0} {ratio:>11} {:>9.1} {:>9.1} {:>8.1} {:>8.1} {:>8.1} {:>8.1}",
                if role == Role::Hand {
                    label.as_str()
                } else {
                    ""
                },
                role.name(),
                mib(peak),
                mib(idle),
                cpu[0],
                cpu[1],
                cpu[2],
                cpu[3]
            );
            per_role.insert(
                role.name().to_owned(),
                json!({
                    "msgs_per_sec": {"median": median, "min": min, "max": max, "rounds": rates},
                    "peak_rss_kb": peak,
                    "idle_rss_kb": idle,
                    "cpu_us_per_msg": {"consumer": cpu[0], "rabbitmq": cpu[1], "redis": cpu[2], "postgres": cpu[3]},
                    "followup_wait_s_median": followup_wait,
                }),
            );
        }
        variants.push(json!({
            "variant": variant.name(),
            "description": variant.describe(),
            "prefetch": variant.prefetch(),
            "idempotency": variant.idempotent(),
            "transactional": variant.transactional(),
            "hand": per_role.get("hand"),
            "mqkit": per_role.get("mqkit"),
            "ratio_median_mqkit_over_hand": medians[1] / medians[0],
        }));
    }
    if args.variants.iter().any(|v| v.transactional()) {
        let waits: Vec<f64> = runs
            .iter()
            .filter(|r| r.variant == "t" && r.role == Role::Mqkit.name())
            .map(|r| r.followup_wait_s)
            .collect();
        println!(
            "variant (t) mqkit: the clock runs until every follow-up is in its queue (mqkit acks before its relay publishes), median {:.2}s after the last handler call",
            stats(&waits).0
        );
    }
    for role in [Role::Hand, Role::Mqkit] {
        if let Some(r) = runs
            .iter()
            .rfind(|r| r.role == role.name() && !r.redis_calls_per_msg.is_empty())
        {
            println!(
                "variant ({}) {}:{}",
                r.variant,
                role.name(),
                redis_summary(&r.redis_calls_per_msg)
            );
        }
    }
    println!(
        "\ntook {:.1}s; load average before {}, after {}",
        took.as_secs_f64(),
        load[0],
        load[1]
    );
    let out = match &args.out {
        Some(p) => p.clone(),
        None => default_out()?,
    };
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let doc = json!({
        "messages": args.messages,
        "rounds": args.rounds,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "took_s": took.as_secs_f64(),
        "loadavg_before": load[0],
        "loadavg_after": load[1],
        "throughput": "messages / seconds from the first handler call to the graceful close after the last ack",
        "cpu": "median over rounds of user+system CPU microseconds per message from /proc/<pid>/stat (1/100 s ticks), of the consumer process, RabbitMQ (beam.smp), redis-server and PostgreSQL (every postgres process, plus the postmaster's reaped children, so backends that ended count) during the consumer's run",
        "rss": "peak = max VmHWM over rounds; idle = max over rounds of VmRSS at the first handler call (connected and consuming, nothing handled yet); startup_rss_kb per run = VmRSS when App::start / basic_consume returned (mqkit may have handled handled_at_startup messages by then)",
        "variants": variants,
        "runs": runs,
    });
    std::fs::write(&out, serde_json::to_string_pretty(&doc)? + "\n")?;
    println!("wrote {}", out.display());
    Ok(())
}

/// `target/bench/consumer.json` in the target directory this binary was
/// built in (`target/<profile>/examples/bench_consumer`).
fn default_out() -> Result<PathBuf, BoxError> {
    let exe = std::env::current_exe()?;
    let target = exe
        .ancestors()
        .nth(3)
        .filter(|_| exe.parent().and_then(|p| p.file_name()) == Some("examples".as_ref()))
        .map_or_else(|| PathBuf::from("target"), PathBuf::from);
    Ok(target.join("bench").join("consumer.json"))
}
