//! A service on a three-node cluster: `kill -9` of the node it is connected
//! to (also the home of its classic queues) while a quorum queue is being
//! consumed, then `kill -STOP` of the node it moved to.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Confirmation, Connection, ConnectionProperties};
use mqkit::{App, Config, ConnectionState, Consumer, Context, HandlerError};
use serde::Deserialize;

use crate::common::{Broker, Cleanup, REDIS_URL, eventually, isolate, unique};
use crate::nodes::{Cluster, Node, url_list};

#[derive(Debug, Deserialize)]
struct Event {
    key: String,
}

/// Effects per key of the quorum consumer.
static EFFECTS: Mutex<Option<HashMap<String, u32>>> = Mutex::new(None);
static TOTAL: AtomicUsize = AtomicUsize::new(0);
/// Closed until every message is published, so the kill comes mid-stream.
static GATE: AtomicBool = AtomicBool::new(false);
static CLASSIC: AtomicUsize = AtomicUsize::new(0);

const PREFETCH: u16 = 20;

#[mqkit::consumer(
    queue = "cluster-work",
    queue_type = "quorum",
    idempotency = "key",
    prefetch = 20,
    retry_delay = "200ms",
    max_retries = 5
)]
async fn work(e: Event, ctx: Context) -> Result<(), HandlerError> {
    while !GATE.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Keys `retry-*` fail their first attempt: their retry goes through a
    // (quorum) delay queue while a node is down.
    if e.key.starts_with("retry-") && ctx.attempt() == 1 {
        return Err(HandlerError::retry("first attempts of retry-* fail"));
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
    *EFFECTS
        .lock()
        .unwrap()
        .get_or_insert_default()
        .entry(e.key)
        .or_default() += 1;
    TOTAL.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

#[mqkit::consumer(queue = "cluster-classic-1")]
async fn classic_one(_e: Event) -> Result<(), HandlerError> {
    CLASSIC.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

#[mqkit::consumer(queue = "cluster-classic-2")]
async fn classic_two(_e: Event) -> Result<(), HandlerError> {
    CLASSIC.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

fn body(key: &str) -> Vec<u8> {
    format!(r#"{{"key":"{key}"}}"#).into_bytes()
}

/// Publishes every body to `queue` through `url`, persistent and
/// confirmed; what is nacked, fails or is not confirmed within 10 s of its
/// batch (a quorum leader being elected) is published again on a new
/// channel until all are confirmed (at most 120 s).
async fn publish_all(url: &str, queue: &str, keys: &[String]) {
    let connection = Connection::connect(url, ConnectionProperties::default())
        .await
        .unwrap();
    let mut pending: Vec<&String> = keys.iter().collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !pending.is_empty() {
        assert!(
            Instant::now() < deadline,
            "{} messages never confirmed",
            pending.len()
        );
        let channel = connection.create_channel().await.unwrap();
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        let mut failed = Vec::new();
        for batch in pending.chunks(500) {
            // One deadline for the batch's confirms: a channel that
            // published during a quorum leader election may answer none.
            let answer_by = tokio::time::Instant::now() + Duration::from_secs(10);
            let mut confirms = Vec::new();
            for key in batch {
                let sent = channel
                    .basic_publish(
                        "".into(),
                        queue.into(),
                        BasicPublishOptions::default(),
                        &body(key),
                        BasicProperties::default().with_delivery_mode(2),
                    )
                    .await;
                confirms.push((*key, sent));
            }
            for (key, sent) in confirms {
                let ok = match sent {
                    Ok(confirm) => matches!(
                        tokio::time::timeout_at(answer_by, confirm).await,
                        Ok(Ok(Confirmation::Ack(None)))
                    ),
                    Err(_) => false,
                };
                if !ok {
                    failed.push(key);
                }
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), channel.close(200, "OK".into())).await;
        if !failed.is_empty() {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        pending = failed;
    }
    let _ = connection.close(200, "OK".into()).await;
}

/// The node the service's connection (named `name`) is on, asked of `via`.
fn connected_node(cluster: &Cluster, via: Node, name: &str) -> Option<Node> {
    let found = cluster.connections(via, name);
    assert!(
        found.len() <= 1,
        "more than one connection named {name}: {found:?}"
    );
    found.first().map(|(n, _)| *n)
}

async fn wait_for_state(
    running: &mqkit::Running,
    state: ConnectionState,
    within: Duration,
) -> bool {
    let mut watch = running.watch_state();
    tokio::time::timeout(within, watch.wait_for(|s| *s == state))
        .await
        .is_ok_and(|r| r.is_ok())
}

fn effects() -> HashMap<String, u32> {
    EFFECTS.lock().unwrap().clone().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_survives_kill_9_and_kill_stop_of_its_node() {
    // The service's log goes to the test's output (shown when it fails).
    let _ = tracing_subscriber::fmt()
        .with_env_filter("info")
        .with_test_writer()
        .try_init();
    let cluster = Cluster::up();
    // A step that hangs fails the test (and the guard stops the cluster)
    // instead of holding CI.
    let within = Duration::from_secs(480);
    if tokio::time::timeout(within, failover(&cluster))
        .await
        .is_err()
    {
        panic!("the cluster test did not finish within {within:?}");
    }
}

async fn failover(cluster: &Cluster) {
    let heartbeat = Duration::from_secs(2);

    let mut work_spec = Consumer::spec(&work {});
    isolate(&mut work_spec, "cluster-work");
    let mut one = Consumer::spec(&classic_one {});
    isolate(&mut one, "cluster-classic-1");
    let mut two = Consumer::spec(&classic_two {});
    isolate(&mut two, "cluster-classic-2");
    // The queues go with the cluster; the idempotency keys are the shared
    // Redis's.
    let _keys = Cleanup {
        specs: Vec::new(),
        queues: Vec::new(),
        keys: vec![format!("mqkit:idem:{}:*", work_spec.queue)],
    };
    let name = unique("cluster-service");
    let config = Config {
        amqp_urls: url_list().split(',').map(str::to_owned).collect(),
        redis_url: Some(REDIS_URL.to_owned()),
        heartbeat,
        connection_name: name.clone(),
        ..Config::default()
    };
    let (w, o, t) = (work_spec.clone(), one.clone(), two.clone());
    let running = App::new()
        .config(config)
        .shutdown_grace(Duration::from_secs(5))
        .consumer_with(work {}, move |x| *x = w)
        .consumer_with(classic_one {}, move |x| *x = o)
        .consumer_with(classic_two {}, move |x| *x = t)
        .start()
        .await
        .unwrap();
    let first = connected_node(cluster, Node::A, &name).expect("the service's connection");
    let other = Node::ALL.into_iter().find(|n| *n != first).unwrap();
    println!("service connected to node {first:?}");

    // 4,900 ordinary keys, then 100 whose first attempt fails.
    let mut keys: Vec<String> = (0..4900).map(|i| format!("k-{i}")).collect();
    keys.extend((0..100).map(|i| format!("retry-{i}")));
    publish_all(other.url(), &work_spec.queue, &keys).await;
    GATE.store(true, Ordering::Relaxed);

    // ---- kill -9 of the connected node, the home of the classic queues.
    assert!(
        eventually(Duration::from_secs(60), async || TOTAL
            .load(Ordering::Relaxed)
            >= 1500)
        .await
    );
    let before = TOTAL.load(Ordering::Relaxed);
    let killed_at = Instant::now();
    cluster.kill(first);
    assert!(
        wait_for_state(
            &running,
            ConnectionState::Reconnecting,
            Duration::from_secs(15)
        )
        .await
            && wait_for_state(
                &running,
                ConnectionState::Connected,
                Duration::from_secs(15)
            )
            .await
            && eventually(Duration::from_secs(15), async || {
                TOTAL.load(Ordering::Relaxed) >= before + 200
            })
            .await,
        "the quorum consumer did not resume within 15 s of the kill"
    );
    let resumed = killed_at.elapsed();
    println!("kill -9 of {first:?}: consuming again on another node {resumed:?} after the kill");
    let now_on = connected_node(cluster, other, &name).expect("reconnected");
    assert_ne!(now_on, first);

    // Everything is handled while the node is down, retries included.
    assert!(
        eventually(Duration::from_secs(120), async || effects().len() == 5000).await,
        "{} of 5000 keys have an effect",
        effects().len()
    );
    let effects = effects();
    let duplicates: u32 = effects.values().map(|n| n - 1).sum();
    println!("duplicates after kill -9: {duplicates} (prefetch {PREFETCH})");
    assert!(duplicates <= u32::from(PREFETCH), "{duplicates} duplicates");
    let broker = Broker::connect_to(now_on.url()).await;
    assert_eq!(
        broker.depth(&work_spec.dlq).await,
        0,
        "nothing dead-lettered"
    );
    assert_eq!(broker.depth(&work_spec.queue).await, 0);

    // The classic consumers come back once their node is back.
    cluster.start(first).await;
    assert!(
        eventually(Duration::from_secs(60), async || {
            broker.consumers(&one.queue).await == Some(1)
                && broker.consumers(&two.queue).await == Some(1)
        })
        .await,
        "the classic consumers did not come back after node {first:?} restarted"
    );
    let restarted = killed_at.elapsed();
    println!("classic consumers consuming again {restarted:?} after the kill");
    broker
        .publish(&one.queue, &body("c-1"), BasicProperties::default())
        .await;
    broker
        .publish(&two.queue, &body("c-2"), BasicProperties::default())
        .await;
    assert!(
        eventually(Duration::from_secs(10), async || CLASSIC
            .load(Ordering::Relaxed)
            == 2)
        .await
    );
    let _ = broker.connection.close(200, "OK".into()).await;

    // ---- kill -STOP of the node the service moved to.
    let paused = now_on;
    let watcher = Node::ALL.into_iter().find(|n| *n != paused).unwrap();
    let paused_at = Instant::now();
    cluster.pause(paused);
    let detected = wait_for_state(
        &running,
        ConnectionState::Reconnecting,
        3 * heartbeat + Duration::from_secs(1),
    )
    .await;
    let detected_after = paused_at.elapsed();
    if !detected {
        cluster.resume(paused);
    }
    assert!(
        detected,
        "a paused node was not detected within 3 heartbeats"
    );
    println!(
        "kill -STOP of {paused:?}: detected after {detected_after:?} (heartbeat {heartbeat:?})"
    );
    let total = TOTAL.load(Ordering::Relaxed);
    let more: Vec<String> = (0..200).map(|i| format!("after-stop-{i}")).collect();
    publish_all(watcher.url(), &work_spec.queue, &more).await;
    let consumed_again = eventually(Duration::from_secs(60), async || {
        TOTAL.load(Ordering::Relaxed) >= total + 200
    })
    .await;
    let on = connected_node(cluster, watcher, &name);
    cluster.resume(paused);
    assert!(
        consumed_again,
        "no consumption on another node while {paused:?} was stopped"
    );
    assert!(on.is_some_and(|n| n != paused), "connected to {on:?}");
    println!(
        "consuming on {on:?} while {paused:?} was stopped ({:?} after the pause)",
        paused_at.elapsed()
    );
    // The resumed node rejoins the cluster.
    let mut status = serde_json::Value::Null;
    assert!(
        // autoheal restarts the node that lost; 60-75 s here.
        eventually(Duration::from_secs(150), async || {
            status = cluster.ctl_json(watcher, &["cluster_status"]);
            status["running_nodes"]
                .as_array()
                .is_some_and(|n| n.len() == 3)
        })
        .await,
        "node {paused:?} did not rejoin after kill -CONT: {status}"
    );
    println!(
        "node {paused:?} rejoined {:?} after the pause",
        paused_at.elapsed()
    );
    running.shutdown().await.unwrap();
}
