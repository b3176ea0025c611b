//! [`ConsumerSpec`] → exchanges, queues and bindings (ARCHITECTURE.md, "Topology"),
//! declared durable, and RabbitMQ's terse `PRECONDITION_FAILED` turned into
//! an error that names the queue, the argument and both values.
//!
//! Entry points: [`plan`] (pure: what to declare) and [`declare`].

use std::fmt;
use std::time::Duration;

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, Connection, ExchangeKind};

use crate::core::handler::BoxError;
use crate::core::retry::{delay_queue_name, delays};
use crate::core::spec::{ConsumerSpec, QueueType};

/// An exchange to declare.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ExchangeDecl {
    /// Name.
    pub(crate) name: String,
    /// `direct`, `topic`, `fanout` or `headers`.
    pub(crate) kind: String,
}

/// A queue to declare.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct QueueDecl {
    /// Name.
    pub(crate) name: String,
    /// Queue arguments (`x-dead-letter-exchange`, `x-message-ttl`, …).
    pub(crate) arguments: FieldTable,
}

/// A binding to declare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BindingDecl {
    /// Queue.
    pub(crate) queue: String,
    /// Exchange.
    pub(crate) exchange: String,
    /// Binding key.
    pub(crate) routing_key: String,
}

/// Everything one consumer needs, in declaration order. All durable.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Plan {
    /// The DLX and the optional source exchange.
    pub(crate) exchanges: Vec<ExchangeDecl>,
    /// DLQ, work queue, delay queues.
    pub(crate) queues: Vec<QueueDecl>,
    /// DLQ → DLX, and work queue → source exchange.
    pub(crate) bindings: Vec<BindingDecl>,
}

fn long(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s))
}

fn table(entries: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in entries {
        t.insert(ShortString::from(*k), v.clone());
    }
    t
}

/// What to declare for `spec`.
pub(crate) fn plan(spec: &ConsumerSpec) -> Plan {
    let queue = spec.queue.as_ref();
    let mut exchanges = vec![ExchangeDecl {
        name: spec.dlx.to_string(),
        kind: "direct".to_owned(),
    }];
    let mut work_args = vec![
        ("x-dead-letter-exchange", long(&spec.dlx)),
        ("x-dead-letter-routing-key", long(&spec.dlq)),
    ];
    let mut dlq_args = Vec::new();
    if spec.queue_type == QueueType::Quorum {
        work_args.push(("x-queue-type", long(QueueType::Quorum.as_str())));
        // A replicated work queue gets a replicated DLQ: dead letters are
        // the last copy of a message.
        dlq_args.push(("x-queue-type", long(QueueType::Quorum.as_str())));
    }
    let mut queues = vec![
        QueueDecl {
            name: spec.dlq.to_string(),
            arguments: table(&dlq_args),
        },
        QueueDecl {
            name: queue.to_owned(),
            arguments: table(&work_args),
        },
    ];
    for delay in delays(spec) {
        let mut args = vec![
            ("x-message-ttl", AMQPValue::LongLongInt(millis(delay))),
            ("x-dead-letter-exchange", long("")),
            ("x-dead-letter-routing-key", long(queue)),
        ];
        if spec.queue_type == QueueType::Quorum {
            // A retry waiting in a delay queue lives on every node, and its
            // way back to the work queue when the TTL expires is confirmed
            // (at-least-once dead-lettering, RabbitMQ 3.10+, which needs
            // reject-publish overflow): a message retried while a node is
            // down neither waits for that node nor is dropped on the way.
            args.push(("x-queue-type", long(QueueType::Quorum.as_str())));
            args.push(("x-dead-letter-strategy", long("at-least-once")));
            args.push(("x-overflow", long("reject-publish")));
        }
        queues.push(QueueDecl {
            name: delay_queue_name(queue, delay),
            arguments: table(&args),
        });
    }
    let mut bindings = vec![BindingDecl {
        queue: spec.dlq.to_string(),
        exchange: spec.dlx.to_string(),
        routing_key: spec.dlq.to_string(),
    }];
    if let Some(b) = &spec.binding {
        exchanges.push(ExchangeDecl {
            name: b.exchange.to_string(),
            kind: b.exchange_type.to_string(),
        });
        bindings.push(BindingDecl {
            queue: queue.to_owned(),
            exchange: b.exchange.to_string(),
            routing_key: b.routing_key.to_string(),
        });
    }
    Plan {
        exchanges,
        queues,
        bindings,
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Declaring the topology failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TopologyError {
    /// A queue exists with other arguments than mqkit declares.
    #[error(
        "queue `{queue}` already exists with different arguments: `{argument}` is {current} on the broker, but this consumer declares {wanted}. Change the #[consumer] attribute to match, or drain and delete the queue (rabbitmqctl delete_queue {queue}) so mqkit can declare it"
    )]
    Inequivalent {
        /// The queue (or exchange) name.
        queue: String,
        /// The argument RabbitMQ compared.
        argument: String,
        /// The value on the broker.
        current: String,
        /// The value mqkit declared.
        wanted: String,
    },
    /// Another declaration failed.
    #[error("cannot declare {what} `{name}`: {source}")]
    Declare {
        /// `exchange`, `queue` or `binding`.
        what: &'static str,
        /// Its name.
        name: String,
        /// The broker's error.
        source: BoxError,
    },
}

/// Declares `plan` on a fresh channel of `connection` (a failed declaration
/// closes its channel, so none is shared).
pub(crate) async fn declare(connection: &Connection, plan: &Plan) -> Result<(), TopologyError> {
    let channel = connection
        .create_channel()
        .await
        .map_err(|source| TopologyError::Declare {
            what: "channel for",
            name: "topology".to_owned(),
            source: Box::new(source),
        })?;
    let result = declare_on(&channel, plan).await;
    if channel.status().connected() {
        let _ = channel.close(200, "OK".into()).await;
    }
    result
}

async fn declare_on(channel: &Channel, plan: &Plan) -> Result<(), TopologyError> {
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    for e in &plan.exchanges {
        let kind = match e.kind.as_str() {
            "direct" => ExchangeKind::Direct,
            "fanout" => ExchangeKind::Fanout,
            "headers" => ExchangeKind::Headers,
            "topic" => ExchangeKind::Topic,
            other => ExchangeKind::Custom(other.to_owned()),
        };
        channel
            .exchange_declare(e.name.as_str().into(), kind, durable, FieldTable::default())
            .await
            .map_err(|source| classify("exchange", &e.name, source))?;
    }
    for q in &plan.queues {
        channel
            .queue_declare(
                q.name.as_str().into(),
                QueueDeclareOptions {
                    durable: true,
                    ..QueueDeclareOptions::default()
                },
                q.arguments.clone(),
            )
            .await
            .map_err(|source| classify("queue", &q.name, source))?;
    }
    for b in &plan.bindings {
        channel
            .queue_bind(
                b.queue.as_str().into(),
                b.exchange.as_str().into(),
                b.routing_key.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|source| {
                classify("binding", &format!("{} -> {}", b.exchange, b.queue), source)
            })?;
    }
    Ok(())
}

fn classify(what: &'static str, name: &str, source: lapin::Error) -> TopologyError {
    if let lapin::ErrorKind::ProtocolError(e) = source.kind()
        && let Some(i) = parse_inequivalent(e.get_message().as_str())
    {
        return TopologyError::Inequivalent {
            queue: name.to_owned(),
            argument: i.argument,
            current: i.current,
            wanted: i.received,
        };
    }
    TopologyError::Declare {
        what,
        name: name.to_owned(),
        source: Box::new(source),
    }
}

#[derive(Debug, PartialEq, Eq)]
struct Inequivalent {
    argument: String,
    received: String,
    current: String,
}

impl fmt::Display for Inequivalent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} vs {}",
            self.argument, self.received, self.current
        )
    }
}

/// Parses RabbitMQ's `PRECONDITION_FAILED - inequivalent arg 'x-…' for queue
/// 'q' in vhost '/': received … but current is …`.
fn parse_inequivalent(message: &str) -> Option<Inequivalent> {
    let rest = &message[message.find("inequivalent arg '")? + "inequivalent arg '".len()..];
    let argument = &rest[..rest.find('\'')?];
    let rest = &rest[rest.find(": received ")? + ": received ".len()..];
    let split = rest.find(" but current is ")?;
    Some(Inequivalent {
        argument: argument.to_owned(),
        received: rest[..split].to_owned(),
        current: rest[split + " but current is ".len()..].to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::spec::ExchangeBinding;

    #[test]
    fn plan_matches_the_design_table() {
        let mut spec = ConsumerSpec::new("order");
        spec.retry_delay = Duration::from_millis(500);
        spec.max_retries = 2;
        spec.binding = Some(ExchangeBinding {
            exchange: "orders".into(),
            exchange_type: "topic".into(),
            routing_key: "order.#".into(),
        });
        let p = plan(&spec);
        let names: Vec<&str> = p.queues.iter().map(|q| q.name.as_str()).collect();
        assert_eq!(
            names,
            ["dlq.order", "order", "order.retry.500", "order.retry.1000"]
        );
        let work = &p.queues[1].arguments;
        assert_eq!(
            work.inner().get("x-dead-letter-exchange"),
            Some(&long("dlx"))
        );
        assert_eq!(
            work.inner().get("x-dead-letter-routing-key"),
            Some(&long("dlq.order"))
        );
        assert!(!work.contains_key("x-queue-type"));
        let delay = &p.queues[3].arguments;
        assert_eq!(
            delay.inner().get("x-message-ttl"),
            Some(&AMQPValue::LongLongInt(1000))
        );
        assert_eq!(delay.inner().get("x-dead-letter-exchange"), Some(&long("")));
        assert_eq!(
            delay.inner().get("x-dead-letter-routing-key"),
            Some(&long("order"))
        );
        assert_eq!(
            p.exchanges[0],
            ExchangeDecl {
                name: "dlx".into(),
                kind: "direct".into()
            }
        );
        assert_eq!(p.bindings[1].routing_key, "order.#");
        assert!(p.queues[2].arguments.inner().get("x-queue-type").is_none());
        spec.queue_type = QueueType::Quorum;
        let quorum = plan(&spec);
        // The DLQ, the work queue and every delay queue are quorum queues;
        // the delay queues dead-letter at least once.
        assert!(quorum.queues.len() > 2);
        for q in &quorum.queues {
            assert_eq!(
                q.arguments.inner().get("x-queue-type"),
                Some(&long("quorum")),
                "{}",
                q.name
            );
        }
        for q in &quorum.queues[2..] {
            let args = q.arguments.inner();
            assert_eq!(
                args.get("x-dead-letter-strategy"),
                Some(&long("at-least-once"))
            );
            assert_eq!(args.get("x-overflow"), Some(&long("reject-publish")));
        }
    }

    #[test]
    fn parses_rabbitmq_precondition_text() {
        let m = "PRECONDITION_FAILED - inequivalent arg 'x-dead-letter-exchange' for queue 'order' in vhost '/': received the value 'dlx' of type 'longstr' but current is none";
        assert_eq!(
            parse_inequivalent(m),
            Some(Inequivalent {
                argument: "x-dead-letter-exchange".into(),
                received: "the value 'dlx' of type 'longstr'".into(),
                current: "none".into(),
            })
        );
        assert_eq!(parse_inequivalent("NOT_FOUND - no queue"), None);
    }
}
