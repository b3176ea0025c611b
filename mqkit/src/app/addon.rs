//! The hook through which add-ons above this layer (the dead-letter
//! archiver) join a service without the app layer naming them: the crate
//! root (the composition point) lists each add-on's [`AddonFactory`] in
//! `crate::ADDONS`, and [`App::start`](crate::App::start) asks every factory
//! before connecting.

use tokio_util::sync::CancellationToken;

use super::config::Config;
use super::error::Error;
use crate::amqp::supervisor::SessionTask;
use crate::core::idempotency::BoxFuture;
use crate::core::spec::ConsumerSpec;

/// What a started add-on runs: tasks on each session's connection (started
/// with it, re-run after every reconnect) and background work beside the
/// supervisor until the stop token it was started with is cancelled.
pub(crate) struct Addon {
    pub(crate) session_tasks: Vec<SessionTask>,
    pub(crate) background: BoxFuture<'static, ()>,
}

/// A configured add-on, not started yet: started with the stop token.
pub(crate) type Prepared = Box<dyn FnOnce(CancellationToken) -> Addon + Send>;

/// Checks the settings (before anything connects) and, when the add-on is
/// configured, prepares it.
pub(crate) type AddonFactory = fn(&Config, &[ConsumerSpec]) -> Result<Option<Prepared>, Error>;

/// Checks the dead-letter settings that do not need the add-on's code, then
/// prepares every configured add-on.
pub(crate) fn prepare(config: &Config, specs: &[ConsumerSpec]) -> Result<Vec<Prepared>, Error> {
    if config.dlq_alert_webhook.is_some() && config.dlq_archive_url.is_none() {
        return Err(Error::AlertWithoutArchive);
    }
    if config.dlq_archive_url.is_some() && !cfg!(feature = "dlq") {
        return Err(Error::DlqFeatureDisabled);
    }
    let mut prepared = Vec::new();
    for factory in crate::ADDONS {
        if let Some(addon) = factory(config, specs)? {
            prepared.push(addon);
        }
    }
    Ok(prepared)
}

/// Runs `service` (the supervisor) with the add-ons' background work beside
/// it; `stop` (a child of the shutdown token) is cancelled when the service
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

    #[test]
    fn a_webhook_without_an_archive_is_refused() {
        let config = Config {
            dlq_alert_webhook: Some("http://127.0.0.1:9/hook".into()),
            ..Config::default()
        };
        let err = prepare(&config, &[]).map(|_| ()).map_err(|e| e.to_string());
        let err = err.err().unwrap_or_default();
        assert!(
            err.contains("MQKIT_DLQ_ALERT_WEBHOOK is set but MQKIT_DLQ_ARCHIVE_URL is not"),
            "{err}"
        );
        assert!(matches!(
            prepare(&Config::default(), &[]).map(|v| v.len()),
            Ok(0)
        ));
    }

    #[cfg(not(feature = "dlq"))]
    #[test]
    fn an_archive_url_without_the_feature_is_refused() {
        let config = Config {
            dlq_archive_url: Some("mysql://root:pw@127.0.0.1:3306/test".into()),
            ..Config::default()
        };
        let err = prepare(&config, &[]).map(|_| ()).map_err(|e| e.to_string());
        let err = err.err().unwrap_or_default();
        assert!(err.contains("without mqkit's `dlq` feature"), "{err}");
        assert!(!err.contains("pw@"), "{err}");
    }
}
