//! [`Config`]: the process-wide settings, from the environment
//! (`MQKIT_*`, see DESIGN.md "Configuration") or set on [`App`](crate::App).

use std::time::Duration;

use crate::error::Error;
use crate::mask::mask_password;

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
        }
    }
}

impl Config {
    /// Reads `MQKIT_AMQP_URL`, `MQKIT_REDIS_URL`, `MQKIT_HEARTBEAT_SECS` and
    /// `MQKIT_SHUTDOWN_GRACE_SECS`; unset variables keep their defaults.
    pub fn from_env() -> Result<Self, Error> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`Config::from_env`] over any lookup function (for tests).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let mut config = Config::default();
        if let Some(urls) = get("MQKIT_AMQP_URL").filter(|s| !s.trim().is_empty()) {
            config.amqp_urls = split_urls(&urls);
        }
        config.redis_url = get("MQKIT_REDIS_URL").filter(|s| !s.trim().is_empty());
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
        self.amqp_urls
            .iter()
            .map(|u| mask_password(u))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Splits a comma-separated URL list, dropping empty entries.
pub fn split_urls(urls: &str) -> Vec<String> {
    urls.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
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
    fn rejects_bad_numbers_with_the_variable_name() {
        let env = |name: &str| (name == "MQKIT_HEARTBEAT_SECS").then(|| "ten".to_owned());
        let err = Config::from_lookup(env)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("MQKIT_HEARTBEAT_SECS=\"ten\""), "{err}");
    }
}
