//! The hook through which add-ons above this layer (the dead-letter
//! archiver) join a service without the app layer naming them: the crate
//! root (the composition point) lists each add-on's [`AddonFactory`] in
//! `crate::ADDONS`, and [`App::start`](crate::App::start) asks every factory
//! before connecting.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::config::Config;
use super::error::Error;
use crate::amqp::supervisor::{BeforeClose, SessionTask};
use crate::core::idempotency::BoxFuture;
use crate::core::inbox::{DatabaseKind, Inbox};
use crate::core::publish::Publisher;
use crate::core::spec::ConsumerSpec;
use crate::core::state::StateMap;

/// What a started add-on runs: tasks on each session's connection (started
/// with it, re-run after every reconnect), background work beside the
/// supervisor until the stop token it was started with is cancelled (when
/// the service has ended), and what must finish on shutdown before the
/// connection closes.
pub(crate) struct Addon {
    pub(crate) session_tasks: Vec<SessionTask>,
    pub(crate) background: BoxFuture<'static, ()>,
    /// Run on shutdown once the handlers are done, before the connection
    /// closes.
    pub(crate) before_close: Option<BeforeClose>,
}

/// A transactional consumer, as add-ons see it.
#[derive(Debug, Clone)]
pub(crate) struct TxConsumer {
    /// The handler function.
    pub(crate) handler: &'static str,
    /// Its spec in force.
    #[cfg_attr(not(feature = "tx"), allow(dead_code))]
    pub(crate) spec: ConsumerSpec,
    /// The database of its `Tx`.
    pub(crate) kind: DatabaseKind,
}

/// What an add-on is prepared from.
pub(crate) struct AddonInput<'a> {
    pub(crate) config: &'a Config,
    /// Every consumer's spec in force.
    #[cfg_attr(not(feature = "dlq"), allow(dead_code))]
    pub(crate) specs: &'a [ConsumerSpec],
    /// The consumers whose handler takes `mqkit::Tx`.
    pub(crate) transactional: &'a [TxConsumer],
    /// Values add-ons set on the [`App`](crate::App) (a database pool).
    #[cfg_attr(not(feature = "tx"), allow(dead_code))]
    pub(crate) extras: &'a StateMap,
}

/// A configured add-on, not started yet.
pub(crate) struct Prepared {
    /// The transactional consumers' inbox, if this add-on provides it.
    pub(crate) inbox: Option<Arc<dyn Inbox>>,
    /// Starts it, with the stop token and the service's publisher.
    pub(crate) start: Box<dyn FnOnce(CancellationToken, Publisher) -> Addon + Send>,
}

/// Checks the settings and, when the add-on is configured, prepares it (it
/// may connect to its own database; the broker is not connected yet).
pub(crate) type AddonFactory =
    for<'a> fn(&'a AddonInput<'a>) -> BoxFuture<'a, Result<Option<Prepared>, Error>>;

/// Checks the dead-letter and transactional settings that do not need the
/// add-ons' code, then prepares every configured add-on.
pub(crate) async fn prepare(input: &AddonInput<'_>) -> Result<Vec<Prepared>, Error> {
    let config = input.config;
    if config.dlq_alert_webhook.is_some() && config.dlq_archive_url.is_none() {
        return Err(Error::AlertWithoutArchive);
    }
    if config.dlq_archive_url.is_some() && !cfg!(feature = "dlq") {
        return Err(Error::DlqFeatureDisabled);
    }
    if let Some(c) = input.transactional.first()
        && !cfg!(feature = "tx")
    {
        return Err(Error::TxFeatureDisabled(c.handler.to_owned()));
    }
    let mut prepared = Vec::new();
    for factory in crate::ADDONS {
        if let Some(addon) = factory(input).await? {
            prepared.push(addon);
        }
    }
    Ok(prepared)
}

/// Runs `service` (the supervisor) with the add-ons' background work beside
/// it; `stop` (not the shutdown token) is cancelled when the service
/// ends for any reason, and the background work is awaited (so pending
/// alerts are sent).
pub(crate) async fn beside<T>(
    service: impl std::future::Future<Output = T>,
    background: Vec<BoxFuture<'static, ()>>,
    stop: CancellationToken,
) -> T {
    let running: Vec<_> = background.into_iter().map(tokio::spawn).collect();
    let result = service.await;
    stop.cancel();
    for task in running {
        let _ = task.await;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `prepare` with no consumers: how many add-ons, or the error text.
    fn run(config: &Config) -> Result<usize, String> {
        let input = AddonInput {
            config,
            specs: &[],
            transactional: &[],
            extras: &StateMap::default(),
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(prepare(&input))
            .map(|v| v.len())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn a_webhook_without_an_archive_is_refused() {
        let config = Config {
            dlq_alert_webhook: Some("http://127.0.0.1:9/hook".into()),
            ..Config::default()
        };
        let err = run(&config).err().unwrap_or_default();
        assert!(
            err.contains("MQKIT_DLQ_ALERT_WEBHOOK is set but MQKIT_DLQ_ARCHIVE_URL is not"),
            "{err}"
        );
        assert!(matches!(run(&Config::default()), Ok(0)));
    }

    #[cfg(not(feature = "dlq"))]
    #[test]
    fn an_archive_url_without_the_feature_is_refused() {
        let config = Config {
            dlq_archive_url: Some("mysql://root:pw@127.0.0.1:3306/test".into()),
            ..Config::default()
        };
        let err = run(&config).err().unwrap_or_default();
        assert!(err.contains("without mqkit's `dlq` feature"), "{err}");
        assert!(!err.contains("pw@"), "{err}");
    }
}
