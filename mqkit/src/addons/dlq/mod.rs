//! Dead-letter operations (ARCHITECTURE.md, "Dead-letter operations").
//!
//! - [`letter`]: what a dead letter says about itself (original queue, error
//!   kind and text, attempts, failed-at), from mqkit's `x-mqkit-*` headers or
//!   RabbitMQ's `x-death`; shared by the archiver and the `mqkit` CLI.
//! - The archiver (feature `dlq`): with `MQKIT_DLQ_ARCHIVE_URL` set,
//!   [`run`](crate::run) consumes every DLQ of the service's consumers,
//!   stores one row per dead letter in MySQL/MariaDB or PostgreSQL (table
//!   `mqkit_dead_letters`, created at startup; [`store`], which the CLI's
//!   archive commands share) and acks it only then; deletes rows past
//!   `MQKIT_DLQ_ARCHIVE_RETENTION`; with
//!   `MQKIT_DLQ_ALERT_WEBHOOK` it also posts rate-limited alerts. It joins
//!   the service through the app layer's add-on hook (`app::addon`).
//! - [`browse`] (feature `cli`): the web console's reads of the archive.
//!
//! Startup rules, checked before anything connects: a webhook without an
//! archive URL is an error, and so is an archive URL in a binary built
//! without the `dlq` feature (both in `app::addon`); a bad archive or
//! webhook URL is an error here.

#[cfg(any(feature = "dlq", feature = "cli"))]
pub(crate) mod letter;

#[cfg(feature = "dlq")]
mod alert;
#[cfg(feature = "dlq")]
mod archive;
#[cfg(feature = "cli")]
pub(crate) mod browse;
#[cfg(any(feature = "dlq", feature = "cli"))]
pub(crate) mod http;
#[cfg(any(feature = "dlq", feature = "cli"))]
pub(crate) mod store;

#[cfg(feature = "dlq")]
pub(crate) mod addon {
    use crate::app::addon::{Addon, AddonInput, Prepared};
    use crate::app::config::Config;
    use crate::app::error::Error;
    use crate::core::idempotency::BoxFuture;
    use crate::core::spec::ConsumerSpec;

    use super::archive::Archiver;

    /// The archiver as an add-on (an `AddonFactory`): configured by
    /// `MQKIT_DLQ_ARCHIVE_URL`, `None` without it.
    pub(crate) fn factory<'a>(
        input: &'a AddonInput<'a>,
    ) -> BoxFuture<'a, Result<Option<Prepared>, Error>> {
        Box::pin(async move { prepare(input.config, input.specs) })
    }

    pub(crate) fn prepare(
        config: &Config,
        specs: &[ConsumerSpec],
    ) -> Result<Option<Prepared>, Error> {
        let Some(url) = &config.dlq_archive_url else {
            return Ok(None);
        };
        let archiver = Archiver::new(config, url, specs)?;
        Ok(Some(Prepared {
            inbox: None,
            start: Box::new(move |stop, _publisher| {
                let (session_tasks, background) = archiver.start(stop);
                Addon {
                    session_tasks,
                    background,
                    before_close: None,
                }
            }),
        }))
    }
}

#[cfg(all(test, feature = "dlq"))]
mod tests {
    use super::addon::prepare;
    use crate::app::config::Config;

    #[tokio::test]
    async fn bad_urls_are_startup_errors_with_secrets_masked() {
        let config = Config {
            dlq_archive_url: Some("redis://u:pw@h/db".into()),
            ..Config::default()
        };
        let err = prepare(&config, &[]).map(|_| ()).map_err(|e| e.to_string());
        let err = err.err().unwrap_or_default();
        assert!(
            err.starts_with(
                "MQKIT_DLQ_ARCHIVE_URL=redis://u:****@h/db: not a MySQL/MariaDB or PostgreSQL URL"
            ),
            "{err}"
        );
        let config = Config {
            dlq_archive_url: Some("postgres://u:pw@127.0.0.1:5432/test".into()),
            ..Config::default()
        };
        assert!(prepare(&config, &[]).is_ok());
        let config = Config {
            dlq_archive_url: Some("mysql://u:pw@127.0.0.1:3306/test".into()),
            dlq_alert_webhook: Some("https://hooks.example/x?key=hookpw".into()),
            ..Config::default()
        };
        let err = prepare(&config, &[]).map(|_| ()).map_err(|e| e.to_string());
        let err = err.err().unwrap_or_default();
        assert!(
            err.contains("MQKIT_DLQ_ALERT_WEBHOOK=https://hooks.example/x?key=****"),
            "{err}"
        );
        assert!(err.contains("https is not supported"), "{err}");
        assert!(!err.contains("hookpw"), "{err}");
    }
}
