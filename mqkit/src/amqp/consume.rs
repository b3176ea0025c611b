//! The one consume loop, shared by the consumers and the dead-letter
//! archiver: its own channel with `basic.qos(prefetch)`, manual acks, at most
//! `concurrency` handlers at once (a free slot is taken before a delivery,
//! so none is taken that cannot start), and on stop `basic.cancel`, an
//! optional wait for in-flight handlers (those still running when it ends
//! are dropped), then the channel closes (unstarted prefetched and
//! abandoned deliveries go back to the queue).
//!
//! Entry point: [`consume`].

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use lapin::Connection;
use lapin::message::Delivery;
use lapin::options::{BasicCancelOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

/// Why a consume loop ended other than by `stop`.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConsumeError {
    /// The channel or connection went away: reconnect.
    #[error("{0}")]
    Lost(String),
    /// The broker refused to let us consume (access refused, no such queue).
    #[error("cannot start consuming queue `{queue}`: {source}")]
    Refused {
        /// The queue.
        queue: String,
        /// The broker's error.
        source: lapin::Error,
    },
}

/// What to consume and how.
#[derive(Debug, Clone)]
pub(crate) struct Consumption {
    /// The queue.
    pub(crate) queue: String,
    /// The consumer tag.
    pub(crate) tag: String,
    /// `basic.qos` prefetch count.
    pub(crate) prefetch: u16,
    /// Handlers at once.
    pub(crate) concurrency: u16,
}

/// Consumes `what` on a new channel of `connection` until `stop` is
/// cancelled or the channel fails, running `handle` for each delivery in its
/// own task. `ready` is called once the consumer is registered. On stop,
/// `grace()` says how long to wait for in-flight handlers (`None`: not at
/// all; they finish on their own, and their acks fail if the channel closed).
pub(crate) async fn consume<H, F>(
    connection: &Connection,
    what: &Consumption,
    stop: &CancellationToken,
    grace: impl FnOnce() -> Option<Duration>,
    ready: impl FnOnce(),
    handle: H,
) -> Result<(), ConsumeError>
where
    H: Fn(Delivery) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let queue = what.queue.as_str();
    let lost =
        |what: &str, e: lapin::Error| ConsumeError::Lost(format!("{what} on queue `{queue}`: {e}"));
    let channel = connection
        .create_channel()
        .await
        .map_err(|e| lost("cannot open a channel", e))?;
    channel
        .basic_qos(what.prefetch, BasicQosOptions { global: false })
        .await
        .map_err(|e| lost("basic.qos failed", e))?;
    let mut deliveries = channel
        .basic_consume(
            queue.into(),
            what.tag.as_str().into(),
            BasicConsumeOptions {
                no_ack: false,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(|e| match e.kind() {
            lapin::ErrorKind::ProtocolError(_) => ConsumeError::Refused {
                queue: queue.to_owned(),
                source: e,
            },
            _ => lost("basic.consume failed", e),
        })?;
    info!(
        queue,
        prefetch = what.prefetch,
        concurrency = what.concurrency,
        "consuming"
    );
    ready();

    let slots = Arc::new(Semaphore::new(usize::from(what.concurrency)));
    let tasks = TaskTracker::new();
    let abandon = CancellationToken::new();
    let result = loop {
        let permit = tokio::select! {
            biased;
            _ = stop.cancelled() => break Ok(()),
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break Ok(()),
            },
        };
        let next = tokio::select! {
            biased;
            _ = stop.cancelled() => break Ok(()),
            next = deliveries.next() => next,
        };
        match next {
            Some(Ok(delivery)) => {
                let work = handle(delivery);
                let abandon = abandon.clone();
                tasks.spawn(async move {
                    // Dropped (not finished) when a shutdown's grace period
                    // ends: nothing of it runs after the service stopped.
                    tokio::select! {
                        () = work => {}
                        () = abandon.cancelled() => {}
                    }
                    drop(permit);
                });
            }
            Some(Err(e)) => break Err(lost("consumer stream failed", e)),
            None => {
                break Err(ConsumeError::Lost(format!(
                    "consumer of queue `{queue}` was cancelled by the broker (queue deleted?)"
                )));
            }
        }
    };
    tasks.close();
    if channel.status().connected() {
        // Stop deliveries at once; prefetched but unstarted ones go back to
        // the queue when the channel closes.
        if let Err(e) = channel
            .basic_cancel(what.tag.as_str().into(), BasicCancelOptions::default())
            .await
        {
            warn!(queue, error = %e, "basic.cancel failed");
        }
        if let Some(grace) = grace() {
            if !tasks.is_empty() {
                info!(queue, in_flight = tasks.len(), grace = ?grace, "waiting for in-flight handlers");
            }
            if tokio::time::timeout(grace, tasks.wait()).await.is_err() {
                warn!(
                    queue,
                    abandoned = tasks.len(),
                    "grace period over; abandoning unfinished handlers unacked (the broker redelivers them)"
                );
                abandon.cancel();
                tasks.wait().await;
            }
        }
        if channel.status().connected() {
            let _ = channel.close(200, "OK".into()).await;
        }
    }
    result
}
