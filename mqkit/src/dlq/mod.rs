//! Dead-letter operations (DESIGN.md, "Dead-letter operations").
//!
//! - [`letter`]: what a dead letter says about itself (original queue, error
//!   kind and text, attempts, failed-at), from mqkit's `x-mqkit-*` headers or
//!   RabbitMQ's `x-death`; shared by the archiver and the `mqkit` CLI.
//! - The archiver (feature `dlq`): with `MQKIT_DLQ_ARCHIVE_URL` set,
//!   [`run`](crate::run) consumes every DLQ of the service's consumers,
//!   stores one row per dead letter in MySQL/MariaDB (table
//!   [`ARCHIVE_TABLE`], created at startup) and acks it only then; with
//!   `MQKIT_DLQ_ALERT_WEBHOOK` it also posts rate-limited alerts.
//!
//! Startup rules, checked before anything connects: a webhook without an
//! archive URL is an error ([`Error::AlertWithoutArchive`]), and so is an
//! archive URL in a binary built without the `dlq` feature
//! ([`Error::DlqFeatureDisabled`]).

pub mod letter;

#[cfg(feature = "dlq")]
mod alert;
#[cfg(feature = "dlq")]
mod archive;
#[cfg(any(feature = "dlq", feature = "cli"))]
pub(crate) mod http;
#[cfg(feature = "dlq")]
mod store;

pub use letter::{DeadLetter, Origin};

use crate::config::Config;
use crate::consumer::ConsumerSpec;
use crate::error::Error;

/// The archive table: one row per dead letter, unique on
/// `(original_queue, message_id, failed_at)`.
pub const ARCHIVE_TABLE: &str = "mqkit_dead_letters";

#[cfg(feature = "dlq")]
pub(crate) use archive::Archiver;

use crate::broker::SessionTask;

/// Without the `dlq` feature there is never an archiver.
#[cfg(not(feature = "dlq"))]
#[derive(Debug)]
pub(crate) enum Archiver {}

#[cfg(not(feature = "dlq"))]
impl Archiver {
    fn start(
        self,
        _stop: tokio_util::sync::CancellationToken,
    ) -> (Vec<SessionTask>, crate::idempotency::BoxFuture<'static, ()>) {
        match self {}
    }
}

/// Splits the archiver (if any) into its DLQ consumers, which the broker
/// supervisor runs on the service's connection in every session, and its
/// background work (table migration, alerts), which [`beside`] runs until
/// `stop`.
pub(crate) fn start(
    archiver: Option<Archiver>,
    stop: tokio_util::sync::CancellationToken,
) -> (
    Vec<SessionTask>,
    Option<crate::idempotency::BoxFuture<'static, ()>>,
) {
    match archiver {
        Some(archiver) => {
            let (tasks, background) = archiver.start(stop);
            (tasks, Some(background))
        }
        None => (Vec::new(), None),
    }
}

/// Checks the dead-letter settings and builds the archiver if one is
/// configured (nothing connects yet).
pub(crate) fn prepare<'a>(
    config: &Config,
    specs: impl IntoIterator<Item = &'a ConsumerSpec>,
) -> Result<Option<Archiver>, Error> {
    if config.dlq_alert_webhook.is_some() && config.dlq_archive_url.is_none() {
        return Err(Error::AlertWithoutArchive);
    }
    let Some(url) = &config.dlq_archive_url else {
        return Ok(None);
    };
    #[cfg(feature = "dlq")]
    {
        Archiver::new(config, url, specs).map(Some)
    }
    #[cfg(not(feature = "dlq"))]
    {
        let _ = (url, specs.into_iter().count());
        Err(Error::DlqFeatureDisabled)
    }
}

/// Runs `service` (the broker supervisor) and, when configured, the
/// archiver's background work beside it; `stop` (a child of the shutdown
/// token) is cancelled when the service ends for any reason, and the
/// background work is awaited (pending alerts are sent).
pub(crate) async fn beside<T>(
    service: impl std::future::Future<Output = T>,
    background: Option<crate::idempotency::BoxFuture<'static, ()>>,
    stop: tokio_util::sync::CancellationToken,
) -> T {
    let Some(background) = background else {
        return service.await;
    };
    let archiving = tokio::spawn(background);
    let result = service.await;
    stop.cancel();
    let _ = archiving.await;
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
        let err = prepare(&config, []).map(|_| ()).map_err(|e| e.to_string());
        let err = err.err().unwrap_or_default();
        assert!(
            err.contains("MQKIT_DLQ_ALERT_WEBHOOK is set but MQKIT_DLQ_ARCHIVE_URL is not"),
            "{err}"
        );
        assert!(matches!(prepare(&Config::default(), []), Ok(None)));
    }

    #[cfg(not(feature = "dlq"))]
    #[test]
    fn an_archive_url_without_the_feature_is_refused() {
        let config = Config {
            dlq_archive_url: Some("mysql://root:pw@127.0.0.1:3306/test".into()),
            ..Config::default()
        };
        let err = prepare(&config, []).map(|_| ()).map_err(|e| e.to_string());
        let err = err.err().unwrap_or_default();
        assert!(err.contains("without mqkit's `dlq` feature"), "{err}");
        assert!(!err.contains("pw@"), "{err}");
    }

    #[cfg(feature = "dlq")]
    #[tokio::test]
    async fn bad_urls_are_startup_errors_with_secrets_masked() {
        let config = Config {
            dlq_archive_url: Some("postgres://u:pw@h/db".into()),
            ..Config::default()
        };
        let err = prepare(&config, []).map(|_| ()).map_err(|e| e.to_string());
        let err = err.err().unwrap_or_default();
        assert!(
            err.starts_with("MQKIT_DLQ_ARCHIVE_URL=postgres://u:****@h/db: not a MySQL"),
            "{err}"
        );
        let config = Config {
            dlq_archive_url: Some("mysql://u:pw@127.0.0.1:3306/test".into()),
            dlq_alert_webhook: Some("https://hooks.example/x?key=hookpw".into()),
            ..Config::default()
        };
        let err = prepare(&config, []).map(|_| ()).map_err(|e| e.to_string());
        let err = err.err().unwrap_or_default();
        assert!(
            err.contains("MQKIT_DLQ_ALERT_WEBHOOK=https://hooks.example/x?key=****"),
            "{err}"
        );
        assert!(err.contains("https is not supported"), "{err}");
        assert!(!err.contains("hookpw"), "{err}");
    }
}
