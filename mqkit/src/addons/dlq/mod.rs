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
//!   `MQKIT_DLQ_ALERT_WEBHOOK` it also posts rate-limited alerts
//!   ([`alert`]) in the body of `MQKIT_DLQ_ALERT_FORMAT` ([`format`]). It
//!   joins the service through the app layer's add-on hook (`app::addon`).
//! - [`http`]: the HTTP client (reqwest, rustls) of the webhooks and of
//!   `mqkit dlq list`.
//! - [`browse`] (feature `cli`): the web console's reads of the archive.
//!
//! Startup rules, checked before anything connects: a webhook without an
//! archive URL is an error, and so is an archive URL in a binary built
//! without the `dlq` feature (both in `app::addon`); a bad archive or
//! webhook URL, an unknown alert format, a secret for a format that does
//! not sign, and a CA file that cannot be used are errors here.

#[cfg(any(feature = "dlq", feature = "cli"))]
pub(crate) mod letter;

#[cfg(feature = "dlq")]
mod alert;
#[cfg(feature = "dlq")]
mod archive;
#[cfg(feature = "cli")]
pub(crate) mod browse;
#[cfg(feature = "dlq")]
mod format;
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
        if config.dlq_alert_webhook.is_none()
            && (config.dlq_alert_format.is_some()
                || config.dlq_alert_secret.is_some()
                || config.dlq_alert_ca_file.is_some())
        {
            tracing::warn!(
                "MQKIT_DLQ_ALERT_FORMAT, MQKIT_DLQ_ALERT_SECRET or MQKIT_DLQ_ALERT_CA_FILE is set but MQKIT_DLQ_ALERT_WEBHOOK is not: no alerts are sent"
            );
        }
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

    /// The startup error `prepare` returns for `config`, as text.
    fn startup_error(config: &Config) -> String {
        let err = prepare(config, &[]).map(|_| ()).map_err(|e| e.to_string());
        err.err().unwrap_or_default()
    }

    fn with_webhook(hook: &str) -> Config {
        Config {
            dlq_archive_url: Some("mysql://u:pw@127.0.0.1:3306/test".into()),
            dlq_alert_webhook: Some(hook.into()),
            ..Config::default()
        }
    }

    #[tokio::test]
    async fn bad_urls_are_startup_errors_with_secrets_masked() {
        let config = Config {
            dlq_archive_url: Some("redis://u:pw@h/db".into()),
            ..Config::default()
        };
        let err = startup_error(&config);
        assert!(
            err.starts_with(
                "MQKIT_DLQ_ARCHIVE_URL=redis://u:****@h/db: not a MySQL/MariaDB or PostgreSQL URL"
            ),
            "{err}"
        );
        let postgres = Config {
            dlq_archive_url: Some("postgres://u:pw@127.0.0.1:5432/test".into()),
            ..Config::default()
        };
        assert_eq!(startup_error(&postgres), "");
        let err = startup_error(&with_webhook("ftp://hooks.example/x?key=hookpw"));
        assert!(
            err.starts_with("MQKIT_DLQ_ALERT_WEBHOOK=ftp://hooks.example/x?key=****: "),
            "{err}"
        );
        assert!(err.contains("must start with http:// or https://"), "{err}");
        assert!(!err.contains("hookpw"), "{err}");
        for ok in [
            "http://127.0.0.1:9/x?key=k",
            "https://hooks.example/x?key=k",
        ] {
            assert_eq!(startup_error(&with_webhook(ok)), "", "{ok}");
        }
    }

    #[tokio::test]
    async fn an_unknown_format_is_a_startup_error_listing_the_four() {
        let config = Config {
            dlq_alert_format: Some("teams".into()),
            ..with_webhook("https://hooks.example/x")
        };
        assert_eq!(
            startup_error(&config),
            "MQKIT_DLQ_ALERT_FORMAT=teams: unknown format; use one of wecom, dingtalk, feishu, slack"
        );
        for name in ["wecom", "DingTalk", "feishu", "slack"] {
            let config = Config {
                dlq_alert_format: Some(name.into()),
                ..with_webhook("https://hooks.example/x")
            };
            assert_eq!(startup_error(&config), "", "{name}");
        }
    }

    #[tokio::test]
    async fn a_secret_for_a_format_that_does_not_sign_is_a_startup_error_never_shown() {
        for (format, signs) in [
            (None, false),
            (Some("wecom"), false),
            (Some("slack"), false),
            (Some("dingtalk"), true),
            (Some("feishu"), true),
        ] {
            let config = Config {
                dlq_alert_format: format.map(Into::into),
                dlq_alert_secret: Some("SECdonotshow".into()),
                ..with_webhook("https://hooks.example/x")
            };
            let err = startup_error(&config);
            assert!(!format!("{config:?}").contains("SECdonotshow"));
            if signs {
                assert_eq!(err, "", "{format:?}");
                continue;
            }
            let name = format.unwrap_or("wecom");
            assert_eq!(
                err,
                format!(
                    "MQKIT_DLQ_ALERT_SECRET=****: MQKIT_DLQ_ALERT_FORMAT={name} does not sign its requests, so the secret would be unused; set MQKIT_DLQ_ALERT_FORMAT=dingtalk or feishu, or unset MQKIT_DLQ_ALERT_SECRET"
                )
            );
        }
    }

    #[tokio::test]
    async fn a_ca_file_that_cannot_be_used_is_a_startup_error_naming_it() {
        let dir = std::env::temp_dir().join(format!("mqkit-ca-prepare-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let missing = dir.join("missing.pem");
        let not_pem = dir.join("not.pem");
        let _ = std::fs::write(&not_pem, "hello\n");
        for (path, problem) in [
            (&missing, "cannot read it: No such file or directory"),
            (&not_pem, "no certificate in it"),
        ] {
            let config = Config {
                dlq_alert_ca_file: Some(path.clone()),
                ..with_webhook("https://hooks.example/x")
            };
            let err = startup_error(&config);
            assert!(
                err.starts_with(&format!(
                    "MQKIT_DLQ_ALERT_CA_FILE={}: {problem}",
                    path.display()
                )),
                "{err}"
            );
            assert!(
                err.ends_with("it must be a PEM file of CA certificates"),
                "{err}"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
