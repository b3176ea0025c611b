//! Each consumer recovers on its own: a queue deleted under a running
//! consumer (the broker sends `basic.cancel`) is declared and consumed again
//! while the other consumer of the same connection is never interrupted.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use lapin::BasicProperties;
use lapin::options::QueueDeleteOptions;
use mqkit::{App, Consumer, HandlerError};
use serde::Deserialize;

use crate::common::{self, Broker, Cleanup, eventually, isolate};

#[derive(Debug, Deserialize)]
struct Event {
    id: String,
}

static DELETED: Mutex<Vec<String>> = Mutex::new(Vec::new());
static STEADY: Mutex<Vec<String>> = Mutex::new(Vec::new());

#[mqkit::consumer(queue = "recovery-deleted")]
async fn deleted(e: Event) -> Result<(), HandlerError> {
    DELETED.lock().unwrap().push(e.id);
    Ok(())
}

#[mqkit::consumer(queue = "recovery-steady")]
async fn steady(e: Event) -> Result<(), HandlerError> {
    STEADY.lock().unwrap().push(e.id);
    Ok(())
}

fn body(id: &str) -> Vec<u8> {
    format!(r#"{{"id":"{id}"}}"#).into_bytes()
}

/// Publishes `id` to the `deleted` consumer's queue and waits until it has
/// handled `count` messages in all.
async fn handled_by_deleted(broker: &Broker, queue: &str, id: &str, count: usize) {
    broker
        .publish(queue, &body(id), BasicProperties::default())
        .await;
    assert!(
        eventually(Duration::from_secs(10), async || {
            DELETED.lock().unwrap().len() == count
        })
        .await,
        "{id} was not handled"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_deleted_under_its_consumer_is_declared_and_consumed_again_within_5s() {
    let mut a = Consumer::spec(&deleted {});
    isolate(&mut a, "recovery-deleted");
    let mut b = Consumer::spec(&steady {});
    isolate(&mut b, "recovery-steady");
    let _cleanup = Cleanup::specs(&[&a, &b]);
    let (sa, sb) = (a.clone(), b.clone());
    let running = App::new()
        .amqp_url(common::AMQP_URL)
        .consumer_with(deleted {}, move |x| *x = sa)
        .consumer_with(steady {}, move |x| *x = sb)
        .start()
        .await
        .unwrap();
    let broker = Broker::connect().await;
    handled_by_deleted(&broker, &a.queue, "a-before", 1).await;

    // The steady consumer gets a message every 50 ms throughout.
    let steady_queue = b.queue.to_string();
    let feeder = tokio::spawn(async move {
        let broker = Broker::connect().await;
        for i in 0..120 {
            broker
                .publish(
                    &steady_queue,
                    &body(&format!("b-{i}")),
                    BasicProperties::default(),
                )
                .await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let steady_channel = consumer_channel(&b.queue);

    let deleted_at = Instant::now();
    broker
        .channel
        .queue_delete(a.queue.as_ref().into(), QueueDeleteOptions::default())
        .await
        .unwrap();
    assert!(
        eventually(Duration::from_secs(5), async || {
            broker.consumers(&a.queue).await == Some(1)
        })
        .await,
        "the consumer of the deleted queue did not consume again within 5 s"
    );
    let back_after = deleted_at.elapsed();
    println!("consuming the re-declared queue again {back_after:?} after it was deleted");

    handled_by_deleted(&broker, &a.queue, "a-after", 2).await;
    assert_eq!(*DELETED.lock().unwrap(), ["a-before", "a-after"]);

    feeder.await.unwrap();
    assert!(
        eventually(Duration::from_secs(10), async || STEADY
            .lock()
            .unwrap()
            .len()
            == 120)
        .await
    );
    // Never interrupted: the same channel consumes it as before the
    // deletion (a reconnect or a new consume would be a new channel), and
    // every message came once.
    assert_eq!(consumer_channel(&b.queue), steady_channel);
    let steady = STEADY.lock().unwrap().clone();
    // Handlers run concurrently, so in any order.
    let mut steady = steady;
    steady.sort();
    let mut expected: Vec<String> = (0..120).map(|i| format!("b-{i}")).collect();
    expected.sort();
    assert_eq!(steady, expected);
    running.shutdown().await.unwrap();
}

/// The channel (its Erlang pid) that consumes `queue` on the default node.
fn consumer_channel(queue: &str) -> String {
    let rows: Vec<serde_json::Value> = serde_json::from_str(&common::rabbitmqctl(&[
        "list_consumers",
        "queue_name",
        "channel_pid",
    ]))
    .unwrap();
    let channels: Vec<String> = rows
        .iter()
        .filter(|r| r["queue_name"] == queue)
        .map(|r| r["channel_pid"].to_string())
        .collect();
    assert_eq!(channels.len(), 1, "consumers of {queue}: {channels:?}");
    channels[0].clone()
}
