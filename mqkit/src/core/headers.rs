//! Message properties and headers as mqkit's own types ([`Properties`],
//! [`Headers`], [`FieldValue`]), the `x-mqkit-*` header names, and the one
//! reader of integer-valued headers ([`FieldValue::as_i64`]) that the
//! attempt counter, the DLQ headers and the archive all use.
//!
//! The AMQP layer converts its wire types to and from these, so nothing
//! above it (pipeline, handlers, tests) depends on the AMQP client's types.

use std::collections::BTreeMap;

/// `x-mqkit-attempt`: the attempt number (1 on the first delivery when absent).
pub(crate) const ATTEMPT: &str = "x-mqkit-attempt";
/// `x-mqkit-error`: the error text of a dead letter.
pub(crate) const ERROR: &str = "x-mqkit-error";
/// `x-mqkit-error-kind`: `decode`, `rejected`, `retries-exhausted`, `panic`, `timeout`.
pub(crate) const ERROR_KIND: &str = "x-mqkit-error-kind";
/// `x-mqkit-attempts`: attempts made before the message was dead-lettered.
pub(crate) const ATTEMPTS: &str = "x-mqkit-attempts";
/// `x-mqkit-original-queue`: the work queue the message failed on.
pub(crate) const ORIGINAL_QUEUE: &str = "x-mqkit-original-queue";
/// `x-mqkit-failed-at`: when it was dead-lettered (RFC 3339).
pub(crate) const FAILED_AT: &str = "x-mqkit-failed-at";
/// `x-mqkit-busy-requeues`: how often this message was requeued because its
/// business key was busy (not an attempt).
pub(crate) const BUSY_REQUEUES: &str = "x-mqkit-busy-requeues";
/// `x-mqkit-busy-since`: when it was first requeued for a busy key (ms since
/// the Unix epoch).
pub(crate) const BUSY_SINCE: &str = "x-mqkit-busy-since";
/// `x-mqkit-busy-reported`: set once the wait was reported as a stuck key.
pub(crate) const BUSY_REPORTED: &str = "x-mqkit-busy-reported";
/// Forgets a message's wait for a busy key (its handler ran, or it is
/// dead-lettered), so a later wait is measured afresh.
pub(crate) fn end_busy_wait(h: &mut Headers) {
    for name in [BUSY_REQUEUES, BUSY_SINCE, BUSY_REPORTED] {
        h.remove(name);
    }
}

/// `x-mqkit-replays`: how often a dead letter was replayed to its queue.
#[cfg(any(feature = "dlq", feature = "cli"))]
pub(crate) const REPLAYS: &str = "x-mqkit-replays";

/// One header value, with every AMQP 0-9-1 field type RabbitMQ sends.
/// Serializes (serde) with its type, so a value read back is the same value.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum FieldValue {
    /// `t`
    Bool(bool),
    /// `b`
    I8(i8),
    /// `B`
    U8(u8),
    /// `s`
    I16(i16),
    /// `u`
    U16(u16),
    /// `I`
    I32(i32),
    /// `i`
    U32(u32),
    /// `l`
    I64(i64),
    /// `f`
    F32(f32),
    /// `d`
    F64(f64),
    /// `D`: `value / 10^scale`.
    Decimal {
        /// Decimal places.
        scale: u8,
        /// Unscaled value.
        value: u32,
    },
    /// A short string (at most 255 bytes).
    ShortString(String),
    /// `S`: a long string; bytes, usually UTF-8.
    LongString(Vec<u8>),
    /// `A`
    Array(Vec<FieldValue>),
    /// `T`: seconds since the Unix epoch.
    Timestamp(u64),
    /// `F`: a nested table.
    Table(Headers),
    /// `x`: raw bytes.
    Bytes(Vec<u8>),
    /// `V`: no value.
    Void,
}

impl FieldValue {
    /// The value as an integer: any integer type, or a string holding one
    /// (other clients write numbers as text). `None` for anything else.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            FieldValue::I8(n) => Some((*n).into()),
            FieldValue::U8(n) => Some((*n).into()),
            FieldValue::I16(n) => Some((*n).into()),
            FieldValue::U16(n) => Some((*n).into()),
            FieldValue::I32(n) => Some((*n).into()),
            FieldValue::U32(n) => Some((*n).into()),
            FieldValue::I64(n) => Some(*n),
            FieldValue::ShortString(_) | FieldValue::LongString(_) => {
                self.as_str().and_then(|s| s.trim().parse().ok())
            }
            _ => None,
        }
    }

    /// The value as text, for string-typed values that are UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            FieldValue::ShortString(s) => Some(s),
            FieldValue::LongString(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    /// The value as text, for string-typed values (bytes that are not UTF-8
    /// converted lossily).
    pub fn to_text(&self) -> Option<String> {
        match self {
            FieldValue::ShortString(s) => Some(s.clone()),
            FieldValue::LongString(b) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    }

    /// A nested table.
    pub fn as_table(&self) -> Option<&Headers> {
        match self {
            FieldValue::Table(t) => Some(t),
            _ => None,
        }
    }

    /// An array.
    pub fn as_array(&self) -> Option<&[FieldValue]> {
        match self {
            FieldValue::Array(a) => Some(a),
            _ => None,
        }
    }
}

impl From<&str> for FieldValue {
    fn from(s: &str) -> Self {
        FieldValue::LongString(s.as_bytes().to_vec())
    }
}

impl From<String> for FieldValue {
    fn from(s: String) -> Self {
        FieldValue::LongString(s.into_bytes())
    }
}

impl From<i64> for FieldValue {
    fn from(n: i64) -> Self {
        FieldValue::I64(n)
    }
}

impl From<bool> for FieldValue {
    fn from(b: bool) -> Self {
        FieldValue::Bool(b)
    }
}

/// Message headers (an AMQP field table), ordered by name.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Headers(BTreeMap<String, FieldValue>);

impl Headers {
    /// No headers.
    pub fn new() -> Self {
        Headers::default()
    }

    /// One header.
    pub fn get(&self, name: &str) -> Option<&FieldValue> {
        self.0.get(name)
    }

    /// Sets a header, returning the value it replaces.
    pub fn insert(
        &mut self,
        name: impl Into<String>,
        value: impl Into<FieldValue>,
    ) -> Option<FieldValue> {
        self.0.insert(name.into(), value.into())
    }

    /// Removes a header.
    pub fn remove(&mut self, name: &str) -> Option<FieldValue> {
        self.0.remove(name)
    }

    /// Whether a header is present.
    pub fn contains(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    /// Every header, ordered by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &FieldValue)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// How many headers there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Keeps only the headers for which `keep` says yes.
    pub fn retain(&mut self, mut keep: impl FnMut(&str, &FieldValue) -> bool) {
        self.0.retain(|k, v| keep(k, v));
    }
}

impl FromIterator<(String, FieldValue)> for Headers {
    fn from_iter<I: IntoIterator<Item = (String, FieldValue)>>(iter: I) -> Self {
        Headers(iter.into_iter().collect())
    }
}

/// The AMQP basic properties of a message. Absent properties are `None`.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct Properties {
    /// MIME type of the body.
    pub content_type: Option<String>,
    /// Encoding of the body.
    pub content_encoding: Option<String>,
    /// Headers; `None` when the message had no header table.
    pub headers: Option<Headers>,
    /// 1 transient, 2 persistent.
    pub delivery_mode: Option<u8>,
    /// Priority, 0 to 9.
    pub priority: Option<u8>,
    /// Correlation id.
    pub correlation_id: Option<String>,
    /// Reply-to queue.
    pub reply_to: Option<String>,
    /// Per-message TTL in milliseconds, as text.
    pub expiration: Option<String>,
    /// Message id.
    pub message_id: Option<String>,
    /// Seconds since the Unix epoch.
    pub timestamp: Option<u64>,
    /// The `type` property.
    pub kind: Option<String>,
    /// The `user-id` property.
    pub user_id: Option<String>,
    /// The `app-id` property.
    pub app_id: Option<String>,
}

impl Properties {
    /// One header, if the message has it.
    pub fn header(&self, name: &str) -> Option<&FieldValue> {
        self.headers.as_ref().and_then(|h| h.get(name))
    }

    /// The header table, created empty if absent, for editing.
    pub fn headers_mut(&mut self) -> &mut Headers {
        self.headers.get_or_insert_with(Headers::new)
    }

    /// The attempt number this message carries in `x-mqkit-attempt`: 1 when
    /// absent, not an integer, or below 1.
    pub fn attempt(&self) -> u32 {
        attempt_from(self.header(ATTEMPT))
    }
}

/// Reads an attempt number from a header value; absent or unreadable values
/// (not an integer, below 1, above `u32::MAX`) count as the first attempt.
pub(crate) fn attempt_from(value: Option<&FieldValue>) -> u32 {
    value
        .and_then(FieldValue::as_i64)
        .and_then(|n| u32::try_from(n).ok())
        .filter(|n| *n >= 1)
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempt_header_parsing() {
        assert_eq!(attempt_from(None), 1);
        assert_eq!(attempt_from(Some(&FieldValue::I32(3))), 3);
        assert_eq!(attempt_from(Some(&FieldValue::I64(0))), 1);
        assert_eq!(attempt_from(Some(&FieldValue::I64(-4))), 1);
        assert_eq!(attempt_from(Some(&FieldValue::from("2"))), 2);
        assert_eq!(attempt_from(Some(&FieldValue::Bool(true))), 1);
        assert_eq!(attempt_from(Some(&FieldValue::I64(i64::MAX))), 1);
    }

    #[test]
    fn integers_of_every_width_and_as_text() {
        for v in [
            FieldValue::I8(7),
            FieldValue::U8(7),
            FieldValue::I16(7),
            FieldValue::U16(7),
            FieldValue::I32(7),
            FieldValue::U32(7),
            FieldValue::I64(7),
            FieldValue::ShortString(" 7 ".into()),
            FieldValue::from("7"),
        ] {
            assert_eq!(v.as_i64(), Some(7), "{v:?}");
        }
        assert_eq!(FieldValue::F64(7.0).as_i64(), None);
        assert_eq!(FieldValue::LongString(vec![0xff]).as_i64(), None);
    }
}

/// Arbitrary header values and properties, for the property tests of every
/// reader of untrusted input.
#[cfg(test)]
pub(crate) mod strategies {
    use proptest::prelude::*;

    use super::{FieldValue, Headers, Properties};

    /// Names that mqkit reads, mixed with arbitrary ones.
    fn name() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(super::ATTEMPT.to_owned()),
            Just(super::ATTEMPTS.to_owned()),
            Just(super::ERROR.to_owned()),
            Just(super::ERROR_KIND.to_owned()),
            Just(super::ORIGINAL_QUEUE.to_owned()),
            Just(super::FAILED_AT.to_owned()),
            Just(super::BUSY_SINCE.to_owned()),
            Just(super::BUSY_REQUEUES.to_owned()),
            Just("x-mqkit-replays".to_owned()),
            Just("x-death".to_owned()),
            Just("queue".to_owned()),
            Just("reason".to_owned()),
            Just("time".to_owned()),
            "[a-z-]{0,12}",
        ]
    }

    fn leaf() -> impl Strategy<Value = FieldValue> {
        prop_oneof![
            any::<bool>().prop_map(FieldValue::Bool),
            any::<i8>().prop_map(FieldValue::I8),
            any::<u8>().prop_map(FieldValue::U8),
            any::<i16>().prop_map(FieldValue::I16),
            any::<u16>().prop_map(FieldValue::U16),
            any::<i32>().prop_map(FieldValue::I32),
            any::<u32>().prop_map(FieldValue::U32),
            any::<i64>().prop_map(FieldValue::I64),
            any::<f32>().prop_map(FieldValue::F32),
            any::<f64>().prop_map(FieldValue::F64),
            (any::<u8>(), any::<u32>())
                .prop_map(|(scale, value)| FieldValue::Decimal { scale, value }),
            ".{0,20}".prop_map(FieldValue::ShortString),
            prop::collection::vec(any::<u8>(), 0..24).prop_map(FieldValue::LongString),
            prop_oneof![
                Just("expired"),
                Just("rejected"),
                Just("maxlen"),
                Just("decode"),
                Just("2026-11-26T01:47:06.091Z"),
                Just("-3"),
                Just("9223372036854775807"),
            ]
            .prop_map(FieldValue::from),
            any::<u64>().prop_map(FieldValue::Timestamp),
            prop::collection::vec(any::<u8>(), 0..8).prop_map(FieldValue::Bytes),
            Just(FieldValue::Void),
        ]
    }

    /// Any header value, nested up to a few levels in tables and arrays.
    pub(crate) fn value() -> impl Strategy<Value = FieldValue> {
        leaf().prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(FieldValue::Array),
                prop::collection::vec((name(), inner), 0..4)
                    .prop_map(|t| FieldValue::Table(t.into_iter().collect())),
            ]
        })
    }

    /// Any header table.
    pub(crate) fn headers() -> impl Strategy<Value = Headers> {
        prop::collection::vec((name(), value()), 0..8).prop_map(|t| t.into_iter().collect())
    }

    /// Properties with arbitrary headers and ids.
    pub(crate) fn properties() -> impl Strategy<Value = Properties> {
        (
            proptest::option::of(headers()),
            proptest::option::of(".{0,40}"),
            proptest::option::of(any::<u64>()),
        )
            .prop_map(|(headers, message_id, timestamp)| Properties {
                headers,
                message_id,
                timestamp,
                ..Properties::default()
            })
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::strategies;
    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(10_000))]

        #[test]
        fn header_readers_never_panic(p in strategies::properties(), v in strategies::value()) {
            prop_assert!(p.attempt() >= 1);
            prop_assert!(attempt_from(Some(&v)) >= 1);
            let _ = (v.as_i64(), v.as_str(), v.to_text(), v.as_table(), v.as_array());
            if let Some(n) = v.as_i64() && (1..=i64::from(u32::MAX)).contains(&n) {
                prop_assert_eq!(i64::from(attempt_from(Some(&v))), n);
            }
        }
    }
}
