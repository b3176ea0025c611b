//! `mqkit dlq replay`: dead letters back to their original queue.
//!
//! For each message, from the head of the DLQ: `basic.get` (unacked); if
//! its kind is not selected, keep it; else publish the replayed copy (see
//! [`replay_properties`]) to its original queue on the default exchange,
//! `mandatory`, and wait for the confirm; only then ack it from the DLQ.
//! Kept and unroutable messages are requeued together at the end, in their
//! order. A crash at any point loses nothing: unacked messages return to
//! the DLQ when the connection drops, and a message published but not yet
//! acked is replayed twice at worst (the consumer's idempotency absorbs it).

use std::collections::BTreeMap;
use std::io::IsTerminal as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use lapin::Connection;
use lapin::options::{BasicAckOptions, BasicGetOptions, BasicNackOptions};

use super::inspect::plural;
use super::{CliError, ReplayArgs, amqp_error, open_queue};
use crate::addons::dlq::letter::{DeadLetter, replay_properties};
use crate::amqp::convert::properties_from;
use crate::amqp::publisher::BrokerPublisher;
use crate::core::publish::{PublishError, Publisher};

/// What a replay did.
#[derive(Debug, Default)]
struct Tally {
    /// Replayed (or, on a dry run, would be) per original queue.
    moved: BTreeMap<String, u64>,
    moved_total: u64,
    not_selected: u64,
    unroutable: u64,
    no_origin: u64,
}

pub(super) async fn replay(
    connection: &Arc<Connection>,
    vhost: &str,
    queue: &str,
    args: &ReplayArgs,
) -> Result<ExitCode, CliError> {
    let (depth, channel) = open_queue(connection, vhost, queue).await?;
    let amqp = amqp_error(queue);
    let broker = BrokerPublisher::new();
    broker.attach(connection.clone()).await;
    let publisher = Publisher::new(broker.clone());

    let limit = args.limit.unwrap_or(u64::MAX);
    let progress = progress_bar(limit.min(u64::from(depth)));
    let started = Instant::now();
    let mut tally = Tally::default();
    // The highest delivery tag still unacked: one nack(multiple) requeues all.
    let mut kept_up_to: Option<u64> = None;
    let mut failure = None;
    while tally.moved_total < limit {
        let message = match channel
            .basic_get(queue.into(), BasicGetOptions { no_ack: false })
            .await
        {
            Ok(Some(m)) => m,
            Ok(None) => break,
            Err(e) => {
                failure = Some(amqp("basic.get", e));
                break;
            }
        };
        let delivery = message.delivery;
        let tag = delivery.delivery_tag;
        let properties = properties_from(&delivery.properties);
        let letter = DeadLetter::read(&properties);
        if !args.kind.is_empty() && !args.kind.contains(&letter.error_kind) {
            tally.not_selected += 1;
            kept_up_to = Some(tag);
            continue;
        }
        let Some(target) = letter.original_queue.clone() else {
            tally.no_origin += 1;
            kept_up_to = Some(tag);
            progress.suspend(|| {
                eprintln!(
                    "left in {queue}: message {} has no x-mqkit-original-queue or x-death queue",
                    letter.message_id.as_deref().unwrap_or("(no id)")
                )
            });
            continue;
        };
        if args.dry_run {
            kept_up_to = Some(tag);
        } else {
            let properties = replay_properties(&properties);
            match publisher
                .publish_raw("", &target, &delivery.data, &properties, true)
                .await
            {
                Ok(()) => {
                    if let Err(e) = channel.basic_ack(tag, BasicAckOptions::default()).await {
                        // Published but not acked: it returns to the DLQ and
                        // a rerun replays it again (idempotency absorbs it).
                        failure = Some(amqp("basic.ack", e));
                        break;
                    }
                }
                Err(PublishError::Unroutable { reply_text, .. }) => {
                    tally.unroutable += 1;
                    kept_up_to = Some(tag);
                    progress.suspend(|| {
                        eprintln!(
                            "left in {queue}: message {} is unroutable to queue `{target}` ({reply_text}); does the queue still exist?",
                            letter.message_id.as_deref().unwrap_or("(no id)")
                        )
                    });
                    continue;
                }
                Err(source) => {
                    failure = Some(CliError::Publish { target, source });
                    break;
                }
            }
        }
        *tally.moved.entry(target).or_default() += 1;
        tally.moved_total += 1;
        progress.inc(1);
        if let Some(rate) = args.rate.filter(|r| *r > 0) {
            let due = started + Duration::from_secs_f64(tally.moved_total as f64 / f64::from(rate));
            tokio::time::sleep_until(due.into()).await;
        }
    }
    progress.finish_and_clear();
    if let Some(tag) = kept_up_to {
        let requeued = channel
            .basic_nack(
                tag,
                BasicNackOptions {
                    multiple: true,
                    requeue: true,
                },
            )
            .await;
        if let (Err(e), None) = (requeued, &failure) {
            failure = Some(amqp("requeueing kept messages (basic.nack)", e));
        }
    }
    broker.detach().await;
    if channel.status().connected() {
        let _ = channel.close(200, "OK".into()).await;
    }
    print_summary(queue, args, &tally, started.elapsed());
    if let Some(e) = failure {
        return Err(e);
    }
    Ok(if tally.unroutable + tally.no_origin > 0 {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    })
}

fn progress_bar(len: u64) -> ProgressBar {
    let target = if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(Some(len), target);
    if let Ok(style) =
        ProgressStyle::with_template("replaying {bar:40} {pos}/{len} ({per_sec}, eta {eta})")
    {
        bar.set_style(style);
    }
    bar
}

fn print_summary(queue: &str, args: &ReplayArgs, t: &Tally, elapsed: Duration) {
    let verb = if args.dry_run {
        "dry run: would replay"
    } else {
        "replayed"
    };
    println!(
        "{verb} {} message{} from {queue} in {:.1}s",
        t.moved_total,
        plural(t.moved_total),
        elapsed.as_secs_f64()
    );
    for (target, n) in &t.moved {
        println!("  {n:>8} -> {target}");
    }
    let kinds = args.kind.join("|");
    let kept: Vec<String> = [
        (t.not_selected, format!("not of kind {kinds}")),
        (t.unroutable, "unroutable".to_owned()),
        (t.no_origin, "without an original queue".to_owned()),
        (
            if args.dry_run { t.moved_total } else { 0 },
            "because of --dry-run".to_owned(),
        ),
    ]
    .into_iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, why)| format!("{n} {why}"))
    .collect();
    if !kept.is_empty() {
        println!("kept in {queue}: {}", kept.join(", "));
    }
}
