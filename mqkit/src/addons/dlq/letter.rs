//! What a dead letter says about itself. [`DeadLetter::read`] takes the
//! `x-mqkit-*` headers mqkit writes (ARCHITECTURE.md rule 3) and falls back to
//! RabbitMQ's own `x-death` header for dead letters the broker produced (a
//! TTL, a length limit, a reject with `requeue=false`). Shared by the
//! archiver and the `mqkit dlq` commands, so both agree on the original
//! queue, the error kind and the failure time.
//!
//! Also: [`replay_properties`] (the properties of a replayed copy),
//! [`headers_json`] / [`properties_json`] and [`business_key`].

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

use crate::core::headers::{self, FieldValue, Headers, Properties, attempt_from};
#[cfg(feature = "dlq")]
use crate::core::idempotency::KeyBuilder;
#[cfg(feature = "dlq")]
use crate::core::spec::ConsumerSpec;

/// Headers a replayed copy loses: the attempt counter, mqkit's failure
/// headers and RabbitMQ's dead-letter history (a replayed message starts
/// afresh; clients should not publish `x-death` themselves).
#[cfg(feature = "cli")]
const FAILURE_HEADERS: &[&str] = &[
    headers::ATTEMPT,
    headers::ERROR,
    headers::ERROR_KIND,
    headers::ATTEMPTS,
    headers::ORIGINAL_QUEUE,
    headers::FAILED_AT,
    headers::BUSY_REQUEUES,
    headers::BUSY_SINCE,
    headers::BUSY_REPORTED,
    "x-death",
    "x-first-death-queue",
    "x-first-death-reason",
    "x-first-death-exchange",
    "x-last-death-queue",
    "x-last-death-reason",
    "x-last-death-exchange",
];

/// 9999-12-31T23:59:59Z, the last second RFC 3339 can write.
const LAST_RFC3339_SECOND: u64 = 253_402_300_799;

/// Who dead-lettered a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// mqkit, with `x-mqkit-*` headers.
    Mqkit,
    /// RabbitMQ (`x-death`): TTL, length limit, reject without requeue, or
    /// mqkit's fallback when its own DLQ publish was not confirmed.
    Broker,
    /// Neither: published straight into the DLQ.
    Unknown,
}

/// The facts about one dead letter, from its properties.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeadLetter {
    /// The queue the message failed on: `x-mqkit-original-queue`, else the
    /// queue of the latest `x-death` entry; `None` when nothing says.
    pub(crate) original_queue: Option<String>,
    /// `x-mqkit-error-kind`, else the `x-death` reason (`expired`, `maxlen`,
    /// `rejected`, `delivery_limit`), else `unknown`.
    pub(crate) error_kind: String,
    /// `x-mqkit-error`, else a sentence about the broker's reason.
    pub(crate) error: String,
    /// `x-mqkit-attempts`, else the `x-mqkit-attempt` the message carried.
    pub(crate) attempts: Option<u32>,
    /// `x-mqkit-failed-at`, else the time of the latest `x-death` entry.
    pub(crate) failed_at: Option<SystemTime>,
    /// The AMQP message id.
    pub(crate) message_id: Option<String>,
    /// `x-mqkit-replays` (0 when absent).
    pub(crate) replays: u32,
    /// Who dead-lettered it.
    pub(crate) origin: Origin,
}

impl DeadLetter {
    /// Reads a dead letter's properties.
    pub(crate) fn read(properties: &Properties) -> DeadLetter {
        let empty = Headers::new();
        let headers = properties.headers.as_ref().unwrap_or(&empty);
        let get = |name: &str| headers.get(name);
        let death = latest_death(headers);
        // An empty kind or reason says nothing: treated as absent.
        let non_empty = |s: &String| !s.trim().is_empty();
        let mqkit_kind = get(headers::ERROR_KIND)
            .and_then(FieldValue::to_text)
            .filter(non_empty);
        let origin = match (&mqkit_kind, &death) {
            (Some(_), _) => Origin::Mqkit,
            (None, Some(_)) => Origin::Broker,
            (None, None) => Origin::Unknown,
        };
        let death_field = |name: &str| death.and_then(|d| d.get(name));
        let death_queue = death_field("queue").and_then(FieldValue::to_text);
        let death_reason = death_field("reason")
            .and_then(FieldValue::to_text)
            .filter(non_empty);
        let (error_kind, error) = match (mqkit_kind, &death_reason) {
            (Some(kind), _) => (
                kind,
                get(headers::ERROR)
                    .and_then(FieldValue::to_text)
                    .unwrap_or_default(),
            ),
            (None, Some(reason)) => (
                reason.clone(),
                broker_error(reason, death_queue.as_deref().unwrap_or("?")),
            ),
            (None, None) => (
                "unknown".to_owned(),
                "no x-mqkit-error-kind or x-death header: published straight into the DLQ?"
                    .to_owned(),
            ),
        };
        let attempts = get(headers::ATTEMPTS)
            .and_then(FieldValue::as_i64)
            .or_else(|| get(headers::ATTEMPT).map(|v| i64::from(attempt_from(Some(v)))))
            .and_then(|n| u32::try_from(n).ok());
        let failed_at = get(headers::FAILED_AT)
            .and_then(FieldValue::to_text)
            .and_then(|s| humantime::parse_rfc3339_weak(s.trim()).ok())
            .or_else(|| match death_field("time") {
                // RFC 3339 (and the archive's DATETIME) end at year 9999; a
                // later (or overflowing) time from a foreign header is no time.
                Some(FieldValue::Timestamp(secs)) if *secs <= LAST_RFC3339_SECOND => {
                    UNIX_EPOCH.checked_add(Duration::from_secs(*secs))
                }
                _ => None,
            });
        DeadLetter {
            original_queue: get(headers::ORIGINAL_QUEUE)
                .and_then(FieldValue::to_text)
                .filter(|q| !q.is_empty())
                .or(death_queue),
            error_kind,
            error,
            attempts,
            failed_at,
            message_id: properties.message_id.clone(),
            replays: get(headers::REPLAYS)
                .and_then(FieldValue::as_i64)
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(0),
            origin,
        }
    }

    /// `failed_at` as RFC 3339 with milliseconds, or `-`.
    #[cfg(feature = "cli")]
    pub(crate) fn failed_at_text(&self) -> String {
        self.failed_at
            .map(|t| humantime::format_rfc3339_millis(t).to_string())
            .unwrap_or_else(|| "-".to_owned())
    }
}

/// The most recent entry of RabbitMQ's `x-death` list (it keeps the most
/// recent first).
fn latest_death(headers: &Headers) -> Option<&Headers> {
    headers
        .get("x-death")?
        .as_array()?
        .iter()
        .find_map(FieldValue::as_table)
}

fn broker_error(reason: &str, queue: &str) -> String {
    let why = match reason {
        "expired" => "its TTL expired",
        "maxlen" => "the queue's length limit was exceeded",
        "rejected" => "it was rejected or nacked with requeue=false",
        "delivery_limit" => "it exceeded the quorum queue's delivery limit",
        _ => "of an unknown reason",
    };
    format!(
        "dead-lettered by RabbitMQ from queue `{queue}` because {why} (x-death reason {reason})"
    )
}

/// The properties of a replayed copy: no attempt counter, no failure
/// headers, `x-mqkit-replays` one higher; everything else (message id,
/// content type, correlation id, other headers) unchanged, persistent.
#[cfg(feature = "cli")]
pub(crate) fn replay_properties(properties: &Properties) -> Properties {
    let replays = DeadLetter::read(properties).replays.saturating_add(1);
    let mut copy = properties.clone();
    let headers = copy.headers_mut();
    headers.retain(|k, _| !FAILURE_HEADERS.contains(&k));
    headers.insert(headers::REPLAYS, i64::from(replays));
    copy.delivery_mode = Some(2);
    copy
}

/// The properties of an archived dead letter, rebuilt from its
/// `properties` and `headers` columns (the JSON of [`properties_json`] and
/// [`headers_json`]). Header values come back as their JSON shape says:
/// strings as long strings, integers as 64-bit, other numbers as doubles,
/// objects as tables; what the JSON does not say (a header's exact integer
/// width, bytes that were not UTF-8) is not restored. Unreadable JSON gives
/// no properties or headers rather than an error.
#[cfg(feature = "cli")]
pub(crate) fn properties_from_archive(properties: &str, headers: &str) -> Properties {
    let p: Map<String, Value> = serde_json::from_str(properties).unwrap_or_default();
    let text = |k: &str| p.get(k).and_then(Value::as_str).map(str::to_owned);
    let small = |k: &str| {
        p.get(k)
            .and_then(Value::as_u64)
            .and_then(|n| u8::try_from(n).ok())
    };
    let headers = match serde_json::from_str::<Value>(headers) {
        Ok(Value::Object(h)) if !h.is_empty() => Some(table_from_json(h)),
        _ => None,
    };
    Properties {
        content_type: text("content_type"),
        content_encoding: text("content_encoding"),
        headers,
        delivery_mode: small("delivery_mode"),
        priority: small("priority"),
        correlation_id: text("correlation_id"),
        reply_to: text("reply_to"),
        expiration: text("expiration"),
        message_id: text("message_id"),
        timestamp: p.get("timestamp").and_then(Value::as_u64),
        kind: text("type"),
        user_id: text("user_id"),
        app_id: text("app_id"),
    }
}

#[cfg(feature = "cli")]
fn table_from_json(map: Map<String, Value>) -> Headers {
    let mut headers = Headers::new();
    for (k, v) in map {
        headers.insert(k, value_from_json(v));
    }
    headers
}

#[cfg(feature = "cli")]
fn value_from_json(v: Value) -> FieldValue {
    match v {
        Value::Null => FieldValue::Void,
        Value::Bool(b) => FieldValue::Bool(b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => FieldValue::I64(i),
            None => FieldValue::F64(n.as_f64().unwrap_or_default()),
        },
        Value::String(s) => FieldValue::from(s),
        Value::Array(a) => FieldValue::Array(a.into_iter().map(value_from_json).collect()),
        Value::Object(o) => FieldValue::Table(table_from_json(o)),
    }
}

/// Headers as a JSON object: strings as strings (bytes that are not UTF-8
/// lossily), numbers as numbers, timestamps as seconds, tables as objects.
pub(crate) fn headers_json(headers: Option<&Headers>) -> Value {
    Value::Object(
        headers
            .map(|h| {
                h.iter()
                    .map(|(k, v)| (k.to_owned(), value_json(v)))
                    .collect::<Map<_, _>>()
            })
            .unwrap_or_default(),
    )
}

fn value_json(v: &FieldValue) -> Value {
    match v {
        FieldValue::Bool(b) => json!(b),
        FieldValue::I8(n) => json!(n),
        FieldValue::U8(n) => json!(n),
        FieldValue::I16(n) => json!(n),
        FieldValue::U16(n) => json!(n),
        FieldValue::I32(n) => json!(n),
        FieldValue::U32(n) => json!(n),
        FieldValue::I64(n) => json!(n),
        FieldValue::F32(f) => json!(f),
        FieldValue::F64(f) => json!(f),
        FieldValue::Decimal { scale, value } => {
            json!(format!("DecimalValue {{ scale: {scale}, value: {value} }}"))
        }
        FieldValue::ShortString(s) => json!(s),
        FieldValue::LongString(b) | FieldValue::Bytes(b) => json!(String::from_utf8_lossy(b)),
        FieldValue::Array(a) => Value::Array(a.iter().map(value_json).collect()),
        FieldValue::Timestamp(t) => json!(t),
        FieldValue::Table(t) => headers_json(Some(t)),
        FieldValue::Void => Value::Null,
    }
}

/// The properties other than headers, as a JSON object (absent ones left out).
#[cfg(feature = "dlq")]
pub(crate) fn properties_json(p: &Properties) -> Value {
    let mut m = Map::new();
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            m.insert(k.to_owned(), v);
        }
    };
    put("content_type", p.content_type.as_ref().map(|s| json!(s)));
    put(
        "content_encoding",
        p.content_encoding.as_ref().map(|s| json!(s)),
    );
    put("delivery_mode", p.delivery_mode.map(|n| json!(n)));
    put("priority", p.priority.map(|n| json!(n)));
    put(
        "correlation_id",
        p.correlation_id.as_ref().map(|s| json!(s)),
    );
    put("reply_to", p.reply_to.as_ref().map(|s| json!(s)));
    put("expiration", p.expiration.as_ref().map(|s| json!(s)));
    put("message_id", p.message_id.as_ref().map(|s| json!(s)));
    put("timestamp", p.timestamp.map(|n| json!(n)));
    put("type", p.kind.as_ref().map(|s| json!(s)));
    put("user_id", p.user_id.as_ref().map(|s| json!(s)));
    put("app_id", p.app_id.as_ref().map(|s| json!(s)));
    Value::Object(m)
}

/// The idempotency key (`mqkit:idem:{queue}:{field}…`) of a dead letter,
/// read from its JSON body by the field names in `spec.idempotency`.
///
/// `None` when the consumer has no idempotency fields, the body is not a
/// JSON object, or a field is missing or not a string, number or bool. It
/// matches the key the consumer used as long as the field names are the
/// JSON names (no `#[serde(rename)]`) and the values' `Display` is their
/// JSON text, which holds for strings, integers and bools.
#[cfg(feature = "dlq")]
pub(crate) fn business_key(spec: &ConsumerSpec, body: &[u8]) -> Option<String> {
    if spec.idempotency.is_empty() {
        return None;
    }
    let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(body) else {
        return None;
    };
    let mut key = KeyBuilder::new(&spec.queue);
    for name in spec.idempotency {
        match fields.get(*name)? {
            Value::String(s) => key.push(s.as_str()),
            Value::Number(n) => key.push(n),
            Value::Bool(b) => key.push(b),
            _ => return None,
        }
    }
    Some(key.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::amqp::convert::properties_from;
    #[cfg(feature = "cli")]
    use crate::amqp::convert::properties_to;
    use lapin::BasicProperties;
    use lapin::types::{AMQPValue, FieldArray, FieldTable, LongString, ShortString};

    // Built as lapin values, as they come off the wire, then converted the
    // way the AMQP layer converts every delivery.
    fn props(entries: &[(&str, AMQPValue)]) -> Properties {
        properties_from(&lapin_props(entries))
    }

    fn lapin_props(entries: &[(&str, AMQPValue)]) -> BasicProperties {
        let mut t = FieldTable::default();
        for (k, v) in entries {
            t.insert(ShortString::from(*k), v.clone());
        }
        BasicProperties::default()
            .with_headers(t)
            .with_message_id("m-1".into())
    }

    fn s(v: &str) -> AMQPValue {
        AMQPValue::LongString(LongString::from(v))
    }

    fn death(queue: &str, reason: &str, time: u64) -> AMQPValue {
        let mut t = FieldTable::default();
        t.insert("queue".into(), s(queue));
        t.insert("reason".into(), s(reason));
        t.insert("count".into(), AMQPValue::LongLongInt(1));
        t.insert("time".into(), AMQPValue::Timestamp(time));
        AMQPValue::FieldTable(t)
    }

    #[cfg(feature = "cli")]
    #[test]
    fn reads_mqkit_headers() {
        let p = props(&[
            (headers::ERROR_KIND, s("retries-exhausted")),
            (headers::ERROR, s("panic: kaboom")),
            (headers::ATTEMPTS, AMQPValue::LongLongInt(4)),
            (headers::ORIGINAL_QUEUE, s("order")),
            (headers::FAILED_AT, s("2026-11-26T01:47:06.091Z")),
            // A delay queue's TTL history must not win over mqkit's headers.
            (
                "x-death",
                AMQPValue::FieldArray(FieldArray::from(vec![death(
                    "order.retry.1000",
                    "expired",
                    1,
                )])),
            ),
        ]);
        let d = DeadLetter::read(&p);
        assert_eq!(d.origin, Origin::Mqkit);
        assert_eq!(d.original_queue.as_deref(), Some("order"));
        assert_eq!(d.error_kind, "retries-exhausted");
        assert_eq!(d.error, "panic: kaboom");
        assert_eq!(d.attempts, Some(4));
        assert_eq!(d.failed_at_text(), "2026-11-26T01:47:06.091Z");
        assert_eq!(d.message_id.as_deref(), Some("m-1"));
        assert_eq!(d.replays, 0);
    }

    #[test]
    fn an_x_death_time_past_year_9999_is_no_time() {
        let p = props(&[(
            "x-death",
            AMQPValue::FieldArray(FieldArray::from(vec![death("order", "expired", u64::MAX)])),
        )]);
        assert_eq!(DeadLetter::read(&p).failed_at, None);
        let p = props(&[(
            "x-death",
            AMQPValue::FieldArray(FieldArray::from(vec![death(
                "order",
                "expired",
                253_402_300_799,
            )])),
        )]);
        assert!(DeadLetter::read(&p).failed_at.is_some());
    }

    #[test]
    fn falls_back_to_the_latest_x_death_entry() {
        let p = props(&[
            (
                "x-death",
                AMQPValue::FieldArray(FieldArray::from(vec![
                    death("order", "maxlen", 1_700_000_000),
                    death("order.retry.500", "expired", 1_600_000_000),
                ])),
            ),
            (headers::ATTEMPT, AMQPValue::LongLongInt(2)),
        ]);
        let d = DeadLetter::read(&p);
        assert_eq!(d.origin, Origin::Broker);
        assert_eq!(d.original_queue.as_deref(), Some("order"));
        assert_eq!(d.error_kind, "maxlen");
        assert!(d.error.contains("length limit"), "{}", d.error);
        assert_eq!(d.attempts, Some(2));
        assert_eq!(
            d.failed_at,
            Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000))
        );
        let unknown = DeadLetter::read(&Properties::default());
        assert_eq!(unknown.origin, Origin::Unknown);
        assert_eq!(unknown.error_kind, "unknown");
        assert_eq!(unknown.original_queue, None);
        assert_eq!(unknown.failed_at, None);
    }

    #[cfg(feature = "cli")]
    #[test]
    fn a_replayed_copy_loses_failure_headers_and_counts_replays() {
        let p = props(&[
            (headers::ERROR_KIND, s("decode")),
            (headers::ERROR, s("bad")),
            (headers::ATTEMPTS, AMQPValue::LongLongInt(1)),
            (headers::ORIGINAL_QUEUE, s("order")),
            (headers::FAILED_AT, s("2026-11-26T01:47:06.091Z")),
            (headers::ATTEMPT, AMQPValue::LongLongInt(3)),
            (headers::REPLAYS, AMQPValue::LongLongInt(2)),
            ("tenant", s("acme")),
        ]);
        let r = properties_to(&replay_properties(&p));
        let h = r.headers().clone().unwrap_or_default();
        let names: Vec<&str> = h.inner().keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["tenant", headers::REPLAYS]);
        assert_eq!(
            h.inner().get(headers::REPLAYS),
            Some(&AMQPValue::LongLongInt(3))
        );
        assert_eq!(r.message_id().as_ref().map(|s| s.as_str()), Some("m-1"));
        assert_eq!(*r.delivery_mode(), Some(2));
        let first = properties_to(&replay_properties(&Properties::default()));
        assert_eq!(
            first
                .headers()
                .as_ref()
                .and_then(|h| h.inner().get(headers::REPLAYS)),
            Some(&AMQPValue::LongLongInt(1))
        );
    }

    #[cfg(feature = "dlq")]
    #[test]
    fn headers_become_plain_json() {
        let p = props(&[
            ("tenant", s("acme")),
            ("n", AMQPValue::LongInt(5)),
            (
                "x-death",
                AMQPValue::FieldArray(FieldArray::from(vec![death("q", "expired", 7)])),
            ),
        ]);
        let j = headers_json(p.headers.as_ref());
        assert_eq!(j["tenant"], "acme");
        assert_eq!(j["n"], 5);
        assert_eq!(j["x-death"][0]["queue"], "q");
        assert_eq!(j["x-death"][0]["time"], 7);
        assert_eq!(properties_json(&p)["message_id"], "m-1");
    }

    #[cfg(feature = "dlq")]
    #[test]
    fn business_key_from_the_body() {
        let mut spec = ConsumerSpec::new("order");
        assert_eq!(business_key(&spec, br#"{"id":"a"}"#), None);
        spec.idempotency = &["id", "n"];
        assert_eq!(
            business_key(&spec, br#"{"id":"a:b","n":7}"#).as_deref(),
            Some("mqkit:idem:order:a%3Ab:7")
        );
        assert_eq!(business_key(&spec, br#"{"id":"a"}"#), None);
        assert_eq!(business_key(&spec, b"not json"), None);
        assert_eq!(business_key(&spec, br#"{"id":{},"n":1}"#), None);
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;
    use crate::core::headers::strategies;

    /// An `x-death` list shaped like RabbitMQ's, or not at all.
    fn death() -> impl Strategy<Value = FieldValue> {
        prop_oneof![
            strategies::value(),
            prop::collection::vec(strategies::value(), 0..3).prop_map(FieldValue::Array),
            (
                strategies::value(),
                strategies::value(),
                strategies::value()
            )
                .prop_map(|(q, r, t)| {
                    let entry: Headers = [
                        ("queue".to_owned(), q),
                        ("reason".to_owned(), r),
                        ("time".to_owned(), t),
                    ]
                    .into_iter()
                    .collect();
                    FieldValue::Array(vec![FieldValue::Table(entry)])
                }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(10_000))]

        #[test]
        fn reading_any_dead_letter_never_panics(mut p in strategies::properties(), d in death()) {
            p.headers_mut().insert("x-death", d);
            let letter = DeadLetter::read(&p);
            prop_assert!(!letter.error_kind.is_empty());
            let _ = headers_json(p.headers.as_ref());
            #[cfg(feature = "cli")]
            {
                let _ = letter.failed_at_text();
                let copy = replay_properties(&p);
                prop_assert_eq!(DeadLetter::read(&copy).replays, letter.replays.saturating_add(1));
                prop_assert!(copy.header(headers::ATTEMPT).is_none());
                prop_assert!(copy.header(headers::BUSY_SINCE).is_none());
                prop_assert!(copy.header(headers::BUSY_REPORTED).is_none());
            }
        }
    }

    #[cfg(feature = "dlq")]
    proptest! {
        #![proptest_config(ProptestConfig::with_cases(10_000))]

        #[test]
        fn business_keys_of_any_body_never_panic(body in prop::collection::vec(any::<u8>(), 0..64), id in ".{0,16}") {
            let spec = ConsumerSpec::new("q").idempotency(&["id"]);
            let _ = business_key(&spec, &body);
            let json = serde_json::json!({ "id": id }).to_string();
            prop_assert!(business_key(&spec, json.as_bytes()).is_some());
        }
    }
}
