//! lapin's wire types ↔ mqkit's own [`Properties`] / [`FieldValue`]: the
//! one place where the two meet, lossless in both directions.

use lapin::BasicProperties;
use lapin::types::{AMQPValue, DecimalValue, FieldArray, FieldTable, LongString, ShortString};

use crate::core::headers::{FieldValue, Headers, Properties};
use crate::core::text::truncate;

/// A delivery's properties as mqkit's type.
pub(crate) fn properties_from(p: &BasicProperties) -> Properties {
    let text = |s: &Option<ShortString>| s.as_ref().map(|s| s.to_string());
    Properties {
        content_type: text(p.content_type()),
        content_encoding: text(p.content_encoding()),
        headers: p.headers().as_ref().map(headers_from),
        delivery_mode: *p.delivery_mode(),
        priority: *p.priority(),
        correlation_id: text(p.correlation_id()),
        reply_to: text(p.reply_to()),
        expiration: text(p.expiration()),
        message_id: text(p.message_id()),
        timestamp: *p.timestamp(),
        kind: text(p.kind()),
        user_id: text(p.user_id()),
        app_id: text(p.app_id()),
    }
}

/// mqkit's properties as lapin's, for publishing. Strings longer than a
/// short string allows (255 bytes) are cut at a character boundary: they
/// could not have come from the wire, and the broker would refuse them.
pub(crate) fn properties_to(p: &Properties) -> BasicProperties {
    let mut out = BasicProperties::default();
    if let Some(v) = &p.content_type {
        out = out.with_content_type(short(v));
    }
    if let Some(v) = &p.content_encoding {
        out = out.with_content_encoding(short(v));
    }
    if let Some(h) = &p.headers {
        out = out.with_headers(headers_to(h));
    }
    if let Some(v) = p.delivery_mode {
        out = out.with_delivery_mode(v);
    }
    if let Some(v) = p.priority {
        out = out.with_priority(v);
    }
    if let Some(v) = &p.correlation_id {
        out = out.with_correlation_id(short(v));
    }
    if let Some(v) = &p.reply_to {
        out = out.with_reply_to(short(v));
    }
    if let Some(v) = &p.expiration {
        out = out.with_expiration(short(v));
    }
    if let Some(v) = &p.message_id {
        out = out.with_message_id(short(v));
    }
    if let Some(v) = p.timestamp {
        out = out.with_timestamp(v);
    }
    if let Some(v) = &p.kind {
        out = out.with_type(short(v));
    }
    if let Some(v) = &p.user_id {
        out = out.with_user_id(short(v));
    }
    if let Some(v) = &p.app_id {
        out = out.with_app_id(short(v));
    }
    out
}

fn short(s: &str) -> ShortString {
    ShortString::from(truncate(s, 255))
}

/// A field table as mqkit's [`Headers`].
pub(crate) fn headers_from(t: &FieldTable) -> Headers {
    t.inner()
        .iter()
        .map(|(k, v)| (k.to_string(), value_from(v)))
        .collect()
}

/// mqkit's [`Headers`] as a field table.
pub(crate) fn headers_to(h: &Headers) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in h.iter() {
        t.insert(short(k), value_to(v));
    }
    t
}

fn value_from(v: &AMQPValue) -> FieldValue {
    match v {
        AMQPValue::Boolean(b) => FieldValue::Bool(*b),
        AMQPValue::ShortShortInt(n) => FieldValue::I8(*n),
        AMQPValue::ShortShortUInt(n) => FieldValue::U8(*n),
        AMQPValue::ShortInt(n) => FieldValue::I16(*n),
        AMQPValue::ShortUInt(n) => FieldValue::U16(*n),
        AMQPValue::LongInt(n) => FieldValue::I32(*n),
        AMQPValue::LongUInt(n) => FieldValue::U32(*n),
        AMQPValue::LongLongInt(n) => FieldValue::I64(*n),
        AMQPValue::Float(f) => FieldValue::F32(*f),
        AMQPValue::Double(f) => FieldValue::F64(*f),
        AMQPValue::DecimalValue(d) => FieldValue::Decimal {
            scale: d.scale,
            value: d.value,
        },
        AMQPValue::ShortString(s) => FieldValue::ShortString(s.to_string()),
        AMQPValue::LongString(s) => FieldValue::LongString(s.as_bytes().to_vec()),
        AMQPValue::FieldArray(a) => {
            FieldValue::Array(a.as_slice().iter().map(value_from).collect())
        }
        AMQPValue::Timestamp(t) => FieldValue::Timestamp(*t),
        AMQPValue::FieldTable(t) => FieldValue::Table(headers_from(t)),
        AMQPValue::ByteArray(b) => FieldValue::Bytes(b.as_slice().to_vec()),
        AMQPValue::Void => FieldValue::Void,
    }
}

fn value_to(v: &FieldValue) -> AMQPValue {
    match v {
        FieldValue::Bool(b) => AMQPValue::Boolean(*b),
        FieldValue::I8(n) => AMQPValue::ShortShortInt(*n),
        FieldValue::U8(n) => AMQPValue::ShortShortUInt(*n),
        FieldValue::I16(n) => AMQPValue::ShortInt(*n),
        FieldValue::U16(n) => AMQPValue::ShortUInt(*n),
        FieldValue::I32(n) => AMQPValue::LongInt(*n),
        FieldValue::U32(n) => AMQPValue::LongUInt(*n),
        FieldValue::I64(n) => AMQPValue::LongLongInt(*n),
        FieldValue::F32(f) => AMQPValue::Float(*f),
        FieldValue::F64(f) => AMQPValue::Double(*f),
        FieldValue::Decimal { scale, value } => AMQPValue::DecimalValue(DecimalValue {
            scale: *scale,
            value: *value,
        }),
        FieldValue::ShortString(s) => AMQPValue::ShortString(short(s)),
        FieldValue::LongString(b) => AMQPValue::LongString(LongString::from(b.clone())),
        FieldValue::Array(a) => {
            AMQPValue::FieldArray(FieldArray::from(a.iter().map(value_to).collect::<Vec<_>>()))
        }
        FieldValue::Timestamp(t) => AMQPValue::Timestamp(*t),
        FieldValue::Table(t) => AMQPValue::FieldTable(headers_to(t)),
        FieldValue::Bytes(b) => AMQPValue::ByteArray(b.clone().into()),
        // `FieldValue` is non-exhaustive only for users; every variant is
        // listed above.
        FieldValue::Void => AMQPValue::Void,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_type_round_trips() {
        let mut nested = FieldTable::default();
        nested.insert("n".into(), AMQPValue::LongInt(-1));
        let mut t = FieldTable::default();
        let values = [
            AMQPValue::Boolean(true),
            AMQPValue::ShortShortInt(-1),
            AMQPValue::ShortShortUInt(1),
            AMQPValue::ShortInt(-2),
            AMQPValue::ShortUInt(2),
            AMQPValue::LongInt(-3),
            AMQPValue::LongUInt(3),
            AMQPValue::LongLongInt(i64::MIN),
            AMQPValue::Float(1.5),
            AMQPValue::Double(2.5),
            AMQPValue::DecimalValue(DecimalValue {
                scale: 2,
                value: 314,
            }),
            AMQPValue::ShortString("s".into()),
            AMQPValue::LongString(LongString::from(vec![0xff, 0x00])),
            AMQPValue::FieldArray(FieldArray::from(vec![AMQPValue::Void])),
            AMQPValue::Timestamp(1_700_000_000),
            AMQPValue::FieldTable(nested),
            AMQPValue::ByteArray(vec![1u8, 2, 3].into()),
            AMQPValue::Void,
        ];
        for (i, v) in values.into_iter().enumerate() {
            t.insert(format!("h{i:02}").as_str().into(), v);
        }
        let p = BasicProperties::default()
            .with_headers(t)
            .with_message_id("m-1".into())
            .with_correlation_id("c-1".into())
            .with_timestamp(7)
            .with_delivery_mode(1)
            .with_priority(3)
            .with_type("order.created".into());
        let core = properties_from(&p);
        assert_eq!(core.message_id.as_deref(), Some("m-1"));
        assert_eq!(core.header("h07"), Some(&FieldValue::I64(i64::MIN)));
        assert_eq!(properties_to(&core), p);
    }
}
