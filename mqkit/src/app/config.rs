//! [`Config`]: the process-wide settings, from the environment
//! (`MQKIT_*`, see ARCHITECTURE.md "Configuration") or set on [`App`](crate::App).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::error::Error;
use crate::amqp::connection::ConnectOptions;
use crate::core::mask::{mask_password, mask_secrets};

/// Default broker URL.
pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// Process-wide settings.
#[derive(Clone, PartialEq, Eq)]
pub struct Config {
    /// Broker URLs, tried in turn (cluster nodes).
    pub amqp_urls: Vec<String>,
    /// Redis URL for idempotency records; `None` = in-process store.
    pub redis_url: Option<String>,
    /// AMQP heartbeat interval.
    pub heartbeat: Duration,
    /// How long in-flight handlers may run on after a shutdown signal.
    pub shutdown_grace: Duration,
    /// How long startup keeps trying to reach the broker before failing.
    pub startup_timeout: Duration,
    /// The `connection_name` client property shown in the management UI.
    pub connection_name: String,
    /// MySQL/MariaDB or PostgreSQL URL of the dead-letter archive
    /// (`MQKIT_DLQ_ARCHIVE_URL`, `mysql://…` or `postgres://…`):
    /// set = every DLQ of the service's consumers is archived there (needs
    /// the `dlq` feature); `None` = DLQs are left alone.
    pub dlq_archive_url: Option<String>,
    /// How long archived dead letters are kept
    /// (`MQKIT_DLQ_ARCHIVE_RETENTION`, default 30 days); older rows are
    /// deleted in batches by the archiver.
    pub dlq_archive_retention: Duration,
    /// Webhook for dead-letter alerts (`MQKIT_DLQ_ALERT_WEBHOOK`, `http://`
    /// or `https://`); needs [`Config::dlq_archive_url`], since alerts come
    /// from the archiver.
    pub dlq_alert_webhook: Option<String>,
    /// The alert body the webhook expects (`MQKIT_DLQ_ALERT_FORMAT`):
    /// `wecom` (`None` = this), `dingtalk`, `feishu` or `slack`; anything
    /// else is a startup error.
    pub dlq_alert_format: Option<String>,
    /// The signing secret of a `dingtalk` or `feishu` robot
    /// (`MQKIT_DLQ_ALERT_SECRET`); a startup error with a format that does
    /// not sign. Shown as `****` in `Debug`, never logged.
    pub dlq_alert_secret: Option<String>,
    /// A PEM file of CA certificates trusted for the webhook besides the
    /// platform's (`MQKIT_DLQ_ALERT_CA_FILE`), for a private CA; a file that
    /// cannot be read or holds no usable certificate is a startup error.
    pub dlq_alert_ca_file: Option<PathBuf>,
    /// Timings of the archiver and its alerts (not read from the environment).
    pub dlq_tuning: DlqTuning,
    /// Where `/livez`, `/healthz`, `/readyz` and `/metrics` are served
    /// (`MQKIT_HTTP_ADDR`, e.g. `127.0.0.1:9464`); `None` = no HTTP server.
    pub http_addr: Option<String>,
    /// Database of the transactional consumers (those whose handler takes
    /// `mqkit::Tx`), `MQKIT_DATABASE_URL`: `postgres://…` or `mysql://…`.
    pub database_url: Option<String>,
    /// The outbox relay, sweeper and retention (`MQKIT_OUTBOX_RETENTION`
    /// sets [`OutboxTuning::retention`]).
    pub outbox: OutboxTuning,
    /// Per-consumer overrides (`MQKIT_CONSUMER_<QUEUE>_PREFETCH`,
    /// `_CONCURRENCY`, `_MAX_RETRIES`, `_TIMEOUT`), by variable name, as
    /// found in the environment; applied and checked when the app starts.
    pub consumer_overrides: BTreeMap<String, String>,
}

/// Timings of the dead-letter archiver and its alerts. The defaults suit
/// production; tests shorten them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DlqTuning {
    /// At most one alert per queue per window; dead letters arriving within
    /// it are folded into the next alert's count. Default 60 s.
    pub alert_window: Duration,
    /// How long one webhook POST may take. Default 5 s.
    pub alert_timeout: Duration,
    /// How long a dead letter that could not be stored is held before it is
    /// nacked back to its DLQ (so an archive outage is no hot loop). Default 5 s.
    pub retry_delay: Duration,
    /// How often retention deletes expired rows. Default 60 s.
    pub retention_interval: Duration,
    /// Rows per retention `DELETE`. Default 1000.
    pub delete_batch: i64,
    /// Pause between two retention batches. Default 50 ms.
    pub delete_pause: Duration,
}

/// How transactional consumers' outbox and inbox are looked after. The
/// defaults suit production; tests shorten them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxTuning {
    /// How long sent outbox rows and inbox rows are kept
    /// (`MQKIT_OUTBOX_RETENTION`, default 7 days). An inbox row is kept at
    /// least its consumer's `idempotency_ttl`.
    pub retention: Duration,
    /// How often the sweeper looks for unsent rows. Default 2 s.
    pub sweep_interval: Duration,
    /// How old an unsent row must be before the sweeper takes it (the
    /// relay normally sends it at once). Default 5 s.
    pub sweep_after: Duration,
    /// How often retention runs. Default 60 s.
    pub retention_interval: Duration,
    /// Rows per retention `DELETE`. Default 1000.
    pub delete_batch: i64,
    /// Pause between two retention batches. Default 50 ms.
    pub delete_pause: Duration,
}

impl Default for OutboxTuning {
    fn default() -> Self {
        OutboxTuning {
            retention: Duration::from_secs(7 * 24 * 3600),
            sweep_interval: Duration::from_secs(2),
            sweep_after: Duration::from_secs(5),
            retention_interval: Duration::from_secs(60),
            delete_batch: 1000,
            delete_pause: Duration::from_millis(50),
        }
    }
}

impl Default for DlqTuning {
    fn default() -> Self {
        DlqTuning {
            alert_window: Duration::from_secs(60),
            alert_timeout: Duration::from_secs(5),
            retry_delay: Duration::from_secs(5),
            retention_interval: Duration::from_secs(60),
            delete_batch: 1000,
            delete_pause: Duration::from_millis(50),
        }
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("amqp_urls", &self.masked_urls())
            .field("redis_url", &self.redis_url.as_deref().map(mask_password))
            .field("heartbeat", &self.heartbeat)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("startup_timeout", &self.startup_timeout)
            .field("connection_name", &self.connection_name)
            .field(
                "dlq_archive_url",
                &self.dlq_archive_url.as_deref().map(mask_password),
            )
            .field(
                "dlq_alert_webhook",
                &self.dlq_alert_webhook.as_deref().map(mask_secrets),
            )
            .field("dlq_archive_retention", &self.dlq_archive_retention)
            .field("dlq_alert_format", &self.dlq_alert_format)
            .field(
                "dlq_alert_secret",
                &self.dlq_alert_secret.as_ref().map(|_| "****"),
            )
            .field("dlq_alert_ca_file", &self.dlq_alert_ca_file)
            .field("dlq_tuning", &self.dlq_tuning)
            .field("http_addr", &self.http_addr)
            .field(
                "database_url",
                &self.database_url.as_deref().map(mask_password),
            )
            .field("outbox", &self.outbox)
            .field("consumer_overrides", &self.consumer_overrides)
            .finish()
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            amqp_urls: vec![DEFAULT_AMQP_URL.to_owned()],
            redis_url: None,
            heartbeat: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(30),
            startup_timeout: Duration::from_secs(15),
            connection_name: default_connection_name(),
            dlq_archive_url: None,
            dlq_archive_retention: Duration::from_secs(30 * 86_400),
            dlq_alert_webhook: None,
            dlq_alert_format: None,
            dlq_alert_secret: None,
            dlq_alert_ca_file: None,
            dlq_tuning: DlqTuning::default(),
            http_addr: None,
            database_url: None,
            outbox: OutboxTuning::default(),
            consumer_overrides: BTreeMap::new(),
        }
    }
}

impl Config {
    /// Reads `MQKIT_AMQP_URL`, `MQKIT_REDIS_URL`, `MQKIT_HEARTBEAT_SECS`,
    /// `MQKIT_SHUTDOWN_GRACE_SECS`, `MQKIT_HTTP_ADDR`,
    /// `MQKIT_DLQ_ARCHIVE_URL`, `MQKIT_DLQ_ALERT_WEBHOOK`,
    /// `MQKIT_DLQ_ARCHIVE_RETENTION`, `MQKIT_DLQ_ALERT_FORMAT`,
    /// `MQKIT_DLQ_ALERT_SECRET`, `MQKIT_DLQ_ALERT_CA_FILE`,
    /// `MQKIT_DATABASE_URL`, `MQKIT_OUTBOX_RETENTION` and every
    /// `MQKIT_CONSUMER_*` override; unset variables keep their defaults.
    pub fn from_env() -> Result<Self, Error> {
        // Variables whose name or value is not Unicode are none of ours.
        Self::from_vars(
            std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))),
        )
    }

    /// [`Config::from_env`] over a list of variables (for tests).
    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> Result<Self, Error> {
        let vars: BTreeMap<String, String> = vars
            .into_iter()
            .filter(|(k, _)| k.starts_with("MQKIT_"))
            .collect();
        let mut config = Self::from_lookup(|name| vars.get(name).cloned())?;
        config.consumer_overrides = vars
            .into_iter()
            .filter(|(k, _)| k.starts_with(CONSUMER_PREFIX))
            .collect();
        Ok(config)
    }

    /// [`Config::from_env`] over any lookup function (for tests), without
    /// the `MQKIT_CONSUMER_*` overrides (a lookup cannot list them).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let mut config = Config {
            http_addr: get("MQKIT_HTTP_ADDR").filter(|s| !s.trim().is_empty()),
            ..Config::default()
        };
        if let Some(urls) = get("MQKIT_AMQP_URL").filter(|s| !s.trim().is_empty()) {
            config.amqp_urls = split_urls(&urls);
        }
        config.redis_url = get("MQKIT_REDIS_URL").filter(|s| !s.trim().is_empty());
        config.dlq_archive_url = get("MQKIT_DLQ_ARCHIVE_URL").filter(|s| !s.trim().is_empty());
        config.dlq_alert_webhook = get("MQKIT_DLQ_ALERT_WEBHOOK").filter(|s| !s.trim().is_empty());
        config.dlq_alert_format = get("MQKIT_DLQ_ALERT_FORMAT").filter(|s| !s.trim().is_empty());
        config.dlq_alert_secret = get("MQKIT_DLQ_ALERT_SECRET").filter(|s| !s.trim().is_empty());
        config.dlq_alert_ca_file = get("MQKIT_DLQ_ALERT_CA_FILE")
            .filter(|s| !s.trim().is_empty())
            .map(PathBuf::from);
        config.database_url = get("MQKIT_DATABASE_URL").filter(|s| !s.trim().is_empty());
        if let Some(v) = get("MQKIT_OUTBOX_RETENTION").filter(|s| !s.trim().is_empty()) {
            config.outbox.retention = retention("MQKIT_OUTBOX_RETENTION", &v)?;
        }
        if let Some(v) = get("MQKIT_DLQ_ARCHIVE_RETENTION").filter(|s| !s.trim().is_empty()) {
            config.dlq_archive_retention = retention("MQKIT_DLQ_ARCHIVE_RETENTION", &v)?;
        }
        if let Some(v) = get("MQKIT_HEARTBEAT_SECS") {
            config.heartbeat = Duration::from_secs(secs("MQKIT_HEARTBEAT_SECS", &v, 1, 3600)?);
        }
        if let Some(v) = get("MQKIT_SHUTDOWN_GRACE_SECS") {
            config.shutdown_grace =
                Duration::from_secs(secs("MQKIT_SHUTDOWN_GRACE_SECS", &v, 0, 86_400)?);
        }
        Ok(config)
    }

    /// The broker URLs with passwords masked, comma-separated.
    pub fn masked_urls(&self) -> String {
        self.connect_options().masked_urls()
    }

    /// How the AMQP layer connects for these settings.
    pub(crate) fn connect_options(&self) -> ConnectOptions {
        ConnectOptions::new(
            self.amqp_urls.clone(),
            self.heartbeat,
            self.connection_name.clone(),
        )
    }
}

/// Every per-consumer override variable starts with this.
pub(crate) const CONSUMER_PREFIX: &str = "MQKIT_CONSUMER_";

/// Splits a comma-separated URL list, dropping empty entries.
pub(crate) fn split_urls(urls: &str) -> Vec<String> {
    urls.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A retention duration (`7d`, `36h`, `30d`) of at least a second.
fn retention(name: &str, v: &str) -> Result<Duration, Error> {
    humantime::parse_duration(v.trim())
        .ok()
        .filter(|d| *d >= Duration::from_secs(1))
        .ok_or_else(|| {
            Error::Config(format!(
                "{name}={v:?} is not a duration of at least 1s (e.g. \"30d\", \"36h\")"
            ))
        })
}

fn secs(name: &str, value: &str, min: u64, max: u64) -> Result<u64, Error> {
    match value.trim().parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(Error::Config(format!(
            "{name}={value:?} is not a whole number of seconds between {min} and {max}"
        ))),
    }
}

fn default_connection_name() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "mqkit".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_environment_table() {
        let env = |name: &str| match name {
            "MQKIT_AMQP_URL" => Some("amqp://a:pw@n1/%2f, amqp://a:pw@n2/%2f".to_owned()),
            "MQKIT_REDIS_URL" => Some("redis://127.0.0.1:6379".to_owned()),
            "MQKIT_HEARTBEAT_SECS" => Some("5".to_owned()),
            _ => None,
        };
        let c = Config::from_lookup(env).unwrap_or_default();
        assert_eq!(c.amqp_urls.len(), 2);
        assert_eq!(c.masked_urls(), "amqp://a:****@n1/%2f,amqp://a:****@n2/%2f");
        assert_eq!(c.heartbeat, Duration::from_secs(5));
        assert_eq!(c.shutdown_grace, Duration::from_secs(30));
        assert!(c.redis_url.is_some());
        assert!(!format!("{c:?}").contains("pw"));
    }

    #[test]
    fn reads_the_dead_letter_variables_and_masks_them() {
        let env = |name: &str| match name {
            "MQKIT_DLQ_ARCHIVE_URL" => Some("mysql://root:dbpw@127.0.0.1:3306/test".to_owned()),
            "MQKIT_DLQ_ALERT_WEBHOOK" => Some("http://127.0.0.1:9/hook?key=hookpw".to_owned()),
            "MQKIT_DLQ_ALERT_FORMAT" => Some("dingtalk".to_owned()),
            "MQKIT_DLQ_ALERT_SECRET" => Some("SECsignpw".to_owned()),
            "MQKIT_DLQ_ALERT_CA_FILE" => Some("/etc/mqkit/ca.pem".to_owned()),
            _ => None,
        };
        let c = Config::from_lookup(env).unwrap_or_default();
        assert_eq!(
            c.dlq_archive_url.as_deref(),
            Some("mysql://root:dbpw@127.0.0.1:3306/test")
        );
        assert!(c.dlq_alert_webhook.is_some());
        assert_eq!(c.dlq_alert_format.as_deref(), Some("dingtalk"));
        assert_eq!(c.dlq_alert_secret.as_deref(), Some("SECsignpw"));
        assert_eq!(
            c.dlq_alert_ca_file.as_deref(),
            Some(std::path::Path::new("/etc/mqkit/ca.pem"))
        );
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("dbpw") && !shown.contains("hookpw") && !shown.contains("signpw"),
            "{shown}"
        );
        assert!(
            shown.contains("dlq_alert_secret: Some(\"****\")"),
            "{shown}"
        );
        assert!(
            shown.contains("mysql://root:****@127.0.0.1:3306/test"),
            "{shown}"
        );
        assert!(shown.contains("hook?key=****"), "{shown}");
        assert_eq!(c.dlq_tuning.alert_window, Duration::from_secs(60));
        let empty = Config::from_lookup(|_| None).unwrap_or_default();
        assert_eq!(empty.dlq_archive_url, None);
        assert_eq!(
            empty.dlq_archive_retention,
            Duration::from_secs(30 * 86_400)
        );
        let kept = |name: &str| (name == "MQKIT_DLQ_ARCHIVE_RETENTION").then(|| "90d".to_owned());
        let kept = Config::from_lookup(kept).unwrap_or_default();
        assert_eq!(kept.dlq_archive_retention, Duration::from_secs(90 * 86_400));
        let bad =
            |name: &str| (name == "MQKIT_DLQ_ARCHIVE_RETENTION").then(|| "forever".to_owned());
        let err = Config::from_lookup(bad).err().map(|e| e.to_string());
        assert!(
            err.as_deref()
                .is_some_and(|e| e.contains("MQKIT_DLQ_ARCHIVE_RETENTION=\"forever\"")),
            "{err:?}"
        );
    }

    #[test]
    fn reads_the_database_variables() {
        let env = |name: &str| match name {
            "MQKIT_DATABASE_URL" => Some("postgres://app:dbpw@127.0.0.1/test".to_owned()),
            "MQKIT_OUTBOX_RETENTION" => Some("36h".to_owned()),
            _ => None,
        };
        let c = Config::from_lookup(env).unwrap_or_default();
        assert_eq!(c.outbox.retention, Duration::from_secs(36 * 3600));
        assert!(c.database_url.is_some());
        assert!(!format!("{c:?}").contains("dbpw"));
        let default = Config::from_lookup(|_| None).unwrap_or_default();
        assert_eq!(default.outbox.retention, Duration::from_secs(7 * 86_400));
        let bad = |name: &str| (name == "MQKIT_OUTBOX_RETENTION").then(|| "weekly".to_owned());
        let err = Config::from_lookup(bad)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("MQKIT_OUTBOX_RETENTION=\"weekly\""), "{err}");
    }

    #[test]
    fn rejects_bad_numbers_with_the_variable_name() {
        let env = |name: &str| (name == "MQKIT_HEARTBEAT_SECS").then(|| "ten".to_owned());
        let err = Config::from_lookup(env)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("MQKIT_HEARTBEAT_SECS=\"ten\""), "{err}");
    }
}
