//! Per-consumer settings operators tune without a rebuild:
//! `MQKIT_CONSUMER_<QUEUE>_PREFETCH`, `_CONCURRENCY`, `_MAX_RETRIES` and
//! `_TIMEOUT`, where `<QUEUE>` is the queue name upper-cased with every
//! character other than a letter or digit written `_`.
//!
//! Entry point: [`apply`], called by the app before anything connects.

use std::collections::BTreeMap;
use std::time::Duration;

use tracing::{info, warn};

use super::config::CONSUMER_PREFIX;
use super::error::Error;
use crate::core::spec::ConsumerSpec;

/// The settings that can be overridden, as variable suffixes.
const SETTINGS: [&str; 4] = ["PREFETCH", "CONCURRENCY", "MAX_RETRIES", "TIMEOUT"];

/// `MQKIT_CONSUMER_<QUEUE>_`: the prefix of one queue's variables.
pub(crate) fn prefix_for(queue: &str) -> String {
    let key: String = queue
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("{CONSUMER_PREFIX}{key}_")
}

/// Applies the overrides in `vars` to `specs`, checks each changed spec as
/// the attribute would be checked, and logs the values in force. A
/// variable that matches no consumer is warned about, not refused (an
/// environment may be shared by several services).
pub(crate) fn apply(
    vars: &BTreeMap<String, String>,
    specs: &mut [ConsumerSpec],
) -> Result<(), Error> {
    // Two queues that differ only in punctuation share variable names; an
    // override would silently apply to both.
    for (i, a) in specs.iter().enumerate() {
        let prefix = prefix_for(&a.queue);
        if let Some(b) = specs[i + 1..]
            .iter()
            .find(|b| prefix_for(&b.queue) == prefix)
            && vars.keys().any(|k| k.starts_with(&prefix))
        {
            return Err(Error::Config(format!(
                "{prefix}* would apply to both queue `{}` and queue `{}`: queue names that differ only in characters other than letters and digits cannot be told apart by these variables; rename one queue or set these values in code",
                a.queue, b.queue
            )));
        }
    }
    let mut used = Vec::new();
    for spec in specs.iter_mut() {
        let prefix = prefix_for(&spec.queue);
        let mut applied = Vec::new();
        for setting in SETTINGS {
            let name = format!("{prefix}{setting}");
            if let Some(value) = vars.get(&name) {
                set(spec, setting, &name, value)?;
                applied.push(format!("{name}={value}"));
                used.push(name);
            }
        }
        if applied.is_empty() {
            continue;
        }
        spec.validate()
            .map_err(|e| Error::Config(format!("{}: {e}", applied.join(", "))))?;
        info!(
            queue = %spec.queue,
            prefetch = spec.prefetch,
            concurrency = spec.concurrency,
            max_retries = spec.max_retries,
            timeout = %humantime::format_duration(spec.timeout),
            overrides = %applied.join(" "),
            "consumer settings overridden from the environment"
        );
    }
    for name in vars.keys().filter(|k| !used.contains(k)) {
        warn!(variable = %name, "this override matches no consumer of this service (the queue part is the queue name upper-cased, other characters as `_`; the setting is PREFETCH, CONCURRENCY, MAX_RETRIES or TIMEOUT); ignored");
    }
    Ok(())
}

fn set(spec: &mut ConsumerSpec, setting: &str, name: &str, value: &str) -> Result<(), Error> {
    let bad = |expected: &str| Error::Config(format!("{name}={value:?} is not {expected}"));
    let trimmed = value.trim();
    match setting {
        "PREFETCH" => {
            let n: u16 = trimmed
                .parse()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| bad("a prefetch count between 1 and 65535"))?;
            // Like the attribute: concurrency follows prefetch unless it was set apart.
            *spec = spec.clone().prefetch(n);
        }
        "CONCURRENCY" => {
            spec.concurrency = trimmed
                .parse()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| bad("a number of handlers between 1 and 65535"))?;
        }
        "MAX_RETRIES" => {
            spec.max_retries = trimmed
                .parse()
                .map_err(|_| bad("a whole number of retries (0 or more)"))?;
        }
        _ => {
            let timeout: Duration = humantime::parse_duration(trimmed)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| {
                    bad("a duration greater than zero such as \"250ms\", \"30s\" or \"2m\"")
                })?;
            spec.timeout = timeout;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(list: &[(&str, &str)]) -> BTreeMap<String, String> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn error(list: &[(&str, &str)], spec: ConsumerSpec) -> String {
        let mut specs = [spec];
        apply(&vars(list), &mut specs)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn names_queues_as_operators_write_them() {
        assert_eq!(prefix_for("order"), "MQKIT_CONSUMER_ORDER_");
        assert_eq!(
            prefix_for("billing.v2-events"),
            "MQKIT_CONSUMER_BILLING_V2_EVENTS_"
        );
    }

    #[test]
    fn applies_each_setting() {
        let mut specs = [ConsumerSpec::new("order.created")];
        let env = vars(&[
            ("MQKIT_CONSUMER_ORDER_CREATED_PREFETCH", "50"),
            ("MQKIT_CONSUMER_ORDER_CREATED_MAX_RETRIES", "7"),
            ("MQKIT_CONSUMER_ORDER_CREATED_TIMEOUT", "2m"),
            ("MQKIT_CONSUMER_OTHER_PREFETCH", "3"),
        ]);
        assert!(apply(&env, &mut specs).is_ok());
        let s = &specs[0];
        assert_eq!((s.prefetch, s.concurrency, s.max_retries), (50, 50, 7));
        assert_eq!(s.timeout, Duration::from_secs(120));
        let mut specs = [ConsumerSpec::new("order").prefetch(20).concurrency(4)];
        let env = vars(&[("MQKIT_CONSUMER_ORDER_CONCURRENCY", "8")]);
        assert!(apply(&env, &mut specs).is_ok());
        assert_eq!((specs[0].prefetch, specs[0].concurrency), (20, 8));
    }

    #[test]
    fn refuses_a_variable_two_queues_would_share() {
        let mut specs = [
            ConsumerSpec::new("order.created"),
            ConsumerSpec::new("order-created"),
        ];
        assert!(
            apply(&BTreeMap::new(), &mut specs).is_ok(),
            "no override, no ambiguity"
        );
        let env = vars(&[("MQKIT_CONSUMER_ORDER_CREATED_PREFETCH", "5")]);
        let e = apply(&env, &mut specs)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.contains("`order.created` and queue `order-created`"),
            "{e}"
        );
    }

    #[test]
    fn refuses_bad_values_naming_the_variable() {
        let e = error(
            &[("MQKIT_CONSUMER_ORDER_PREFETCH", "0")],
            ConsumerSpec::new("order"),
        );
        assert!(e.contains("MQKIT_CONSUMER_ORDER_PREFETCH=\"0\""), "{e}");
        let e = error(
            &[("MQKIT_CONSUMER_ORDER_TIMEOUT", "soon")],
            ConsumerSpec::new("order"),
        );
        assert!(e.contains("MQKIT_CONSUMER_ORDER_TIMEOUT=\"soon\""), "{e}");
        let e = error(
            &[("MQKIT_CONSUMER_ORDER_CONCURRENCY", "11")],
            ConsumerSpec::new("order"),
        );
        assert!(e.contains("MQKIT_CONSUMER_ORDER_CONCURRENCY=11"), "{e}");
        assert!(e.contains("`concurrency` exceeds `prefetch`"), "{e}");
    }
}
