//! `mqkit dlq show` (look without consuming) and `mqkit dlq purge`.

use std::fmt::Write as _;
use std::io::Write as _;
use std::process::ExitCode;

use lapin::Connection;
use lapin::message::BasicGetMessage;
use lapin::options::{BasicGetOptions, BasicNackOptions, QueuePurgeOptions};

use super::{CliError, PurgeArgs, ShowArgs, amqp_error, open_queue};
use crate::addons::dlq::letter::{DeadLetter, headers_json};
use crate::amqp::convert::properties_from;
use crate::core::headers;

/// Body bytes shown per message.
const MAX_BODY_SHOWN: usize = 4096;

/// Takes the first `limit` messages with `basic.get` (unacked), prints them,
/// and requeues them all with one `basic.nack(multiple, requeue)`, so the
/// queue's depth and order are what they were.
pub(super) async fn show(
    connection: &Connection,
    vhost: &str,
    args: &ShowArgs,
) -> Result<ExitCode, CliError> {
    let queue = args.queue.as_str();
    let (depth, channel) = open_queue(connection, vhost, queue).await?;
    let amqp = amqp_error(queue);
    let mut taken: Vec<BasicGetMessage> = Vec::new();
    let mut failure = None;
    while taken.len() < usize::try_from(args.limit).unwrap_or(usize::MAX) {
        match channel
            .basic_get(queue.into(), BasicGetOptions { no_ack: false })
            .await
        {
            Ok(Some(m)) => taken.push(m),
            Ok(None) => break,
            Err(e) => {
                failure = Some(amqp("basic.get", e));
                break;
            }
        }
    }
    // Requeue before printing: a closed stdout must not keep them unacked
    // (closing the channel would return them anyway).
    if let Some(last) = taken.last() {
        channel
            .basic_nack(
                last.delivery.delivery_tag,
                BasicNackOptions {
                    multiple: true,
                    requeue: true,
                },
            )
            .await
            .map_err(|e| amqp("requeueing (basic.nack)", e))?;
    }
    if channel.status().connected() {
        let _ = channel.close(200, "OK".into()).await;
    }
    if let Some(e) = failure {
        return Err(e);
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{queue}: {depth} message{}; showing {} (left in the queue, order unchanged)",
        plural(u64::from(depth)),
        taken.len()
    );
    for (i, m) in taken.iter().enumerate() {
        describe(&mut out, i + 1, m);
    }
    let _ = std::io::stdout().lock().write_all(out.as_bytes());
    Ok(ExitCode::SUCCESS)
}

fn describe(out: &mut String, n: usize, m: &BasicGetMessage) {
    let p = properties_from(&m.delivery.properties);
    let d = DeadLetter::read(&p);
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "#{n}  message id: {}",
        d.message_id.as_deref().unwrap_or("-")
    );
    let _ = writeln!(
        out,
        "    original queue: {}",
        d.original_queue.as_deref().unwrap_or("-")
    );
    let _ = writeln!(out, "    error kind:     {}", d.error_kind);
    let _ = writeln!(out, "    error:          {}", d.error);
    let _ = writeln!(
        out,
        "    attempts:       {}",
        d.attempts
            .map(|a| a.to_string())
            .unwrap_or_else(|| "-".to_owned())
    );
    let _ = writeln!(out, "    failed at:      {}", d.failed_at_text());
    if d.replays > 0 {
        let _ = writeln!(out, "    replays:        {}", d.replays);
    }
    let mut other = headers_json(p.headers.as_ref());
    if let Some(map) = other.as_object_mut() {
        for h in [
            headers::ERROR,
            headers::ERROR_KIND,
            headers::ATTEMPTS,
            headers::ORIGINAL_QUEUE,
            headers::FAILED_AT,
        ] {
            map.remove(h);
        }
        if !map.is_empty() {
            let _ = writeln!(out, "    other headers:  {other}");
        }
    }
    let body = &m.delivery.data;
    let shown = &body[..body.len().min(MAX_BODY_SHOWN)];
    let text = match std::str::from_utf8(shown) {
        Ok(s) => s.to_owned(),
        Err(_) => format!("(not UTF-8) {}", String::from_utf8_lossy(shown)),
    };
    let more = if body.len() > MAX_BODY_SHOWN {
        format!(" … ({} more bytes)", body.len() - MAX_BODY_SHOWN)
    } else {
        String::new()
    };
    let _ = writeln!(out, "    body ({} bytes): {text}{more}", body.len());
}

/// Purges the queue; refuses without `--yes`.
pub(super) async fn purge(
    connection: &Connection,
    vhost: &str,
    args: &PurgeArgs,
) -> Result<ExitCode, CliError> {
    let queue = args.queue.as_str();
    let (depth, channel) = open_queue(connection, vhost, queue).await?;
    if !args.yes {
        return Err(CliError::PurgeNeedsYes {
            queue: queue.to_owned(),
            depth,
        });
    }
    let amqp = amqp_error(queue);
    let purged = channel
        .queue_purge(queue.into(), QueuePurgeOptions::default())
        .await
        .map_err(|e| amqp("queue.purge", e))?;
    if channel.status().connected() {
        let _ = channel.close(200, "OK".into()).await;
    }
    println!(
        "purged {purged} message{} from {queue}",
        plural(purged.into())
    );
    Ok(ExitCode::SUCCESS)
}

pub(super) fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}
