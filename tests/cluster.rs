//! mqkit beyond one node: per-consumer recovery on the default broker
//! (127.0.0.1:5672; a queue deleted under its consumer), and against a real
//! three-node RabbitMQ cluster that the tests start with
//! `tests/cluster/rabbitmq-cluster.sh` on 127.0.0.1:5681–5683 and always
//! stop, even when a test fails. The cluster tests take the one cluster in
//! turn (a lock), and each uses queue names of its own.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "cluster/nodes.rs"]
mod nodes;
#[path = "cluster/rabbit.rs"]
mod rabbit;
#[path = "cluster/recovery.rs"]
mod recovery;
