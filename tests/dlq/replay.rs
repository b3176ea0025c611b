//! `mqkit dlq show` and `mqkit dlq replay` on real dead letters.

use super::*;

// One at a time, so the DLQ keeps the publishing order.
#[mqkit::consumer(queue = "show", max_retries = 0, prefetch = 1)]
async fn show_handler(e: Event) -> Result<(), HandlerError> {
    Err(HandlerError::reject(format!("cannot ship {}", e.id)))
}

/// Dead-letters `n` messages with ids `<prefix>0..`, in that order, and
/// stops the app (no archiver: the DLQ keeps them).
async fn fill_dlq<C: Consumer>(
    consumer: C,
    name: &str,
    prefix: &str,
    n: usize,
) -> (ConsumerSpec, Cleanup) {
    let mut spec = consumer.spec();
    isolate(&mut spec, name);
    let cleanup = Cleanup::specs(&[&spec]);
    let s = spec.clone();
    let running = app(None, None, tuning())
        .consumer_with(consumer, move |x| *x = s)
        .start()
        .await
        .unwrap();
    let broker = Broker::connect().await;
    for i in 0..n {
        let id = format!("{prefix}{i}");
        broker
            .publish(
                &spec.queue,
                json!({"id": id}).to_string().as_bytes(),
                props(&id),
            )
            .await;
    }
    let dlq = spec.dlq.to_string();
    assert!(
        eventually(Duration::from_secs(60), async || broker.depth(&dlq).await
            as usize
            == n)
        .await
    );
    running.shutdown().await.unwrap();
    (spec, cleanup)
}

fn ids(messages: &[lapin::message::BasicGetMessage]) -> Vec<String> {
    messages
        .iter()
        .map(|m| {
            m.delivery
                .properties
                .message_id()
                .as_ref()
                .map(|s| s.to_string())
                .unwrap_or_default()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_prints_the_head_and_leaves_depth_and_order_unchanged() {
    let (spec, _cleanup) = fill_dlq(show_handler {}, "show", "s", 5).await;
    let broker = Broker::connect().await;
    let before = ids(&broker.peek(&spec.dlq).await);
    assert_eq!(before, ["s0", "s1", "s2", "s3", "s4"]);

    let out = mqkit(&["dlq", "show", &spec.dlq, "--limit", "3"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let positions: Vec<usize> = ["s0", "s1", "s2"]
        .iter()
        .map(|id| out.stdout.find(&format!("message id: {id}\n")).unwrap())
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{}", out.stdout);
    assert!(!out.stdout.contains("message id: s3"), "{}", out.stdout);
    assert!(
        out.stdout.contains("error kind:     rejected"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("error:          cannot ship s0"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("attempts:       1"), "{}", out.stdout);
    assert!(out.stdout.contains("failed at:      20"), "{}", out.stdout);
    assert!(
        out.stdout.contains(r#"body (11 bytes): {"id":"s0"}"#),
        "{}",
        out.stdout
    );

    assert_eq!(broker.depth(&spec.dlq).await, 5);
    assert_eq!(
        ids(&broker.peek(&spec.dlq).await),
        before,
        "order unchanged"
    );
    // Showing more than there is shows all, and still takes nothing.
    let all = mqkit(&["dlq", "show", &spec.dlq, "--limit", "50"]).await;
    assert_eq!(all.code, 0, "{all:?}");
    assert_eq!(all.stdout.matches("message id: ").count(), 5);
    assert_eq!(
        ids(&broker.peek(&spec.dlq).await),
        before,
        "order unchanged"
    );
}

static BUGGY: AtomicBool = AtomicBool::new(true);
static HANDLED: Mutex<Vec<String>> = Mutex::new(Vec::new());
static REPLAYED_HEADERS: Mutex<Option<mqkit::Headers>> = Mutex::new(None);

#[mqkit::consumer(queue = "replay", idempotency = "id", max_retries = 0, prefetch = 50)]
async fn replay_handler(e: Event, ctx: mqkit::Context) -> Result<(), HandlerError> {
    if BUGGY.load(Ordering::SeqCst) {
        return Err(HandlerError::reject("the bug"));
    }
    if e.id == "r0" {
        *REPLAYED_HEADERS.lock().unwrap() = ctx.headers().cloned();
    }
    HANDLED.lock().unwrap().push(e.id);
    Ok(())
}

fn counts(handled: &[String]) -> HashMap<String, usize> {
    let mut c = HashMap::new();
    for id in handled {
        *c.entry(id.clone()).or_default() += 1;
    }
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaying_a_thousand_dead_letters_handles_each_once_after_the_fix() {
    let (spec, running, _cleanup, _db) =
        start(replay_handler {}, "replay", app(None, None, tuning())).await;
    let broker = Broker::connect().await;
    let publisher = running.publisher().clone();
    for i in 0..1000 {
        publisher
            .publish_json("", &spec.queue, &json!({"id": format!("r{i}")}))
            .await
            .unwrap();
    }
    assert!(
        eventually(Duration::from_secs(120), async || broker
            .depth(&spec.dlq)
            .await
            == 1000)
        .await
    );
    assert!(HANDLED.lock().unwrap().is_empty());

    BUGGY.store(false, Ordering::SeqCst); // the fix is deployed
    let started = Instant::now();
    let out = mqkit(&["dlq", "replay", &spec.dlq]).await;
    let took = started.elapsed();
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout
            .starts_with(&format!("replayed 1000 messages from {}", spec.dlq)),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(&format!("1000 -> {}", spec.queue)),
        "{}",
        out.stdout
    );
    eprintln!(
        "replay of 1000 dead letters took {took:?}: {}",
        out.stdout.trim()
    );
    assert!(
        eventually(Duration::from_secs(60), async || HANDLED
            .lock()
            .unwrap()
            .len()
            >= 1000)
        .await
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    running.shutdown().await.unwrap();

    let counts = counts(&HANDLED.lock().unwrap());
    assert_eq!(counts.len(), 1000);
    assert!(counts.values().all(|n| *n == 1), "each handled once");
    assert_eq!(broker.depth(&spec.dlq).await, 0);
    assert_eq!(broker.depth(&spec.queue).await, 0);
    let h = REPLAYED_HEADERS.lock().unwrap().clone().unwrap_or_default();
    let names: Vec<&str> = h.iter().map(|(k, _)| k).collect();
    assert_eq!(names, ["x-mqkit-replays"], "no attempt or failure headers");
    assert_eq!(h.get("x-mqkit-replays"), Some(&mqkit::FieldValue::I64(1)));
}

#[mqkit::consumer(queue = "select", max_retries = 0, prefetch = 1)]
async fn select_handler(e: Event) -> Result<(), HandlerError> {
    Err(HandlerError::reject(format!("no {}", e.id)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_selects_by_kind_and_limit_and_a_dry_run_moves_nothing() {
    // Four rejected dead letters (k0..k3) and, between them, three that did
    // not decode (bad0..bad2); the service is stopped, so the work queue
    // keeps whatever is replayed.
    let mut spec = select_handler {}.spec();
    isolate(&mut spec, "select");
    let _cleanup = Cleanup::specs(&[&spec]);
    let s = spec.clone();
    let running = app(None, None, tuning())
        .consumer_with(select_handler {}, move |x| *x = s)
        .start()
        .await
        .unwrap();
    let broker = Broker::connect().await;
    for i in 0..4 {
        let id = format!("k{i}");
        broker
            .publish(
                &spec.queue,
                json!({"id": id}).to_string().as_bytes(),
                props(&id),
            )
            .await;
        if i < 3 {
            broker
                .publish(&spec.queue, b"not json", props(&format!("bad{i}")))
                .await;
        }
    }
    assert!(
        eventually(Duration::from_secs(30), async || broker
            .depth(&spec.dlq)
            .await
            == 7)
        .await
    );
    running.shutdown().await.unwrap();
    let (dlq, work) = (spec.dlq.to_string(), spec.queue.to_string());
    let order = ids(&broker.peek(&dlq).await);
    assert_eq!(order, ["k0", "bad0", "k1", "bad1", "k2", "bad2", "k3"]);

    let dry = mqkit(&["dlq", "replay", &dlq, "--dry-run"]).await;
    assert_eq!(dry.code, 0, "{dry:?}");
    assert!(
        dry.stdout.starts_with("dry run: would replay 7 messages"),
        "{}",
        dry.stdout
    );
    assert_eq!(
        ids(&broker.peek(&dlq).await),
        order,
        "dry run moves nothing"
    );
    assert_eq!(broker.depth(&work).await, 0);

    let none = mqkit(&["dlq", "replay", &dlq, "--kind", "timeout"]).await;
    assert_eq!(none.code, 0, "{none:?}");
    assert!(
        none.stdout.starts_with("replayed 0 messages"),
        "{}",
        none.stdout
    );
    assert_eq!(
        ids(&broker.peek(&dlq).await),
        order,
        "no match moves nothing"
    );

    let decode = mqkit(&["dlq", "replay", &dlq, "--kind", "decode"]).await;
    assert_eq!(decode.code, 0, "{decode:?}");
    assert!(
        decode.stdout.starts_with("replayed 3 messages"),
        "{}",
        decode.stdout
    );
    assert_eq!(ids(&broker.peek(&dlq).await), ["k0", "k1", "k2", "k3"]);
    let moved = broker.drain(&work).await;
    assert_eq!(ids(&moved), ["bad0", "bad1", "bad2"]);
    for m in &moved {
        let p = &m.delivery.properties;
        assert_eq!(m.delivery.data, b"not json", "body unchanged");
        assert_eq!(header(p, "x-mqkit-replays").as_deref(), Some("1"));
        for gone in [
            "x-mqkit-error",
            "x-mqkit-error-kind",
            "x-mqkit-attempts",
            "x-mqkit-attempt",
            "x-mqkit-original-queue",
            "x-mqkit-failed-at",
        ] {
            assert_eq!(header(p, gone), None, "{gone}");
        }
        assert_eq!(*p.delivery_mode(), Some(2));
    }

    let two = mqkit(&["dlq", "replay", &dlq, "--kind", "rejected", "--limit", "2"]).await;
    assert_eq!(two.code, 0, "{two:?}");
    assert!(
        two.stdout.starts_with("replayed 2 messages"),
        "{}",
        two.stdout
    );
    assert_eq!(ids(&broker.drain(&work).await), ["k0", "k1"]);
    assert_eq!(ids(&broker.peek(&dlq).await), ["k2", "k3"]);

    // The original queue is gone: unroutable, left in the DLQ, reported.
    broker
        .channel
        .queue_delete(work.as_str().into(), Default::default())
        .await
        .unwrap();
    let lost = mqkit(&["dlq", "replay", &dlq]).await;
    assert_eq!(lost.code, 3, "{lost:?}");
    assert!(
        lost.stderr.contains("is unroutable to queue"),
        "{}",
        lost.stderr
    );
    assert!(lost.stdout.contains("2 unroutable"), "{}", lost.stdout);
    assert_eq!(ids(&broker.peek(&dlq).await), ["k2", "k3"]);
}

static KILL_BUGGY: AtomicBool = AtomicBool::new(true);
static KILL_HANDLED: Mutex<Vec<String>> = Mutex::new(Vec::new());

#[mqkit::consumer(queue = "kill", idempotency = "id", max_retries = 0, prefetch = 50)]
async fn kill_handler(e: Event) -> Result<(), HandlerError> {
    if KILL_BUGGY.load(Ordering::SeqCst) {
        return Err(HandlerError::reject("the bug"));
    }
    KILL_HANDLED.lock().unwrap().push(e.id);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_killed_midway_loses_nothing_and_a_rerun_finishes_it() {
    let (spec, running, _cleanup, _db) =
        start(kill_handler {}, "kill", app(None, None, tuning())).await;
    let broker = Broker::connect().await;
    let publisher = running.publisher().clone();
    let all: BTreeSet<String> = (0..1000).map(|i| format!("x{i}")).collect();
    for id in &all {
        publisher
            .publish_json("", &spec.queue, &json!({"id": id}))
            .await
            .unwrap();
    }
    assert!(
        eventually(Duration::from_secs(120), async || broker
            .depth(&spec.dlq)
            .await
            == 1000)
        .await
    );
    KILL_BUGGY.store(false, Ordering::SeqCst);

    // 100 a second: slow enough to be killed midway.
    let mut child = cli_command(&["dlq", "replay", &spec.dlq, "--rate", "100"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    assert!(
        eventually(Duration::from_secs(60), async || KILL_HANDLED
            .lock()
            .unwrap()
            .len()
            >= 100)
        .await
    );
    assert!(
        child.try_wait().unwrap().is_none(),
        "still replaying when killed"
    );
    child.kill().unwrap(); // SIGKILL
    let _ = child.wait();

    // Nothing lost: every id is handled or back in the DLQ (a message
    // published but not yet acked when killed is in both).
    let dlq = spec.dlq.to_string();
    let handled_then: BTreeSet<String> = KILL_HANDLED.lock().unwrap().iter().cloned().collect();
    assert!(
        eventually(Duration::from_secs(20), async || broker.depth(&dlq).await
            as usize
            + handled_then.len()
            >= 1000)
        .await
    );
    let waiting: BTreeSet<String> = broker
        .peek(&dlq)
        .await
        .iter()
        .map(|m| {
            serde_json::from_slice::<serde_json::Value>(&m.delivery.data).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let lost: Vec<&String> = all
        .iter()
        .filter(|id| !handled_then.contains(*id) && !waiting.contains(*id))
        .collect();
    assert!(lost.is_empty(), "lost: {lost:?}");
    eprintln!(
        "killed after {} handled; {} back in the DLQ",
        handled_then.len(),
        waiting.len()
    );

    let rerun = mqkit(&["dlq", "replay", &dlq]).await;
    assert_eq!(rerun.code, 0, "{rerun:?}");
    assert!(
        eventually(Duration::from_secs(60), async || KILL_HANDLED
            .lock()
            .unwrap()
            .len()
            >= 1000)
        .await
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    running.shutdown().await.unwrap();
    let counts = counts(&KILL_HANDLED.lock().unwrap());
    assert_eq!(counts.keys().cloned().collect::<BTreeSet<_>>(), all);
    assert!(
        counts.values().all(|n| *n == 1),
        "a duplicate replay is absorbed by idempotency"
    );
    assert_eq!(broker.depth(&dlq).await, 0);
}
