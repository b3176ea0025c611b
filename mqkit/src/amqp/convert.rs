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

    /// A header of arrays nested 200,000 deep, as lapin's frame parser reads
    /// it (the patched amq-protocol-types: 64 levels, then a marker), turned
    /// into mqkit's properties and back, and dropped, all on a 1 MiB stack
    /// (half of lapin's io-loop thread's). Unbounded, the parse alone
    /// overflows 2 MiB from about 300 levels in a debug build.
    #[test]
    fn a_header_nested_200000_deep_is_read_64_levels_deep_on_a_small_stack() -> Result<(), String> {
        let levels = 200_000u32;
        let mut value = Vec::new();
        for inside in (0..levels).rev() {
            value.push(b'A');
            value.extend_from_slice(&(5 * inside).to_be_bytes());
        }
        let mut entry = vec![6u8];
        entry.extend_from_slice(b"x-deep");
        entry.extend_from_slice(&value);
        let mut bytes = (entry.len() as u32).to_be_bytes().to_vec();
        bytes.extend_from_slice(&entry);

        let walk = move || {
            let (rest, table) =
                lapin::types::parsing::parse_field_table(&bytes[..]).map_err(|e| e.to_string())?;
            assert!(rest.is_empty());
            let p = BasicProperties::default().with_headers(table);
            let core = properties_from(&p);
            assert_eq!(properties_to(&core), p);
            let mut levels = 0;
            let mut v = core.header("x-deep");
            while let Some(FieldValue::Array(a)) = v {
                levels += 1;
                v = a.first();
            }
            let marker = v.and_then(FieldValue::as_str).map(str::to_owned);
            Ok::<_, String>((levels, marker))
        };
        let (levels, marker) = std::thread::Builder::new()
            .stack_size(1024 * 1024)
            .spawn(walk)
            .map_err(|e| e.to_string())?
            .join()
            .map_err(|_| "the walk panicked".to_owned())??;
        // The header table itself is the first of the 64 levels.
        assert_eq!(levels, 63);
        let marker = marker.ok_or("no marker at the bottom")?;
        assert!(
            marker.starts_with("(not parsed: a field array nested more than 64 levels deep, "),
            "{marker}"
        );
        Ok(())
    }
}
