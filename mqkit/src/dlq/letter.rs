//! What a dead letter says about itself. [`DeadLetter::read`] takes the
//! `x-mqkit-*` headers mqkit writes (DESIGN.md rule 3) and falls back to
//! RabbitMQ's own `x-death` header for dead letters the broker produced (a
//! TTL, a length limit, a reject with `requeue=false`). Shared by the
//! archiver and the `mqkit dlq` commands, so both agree on the original
//! queue, the error kind and the failure time.
//!
//! Also: [`replay_properties`] (the properties of a replayed copy),
//! [`headers_json`] / [`properties_json`] and [`business_key`].

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, ShortString};
use serde_json::{Map, Value, json};

use crate::consumer::ConsumerSpec;
use crate::idempotency::KeyBuilder;
use crate::retry::{ATTEMPT_HEADER, attempt_from_header};

/// `x-mqkit-error`: the error text of a dead letter.
pub const H_ERROR: &str = "x-mqkit-error";
/// `x-mqkit-error-kind`: `decode`, `rejected`, `retries-exhausted`, `panic`, `timeout`.
pub const H_ERROR_KIND: &str = "x-mqkit-error-kind";
/// `x-mqkit-attempts`: attempts made before the message was dead-lettered.
pub const H_ATTEMPTS: &str = "x-mqkit-attempts";
/// `x-mqkit-original-queue`: the work queue the message failed on.
pub const H_ORIGINAL_QUEUE: &str = "x-mqkit-original-queue";
/// `x-mqkit-failed-at`: when it was dead-lettered (RFC 3339).
pub const H_FAILED_AT: &str = "x-mqkit-failed-at";
/// `x-mqkit-replays`: how often `mqkit dlq replay` sent this message back.
pub const H_REPLAYS: &str = "x-mqkit-replays";

/// Headers a replayed copy loses: the attempt counter, mqkit's failure
/// headers and RabbitMQ's dead-letter history (a replayed message starts
/// afresh; clients should not publish `x-death` themselves).
const FAILURE_HEADERS: &[&str] = &[
    ATTEMPT_HEADER,
    H_ERROR,
    H_ERROR_KIND,
    H_ATTEMPTS,
    H_ORIGINAL_QUEUE,
    H_FAILED_AT,
    "x-death",
    "x-first-death-queue",
    "x-first-death-reason",
    "x-first-death-exchange",
    "x-last-death-queue",
    "x-last-death-reason",
    "x-last-death-exchange",
];

/// Who dead-lettered a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
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
pub struct DeadLetter {
    /// The queue the message failed on: `x-mqkit-original-queue`, else the
    /// queue of the latest `x-death` entry; `None` when nothing says.
    pub original_queue: Option<String>,
    /// `x-mqkit-error-kind`, else the `x-death` reason (`expired`, `maxlen`,
    /// `rejected`, `delivery_limit`), else `unknown`.
    pub error_kind: String,
    /// `x-mqkit-error`, else a sentence about the broker's reason.
    pub error: String,
    /// `x-mqkit-attempts`, else the `x-mqkit-attempt` the message carried.
    pub attempts: Option<u32>,
    /// `x-mqkit-failed-at`, else the time of the latest `x-death` entry.
    pub failed_at: Option<SystemTime>,
    /// The AMQP message id.
    pub message_id: Option<String>,
    /// `x-mqkit-replays` (0 when absent).
    pub replays: u32,
    /// Who dead-lettered it.
    pub origin: Origin,
}

impl DeadLetter {
    /// Reads a dead letter's properties.
    ///
    /// ```
    /// use lapin::BasicProperties;
    /// use lapin::types::{AMQPValue, FieldTable};
    /// use mqkit::dlq::{DeadLetter, Origin};
    ///
    /// let mut headers = FieldTable::default();
    /// headers.insert("x-mqkit-error-kind".into(), AMQPValue::LongString("rejected".into()));
    /// headers.insert("x-mqkit-error".into(), AMQPValue::LongString("negative amount".into()));
    /// headers.insert("x-mqkit-attempts".into(), AMQPValue::LongLongInt(1));
    /// headers.insert("x-mqkit-original-queue".into(), AMQPValue::LongString("order".into()));
    /// let letter = DeadLetter::read(&BasicProperties::default().with_headers(headers));
    /// assert_eq!(letter.origin, Origin::Mqkit);
    /// assert_eq!(letter.original_queue.as_deref(), Some("order"));
    /// assert_eq!((letter.error_kind.as_str(), letter.attempts), ("rejected", Some(1)));
    /// ```
    pub fn read(properties: &BasicProperties) -> DeadLetter {
        let empty = FieldTable::default();
        let headers = properties.headers().as_ref().unwrap_or(&empty);
        let get = |name: &str| headers.inner().get(name);
        let death = latest_death(headers);
        let mqkit_kind = get(H_ERROR_KIND).and_then(text);
        let origin = match (&mqkit_kind, &death) {
            (Some(_), _) => Origin::Mqkit,
            (None, Some(_)) => Origin::Broker,
            (None, None) => Origin::Unknown,
        };
        let death_field = |name: &str| death.and_then(|d| d.inner().get(name));
        let death_queue = death_field("queue").and_then(text);
        let death_reason = death_field("reason").and_then(text);
        let (error_kind, error) = match (mqkit_kind, &death_reason) {
            (Some(kind), _) => (kind, get(H_ERROR).and_then(text).unwrap_or_default()),
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
        let attempts = get(H_ATTEMPTS)
            .and_then(integer)
            .or_else(|| get(ATTEMPT_HEADER).map(|v| i64::from(attempt_from_header(Some(v)))))
            .and_then(|n| u32::try_from(n).ok());
        let failed_at = get(H_FAILED_AT)
            .and_then(text)
            .and_then(|s| humantime::parse_rfc3339_weak(s.trim()).ok())
            .or_else(|| match death_field("time") {
                Some(AMQPValue::Timestamp(secs)) => Some(UNIX_EPOCH + Duration::from_secs(*secs)),
                _ => None,
            });
        DeadLetter {
            original_queue: get(H_ORIGINAL_QUEUE)
                .and_then(text)
                .filter(|q| !q.is_empty())
                .or(death_queue),
            error_kind,
            error,
            attempts,
            failed_at,
            message_id: properties.message_id().as_ref().map(|s| s.to_string()),
            replays: get(H_REPLAYS)
                .and_then(integer)
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(0),
            origin,
        }
    }

    /// `failed_at` as RFC 3339 with milliseconds, or `-`.
    pub fn failed_at_text(&self) -> String {
        self.failed_at
            .map(|t| humantime::format_rfc3339_millis(t).to_string())
            .unwrap_or_else(|| "-".to_owned())
    }
}

/// The most recent entry of RabbitMQ's `x-death` list (it keeps the most
/// recent first).
fn latest_death(headers: &FieldTable) -> Option<&FieldTable> {
    match headers.inner().get("x-death")? {
        AMQPValue::FieldArray(a) => a.as_slice().iter().find_map(|v| match v {
            AMQPValue::FieldTable(t) => Some(t),
            _ => None,
        }),
        _ => None,
    }
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

/// A header value as text, for string-typed values.
pub(crate) fn text(v: &AMQPValue) -> Option<String> {
    match v {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.to_string()),
        _ => None,
    }
}

fn integer(v: &AMQPValue) -> Option<i64> {
    match v {
        AMQPValue::ShortShortInt(n) => Some((*n).into()),
        AMQPValue::ShortShortUInt(n) => Some((*n).into()),
        AMQPValue::ShortInt(n) => Some((*n).into()),
        AMQPValue::ShortUInt(n) => Some((*n).into()),
        AMQPValue::LongInt(n) => Some((*n).into()),
        AMQPValue::LongUInt(n) => Some((*n).into()),
        AMQPValue::LongLongInt(n) => Some(*n),
        AMQPValue::LongString(_) | AMQPValue::ShortString(_) => {
            text(v).and_then(|s| s.trim().parse().ok())
        }
        _ => None,
    }
}

/// The properties of a replayed copy: no attempt counter, no failure
/// headers, `x-mqkit-replays` one higher; everything else (message id,
/// content type, correlation id, other headers) unchanged, persistent.
///
/// ```
/// use lapin::BasicProperties;
/// use lapin::types::{AMQPValue, FieldTable};
///
/// let mut headers = FieldTable::default();
/// headers.insert("x-mqkit-attempt".into(), AMQPValue::LongLongInt(4));
/// headers.insert("x-mqkit-error-kind".into(), AMQPValue::LongString("decode".into()));
/// headers.insert("tenant".into(), AMQPValue::LongString("acme".into()));
/// let dead = BasicProperties::default().with_headers(headers);
/// let copy = mqkit::dlq::letter::replay_properties(&dead);
/// let kept: Vec<String> = copy.headers().iter().flat_map(|h| h.inner().keys()).map(|k| k.to_string()).collect();
/// assert_eq!(kept, ["tenant", "x-mqkit-replays"]);
/// ```
pub fn replay_properties(properties: &BasicProperties) -> BasicProperties {
    let replays = DeadLetter::read(properties).replays.saturating_add(1);
    let mut kept: BTreeMap<ShortString, AMQPValue> = properties
        .headers()
        .as_ref()
        .map(|h| {
            h.inner()
                .iter()
                .filter(|(k, _)| !FAILURE_HEADERS.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    kept.insert(
        ShortString::from(H_REPLAYS),
        AMQPValue::LongLongInt(replays.into()),
    );
    properties
        .clone()
        .with_headers(FieldTable::from(kept))
        .with_delivery_mode(2)
}

/// Headers as a JSON object: strings as strings (bytes that are not UTF-8
/// lossily), numbers as numbers, timestamps as seconds, tables as objects.
pub fn headers_json(headers: Option<&FieldTable>) -> Value {
    Value::Object(
        headers
            .map(|h| {
                h.inner()
                    .iter()
                    .map(|(k, v)| (k.to_string(), value_json(v)))
                    .collect::<Map<_, _>>()
            })
            .unwrap_or_default(),
    )
}

fn value_json(v: &AMQPValue) -> Value {
    match v {
        AMQPValue::Boolean(b) => json!(b),
        AMQPValue::ShortShortInt(n) => json!(n),
        AMQPValue::ShortShortUInt(n) => json!(n),
        AMQPValue::ShortInt(n) => json!(n),
        AMQPValue::ShortUInt(n) => json!(n),
        AMQPValue::LongInt(n) => json!(n),
        AMQPValue::LongUInt(n) => json!(n),
        AMQPValue::LongLongInt(n) => json!(n),
        AMQPValue::Float(f) => json!(f),
        AMQPValue::Double(f) => json!(f),
        AMQPValue::DecimalValue(d) => json!(format!("{d:?}")),
        AMQPValue::ShortString(s) => json!(s.as_str()),
        AMQPValue::LongString(s) => json!(String::from_utf8_lossy(s.as_bytes())),
        AMQPValue::FieldArray(a) => Value::Array(a.as_slice().iter().map(value_json).collect()),
        AMQPValue::Timestamp(t) => json!(t),
        AMQPValue::FieldTable(t) => headers_json(Some(t)),
        AMQPValue::ByteArray(b) => json!(String::from_utf8_lossy(b.as_slice())),
        AMQPValue::Void => Value::Null,
    }
}

/// The properties other than headers, as a JSON object (absent ones left out).
pub fn properties_json(p: &BasicProperties) -> Value {
    let mut m = Map::new();
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            m.insert(k.to_owned(), v);
        }
    };
    put(
        "content_type",
        p.content_type().as_ref().map(|s| json!(s.as_str())),
    );
    put(
        "content_encoding",
        p.content_encoding().as_ref().map(|s| json!(s.as_str())),
    );
    put("delivery_mode", p.delivery_mode().map(|n| json!(n)));
    put("priority", p.priority().map(|n| json!(n)));
    put(
        "correlation_id",
        p.correlation_id().as_ref().map(|s| json!(s.as_str())),
    );
    put("reply_to", p.reply_to().as_ref().map(|s| json!(s.as_str())));
    put(
        "expiration",
        p.expiration().as_ref().map(|s| json!(s.as_str())),
    );
    put(
        "message_id",
        p.message_id().as_ref().map(|s| json!(s.as_str())),
    );
    put("timestamp", p.timestamp().map(|n| json!(n)));
    put("type", p.kind().as_ref().map(|s| json!(s.as_str())));
    put("user_id", p.user_id().as_ref().map(|s| json!(s.as_str())));
    put("app_id", p.app_id().as_ref().map(|s| json!(s.as_str())));
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
pub fn business_key(spec: &ConsumerSpec, body: &[u8]) -> Option<String> {
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
    use lapin::types::{FieldArray, LongString};

    fn props(entries: &[(&str, AMQPValue)]) -> BasicProperties {
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

    #[test]
    fn reads_mqkit_headers() {
        let p = props(&[
            (H_ERROR_KIND, s("retries-exhausted")),
            (H_ERROR, s("panic: kaboom")),
            (H_ATTEMPTS, AMQPValue::LongLongInt(4)),
            (H_ORIGINAL_QUEUE, s("order")),
            (H_FAILED_AT, s("2026-11-26T01:47:06.091Z")),
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
    fn falls_back_to_the_latest_x_death_entry() {
        let p = props(&[
            (
                "x-death",
                AMQPValue::FieldArray(FieldArray::from(vec![
                    death("order", "maxlen", 1_700_000_000),
                    death("order.retry.500", "expired", 1_600_000_000),
                ])),
            ),
            (ATTEMPT_HEADER, AMQPValue::LongLongInt(2)),
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
        let unknown = DeadLetter::read(&BasicProperties::default());
        assert_eq!(unknown.origin, Origin::Unknown);
        assert_eq!(unknown.error_kind, "unknown");
        assert_eq!(unknown.original_queue, None);
        assert_eq!(unknown.failed_at, None);
    }

    #[test]
    fn a_replayed_copy_loses_failure_headers_and_counts_replays() {
        let p = props(&[
            (H_ERROR_KIND, s("decode")),
            (H_ERROR, s("bad")),
            (H_ATTEMPTS, AMQPValue::LongLongInt(1)),
            (H_ORIGINAL_QUEUE, s("order")),
            (H_FAILED_AT, s("2026-11-26T01:47:06.091Z")),
            (ATTEMPT_HEADER, AMQPValue::LongLongInt(3)),
            (H_REPLAYS, AMQPValue::LongLongInt(2)),
            ("tenant", s("acme")),
        ]);
        let r = replay_properties(&p);
        let h = r.headers().clone().unwrap_or_default();
        let names: Vec<&str> = h.inner().keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["tenant", H_REPLAYS]);
        assert_eq!(h.inner().get(H_REPLAYS), Some(&AMQPValue::LongLongInt(3)));
        assert_eq!(r.message_id().as_ref().map(|s| s.as_str()), Some("m-1"));
        assert_eq!(*r.delivery_mode(), Some(2));
        let first = replay_properties(&BasicProperties::default());
        assert_eq!(
            first
                .headers()
                .as_ref()
                .and_then(|h| h.inner().get(H_REPLAYS)),
            Some(&AMQPValue::LongLongInt(1))
        );
    }

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
        let j = headers_json(p.headers().as_ref());
        assert_eq!(j["tenant"], "acme");
        assert_eq!(j["n"], 5);
        assert_eq!(j["x-death"][0]["queue"], "q");
        assert_eq!(j["x-death"][0]["time"], 7);
        assert_eq!(properties_json(&p)["message_id"], "m-1");
    }

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
