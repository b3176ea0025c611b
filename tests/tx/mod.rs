//! What the transactional tests share: starting an app with the consumer of
//! a database, publishing charges, reading follow-ups back.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::time::Duration;

use lapin::BasicProperties;
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;

use super::common::{AMQP_URL, Broker, isolate, unique};
use super::consumers::{Followups, HandlerDelay, charge_my, charge_pg};
use super::db::{Db, TestDb};

/// The consumer's spec for `db`, on unique queues.
pub(crate) fn spec_for(db: Db, name: &str) -> mqkit::ConsumerSpec {
    use mqkit::Consumer as _;
    let mut spec = match db {
        Db::Postgres => charge_pg {}.spec(),
        Db::MariaDb => charge_my {}.spec(),
    };
    isolate(&mut spec, name);
    spec
}

/// The app for `db`'s consumer under `spec`, with its database and
/// follow-up queue; `tweak` adjusts the config.
pub(crate) fn app(
    test_db: &TestDb,
    spec: &mqkit::ConsumerSpec,
    followups: &str,
    tweak: impl FnOnce(&mut mqkit::Config),
) -> mqkit::App {
    let mut config = mqkit::Config {
        amqp_urls: vec![AMQP_URL.to_owned()],
        database_url: Some(test_db.url()),
        shutdown_grace: Duration::from_secs(5),
        ..mqkit::Config::default()
    };
    tweak(&mut config);
    if std::env::var_os("TEST_LOG").is_some() {
        mqkit::init_logging();
    }
    let spec = spec.clone();
    let app = mqkit::App::new()
        .config(config)
        .state(Followups(followups.to_owned()))
        .state(HandlerDelay::default());
    match test_db.db {
        Db::Postgres => app.consumer_with(charge_pg {}, move |s| *s = spec),
        Db::MariaDb => app.consumer_with(charge_my {}, move |s| *s = spec),
    }
}

/// Declares a durable follow-up queue with a unique name.
pub(crate) async fn followup_queue(broker: &Broker, name: &str) -> String {
    let q = unique(name);
    broker
        .channel
        .queue_declare(
            q.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    q
}

/// Publishes a charge for `order_id` with message id `message_id`.
pub(crate) async fn charge(
    broker: &Broker,
    queue: &str,
    order_id: &str,
    message_id: &str,
    fail: Option<&str>,
) {
    let body = serde_json::json!({"order_id": order_id, "cents": 100, "fail": fail});
    broker
        .publish(
            queue,
            body.to_string().as_bytes(),
            BasicProperties::default()
                .with_message_id(message_id.into())
                .with_content_type("application/json".into()),
        )
        .await;
}

/// What arrived in a follow-up queue.
#[derive(Debug, Default)]
pub(crate) struct Received {
    pub(crate) total: usize,
    pub(crate) message_ids: HashSet<String>,
    /// (order id, message id) pairs: one message id per order id if every
    /// copy of a follow-up is the same message.
    pub(crate) pairs: HashSet<(String, String)>,
    pub(crate) orders: HashSet<String>,
    pub(crate) persistent: usize,
}

/// Takes everything from `queue`.
pub(crate) async fn receive(broker: &Broker, queue: &str) -> Received {
    let mut r = Received::default();
    for m in broker.drain(queue).await {
        let p = &m.delivery.properties;
        let id = p
            .message_id()
            .as_ref()
            .map(|s| s.to_string())
            .unwrap_or_default();
        let body: serde_json::Value = serde_json::from_slice(&m.delivery.data).unwrap();
        let order = body["order_id"].as_str().unwrap_or_default().to_owned();
        r.total += 1;
        r.persistent += usize::from(*p.delivery_mode() == Some(2));
        r.message_ids.insert(id.clone());
        r.orders.insert(order.clone());
        r.pairs.insert((order, id));
    }
    r
}
