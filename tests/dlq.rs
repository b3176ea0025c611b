//! Dead-letter operations against the real RabbitMQ (127.0.0.1:5672, with
//! the management plugin on :15672), MariaDB (127.0.0.1:3306, database
//! `test`) and PostgreSQL (127.0.0.1:5432, database `test`): the archiver
//! inside `App`, alerts to a local webhook server, the `mqkit dlq`
//! command run as a child process, and its web console (`serve`) in
//! headless Chromium. Every test uses
//! unique queue names, deletes its queues and its archive rows on drop,
//! and never stops a shared service (the database outage is a proxy).
#![allow(clippy::unwrap_used, clippy::expect_used)]

/// A test on both archive databases: `name_mariadb` and `name_postgres`.
macro_rules! on_both {
    ($body:ident: $($name:ident, $backend:expr);+) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                $body($backend).await;
            }
        )+
    };
}

mod common;
#[path = "common/http.rs"]
mod probe;
#[path = "dlq/support.rs"]
mod support;
#[path = "dlq/web.rs"]
mod web;

#[path = "dlq/alerts.rs"]
mod alerts;
#[path = "dlq/archive.rs"]
mod archive;
#[path = "dlq/browser.rs"]
mod browser;
#[path = "dlq/command.rs"]
mod command;
#[path = "dlq/console.rs"]
mod console;
#[path = "dlq/from_archive.rs"]
mod from_archive;
#[path = "dlq/replay.rs"]
mod replay;

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{AMQP_URL, Broker, Cleanup, eventually, header, isolate};
use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, LongString};
use mqkit::{App, Config, Consumer, ConsumerSpec, DlqTuning, HandlerError};
use serde::Deserialize;
use serde_json::json;
use support::{
    Archive, Archived, Backend, DB_URL, DbCleanup, DbProxy, Hook, HookMode, cli_command, db, db_of,
    exec, mqkit, rows, total_messages,
};

#[derive(Debug, Deserialize)]
struct Event {
    id: String,
    #[serde(default)]
    kind: String,
}

/// An app with a dead-letter archive (and maybe a webhook) and short timings.
fn app(archive: Option<String>, webhook: Option<String>, tuning: DlqTuning) -> App {
    App::new().config(Config {
        amqp_urls: vec![AMQP_URL.to_owned()],
        shutdown_grace: Duration::from_secs(5),
        dlq_archive_url: archive,
        dlq_alert_webhook: webhook,
        dlq_tuning: tuning,
        ..Config::default()
    })
}

fn tuning() -> DlqTuning {
    DlqTuning {
        alert_window: Duration::from_secs(60),
        alert_timeout: Duration::from_secs(2),
        retry_delay: Duration::from_millis(300),
        ..DlqTuning::default()
    }
}

/// Starts `consumer` alone on unique queue names.
async fn start<C: Consumer>(
    consumer: C,
    name: &str,
    app: App,
) -> (ConsumerSpec, mqkit::Running, Cleanup, DbCleanup) {
    let mut spec = consumer.spec();
    isolate(&mut spec, name);
    let cleanup = Cleanup::specs(&[&spec]);
    let db_cleanup = DbCleanup(vec![spec.queue.to_string()]);
    let s = spec.clone();
    let running = app
        .consumer_with(consumer, move |x| *x = s)
        .start()
        .await
        .unwrap();
    (spec, running, cleanup, db_cleanup)
}

fn props(message_id: &str) -> BasicProperties {
    BasicProperties::default()
        .with_message_id(message_id.into())
        .with_content_type("application/json".into())
}
