//! Broker access without running consumers: [`Publisher::connect`] (a
//! publisher with its own connection) and [`declare_topology`] (a
//! consumer's queues and exchanges, for deploy steps, tools and tests).

use super::config::{Config, split_urls};
use super::error::Error;
use crate::amqp::connection::connect_any;
use crate::amqp::publisher::BrokerPublisher;
use crate::amqp::topology;
use crate::core::publish::Publisher;
use crate::core::spec::ConsumerSpec;

fn options(urls: &str) -> Config {
    Config {
        amqp_urls: split_urls(urls),
        ..Config::default()
    }
}

fn connect_error(config: &Config, cause: String) -> Error {
    Error::Connect {
        urls: config.masked_urls(),
        waited_secs: 0,
        cause,
    }
}

impl Publisher {
    /// A publisher with a connection of its own to `urls` (comma-separated
    /// cluster nodes, tried in turn), for services that only publish and for
    /// tools. Call [`Publisher::close`] when done.
    pub async fn connect(urls: &str) -> Result<Self, Error> {
        let config = options(urls);
        let connection = connect_any(&config.connect_options())
            .await
            .map_err(|cause| connect_error(&config, cause))?;
        Ok(Publisher::new(BrokerPublisher::owning(connection).await))
    }
}

/// Declares everything `spec` needs (DLX, DLQ, work queue, delay queues,
/// the optional source exchange and bindings), durable, on a connection of
/// its own to `urls`, as a consumer would at startup. Declaring what exists
/// with the same arguments is a no-op; different arguments are an
/// [`Error::Topology`] naming the argument.
pub async fn declare_topology(urls: &str, spec: &ConsumerSpec) -> Result<(), Error> {
    spec.validate()?;
    let config = options(urls);
    let connection = connect_any(&config.connect_options())
        .await
        .map_err(|cause| connect_error(&config, cause))?;
    let result = topology::declare(&connection, &topology::plan(spec)).await;
    let _ = connection.close(200, "OK".into()).await;
    Ok(result?)
}
