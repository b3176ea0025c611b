//! The command line itself: `--help`, one-line errors with failure codes,
//! `list` through the management API, and `purge`.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_has_help() {
    for args in [
        &["--help"][..],
        &["dlq", "--help"],
        &["dlq", "list", "--help"],
        &["dlq", "show", "--help"],
        &["dlq", "replay", "--help"],
        &["dlq", "purge", "--help"],
        &["help", "dlq", "replay"],
    ] {
        let out = mqkit(args).await;
        assert_eq!(out.code, 0, "{args:?}: {out:?}");
        assert!(
            out.stdout.contains("Usage: mqkit"),
            "{args:?}: {}",
            out.stdout
        );
        assert!(
            out.stdout.contains("--url <URL>"),
            "{args:?}: {}",
            out.stdout
        );
    }
    let replay = mqkit(&["dlq", "replay", "--help"]).await.stdout;
    for flag in ["--limit <N>", "--kind <KIND>", "--dry-run", "--rate <N>"] {
        assert!(replay.contains(flag), "{flag}: {replay}");
    }
    let bad = mqkit(&["dlq", "frobnicate"]).await;
    assert_eq!(bad.code, 2, "{bad:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_queue_or_password_is_a_one_line_error_and_a_failure_code() {
    let missing = common::unique("no-such-dlq");
    for command in ["show", "replay", "purge"] {
        let out = mqkit(&["dlq", command, &missing]).await;
        assert_eq!(out.code, 1, "{command}: {out:?}");
        assert_eq!(out.stderr.lines().count(), 1, "{command}: {}", out.stderr);
        assert!(
            out.stderr.starts_with(&format!(
                "error: queue `{missing}` does not exist in vhost `/`"
            )),
            "{command}: {}",
            out.stderr
        );
    }
    let wrong = "amqp://guest:not-the-password@127.0.0.1:5672/%2f";
    for args in [
        &["--url", wrong, "dlq", "show", "dlq.x"][..],
        &["dlq", "replay", "dlq.x", "--url", wrong],
        &["dlq", "list", "--url", wrong],
    ] {
        let out = mqkit(args).await;
        assert_eq!(out.code, 1, "{args:?}: {out:?}");
        assert_eq!(out.stderr.lines().count(), 1, "{args:?}: {}", out.stderr);
        assert!(!out.stderr.contains("not-the-password"), "{}", out.stderr);
        assert!(
            out.stderr.contains("ACCESS_REFUSED") || out.stderr.contains("login refused"),
            "{}",
            out.stderr
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_shows_the_dlq_with_its_depth_and_purge_needs_yes() {
    let broker = Broker::connect().await;
    let dlq = format!("dlq.{}", common::unique("list"));
    let other = common::unique("list-other");
    let _cleanup = Cleanup::specs(&[]).queue(&dlq).queue(&other);
    broker.declare_queue(&dlq, FieldTable::default()).await;
    broker.declare_queue(&other, FieldTable::default()).await;
    for i in 0..3 {
        broker.publish(&dlq, b"{}", props(&format!("l{i}"))).await;
    }
    // The management API refreshes its statistics every few seconds.
    let row = |stdout: &str, name: &str| {
        stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .map(|l| l.split_whitespace().nth(1).unwrap_or("").to_owned())
    };
    let mut last = String::new();
    let listed = eventually(Duration::from_secs(30), async || {
        let out = mqkit(&["dlq", "list"]).await;
        last = format!("{out:?}");
        out.code == 0 && row(&out.stdout, &dlq).as_deref() == Some("3")
    })
    .await;
    assert!(listed, "{last}");
    let out = mqkit(&["dlq", "list"]).await;
    assert!(out.stdout.starts_with("QUEUE "), "{}", out.stdout);
    assert_eq!(row(&out.stdout, &other), None, "only dlq.* by default");
    let patterned = mqkit(&["dlq", "list", "--pattern", &other]).await;
    assert_eq!(patterned.code, 0, "{patterned:?}");
    assert!(
        row(&patterned.stdout, &other).is_some(),
        "{}",
        patterned.stdout
    );
    assert!(
        row(&patterned.stdout, &dlq).is_none(),
        "{}",
        patterned.stdout
    );

    let refused = mqkit(&["dlq", "purge", &dlq]).await;
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(
        refused.stderr.contains("without --yes"),
        "{}",
        refused.stderr
    );
    assert_eq!(broker.depth(&dlq).await, 3);
    let purged = mqkit(&["dlq", "purge", &dlq, "--yes"]).await;
    assert_eq!(purged.code, 0, "{purged:?}");
    assert_eq!(
        purged.stdout.trim(),
        format!("purged 3 messages from {dlq}")
    );
    assert_eq!(broker.depth(&dlq).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_uses_the_proxy_of_http_proxy_but_never_for_loopback() {
    // The "proxy" is a local server that answers every request with an
    // empty queue list, so what it saw is what a proxy would see.
    let proxy = Hook::start(HookMode::Json("[]")).await;
    let run = |args: &'static [&'static str]| {
        let mut command = cli_command(args);
        for v in [
            "NO_PROXY",
            "no_proxy",
            "ALL_PROXY",
            "all_proxy",
            "http_proxy",
        ] {
            command.env_remove(v);
        }
        command.env("HTTP_PROXY", format!("http://127.0.0.1:{}", proxy.port));
        tokio::task::spawn_blocking(move || command.output().unwrap())
    };
    // A server name that does not resolve: only the proxy can reach it.
    let out = run(&[
        "dlq",
        "list",
        "--api-url",
        "http://rabbitmq-mgmt.invalid:15672",
    ])
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout.trim(), "no queues match `dlq.*` in vhost `/`");
    let seen = proxy.received();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(
        seen[0].target(),
        "http://rabbitmq-mgmt.invalid:15672/api/queues/%2F?columns=name,messages,messages_ready,messages_unacknowledged,consumers"
    );
    assert!(
        seen[0]
            .header("authorization")
            .is_some_and(|a| a.starts_with("Basic ")),
        "{}",
        seen[0].head
    );
    // The management API on 127.0.0.1 is reached directly, proxy or not.
    let out = run(&["dlq", "list", "--pattern", "*"]).await.unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("QUEUE "),
        "{out:?}"
    );
    assert_eq!(proxy.received().len(), 1, "loopback went through the proxy");
}
