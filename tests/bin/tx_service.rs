//! A transactional test service (`mqkit-test-tx-service`): one of the
//! consumers of `tests/tx/consumers.rs`, chosen by the scheme of
//! `MQKIT_DATABASE_URL` (postgres → `charge_pg`, mysql → `charge_my`), so
//! crash and outage tests can kill it and start it again.
//!
//! Environment: the `MQKIT_*` variables, plus `TEST_QUEUE` (required),
//! `TEST_FOLLOWUPS` (the follow-up queue, required), `TEST_PREFETCH`,
//! `TEST_HANDLER_MS` (a pause after the handler's writes), and
//! `TEST_SWEEP_AFTER_MS` (the sweeper's age threshold). The dead-letter
//! exchange is `<TEST_QUEUE>.dlx`.

#[path = "../tx/consumers.rs"]
mod consumers;

use std::time::Duration;

use consumers::{Followups, HandlerDelay, charge_my, charge_pg};

fn env_num<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn required(name: &str) -> Result<String, mqkit::Error> {
    std::env::var(name).map_err(|_| mqkit::Error::Config(format!("{name} is required")))
}

#[tokio::main]
async fn main() -> Result<(), mqkit::Error> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let queue = required("TEST_QUEUE")?;
    let followups = Followups(required("TEST_FOLLOWUPS")?);
    let mut config = mqkit::Config::from_env()?;
    if let Some(ms) = env_num("TEST_SWEEP_AFTER_MS") {
        config.outbox.sweep_after = Duration::from_millis(ms);
        config.outbox.sweep_interval = Duration::from_millis(ms.min(1000));
    }
    let delay = HandlerDelay(Duration::from_millis(
        env_num("TEST_HANDLER_MS").unwrap_or(0),
    ));
    let adjust = |spec: &mut mqkit::ConsumerSpec| {
        spec.rename_queue(queue.clone());
        spec.dlx = format!("{queue}.dlx").into();
        if let Some(p) = env_num("TEST_PREFETCH") {
            spec.prefetch = p;
            spec.concurrency = p;
        }
    };
    let mysql = config
        .database_url
        .as_deref()
        .is_some_and(|u| u.starts_with("mysql"));
    let app = mqkit::App::new()
        .config(config)
        .state(followups)
        .state(delay);
    let app = if mysql {
        app.consumer_with(charge_my {}, adjust)
    } else {
        app.consumer_with(charge_pg {}, adjust)
    };
    app.run().await
}
