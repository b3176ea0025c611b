//! [`decode_json`]: a JSON body into the consumer's message type, with
//! errors that say what is wrong (empty, not UTF-8, not JSON, wrong shape).

use std::fmt;

use serde::de::DeserializeOwned;

use super::consumer::DecodeError;

/// Decodes a JSON body into `T`, with errors that say what is wrong:
/// empty body, not UTF-8, not JSON, or the wrong shape for `T`.
pub fn decode_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, DecodeError> {
    let fail =
        |what: String| DecodeError(format!("cannot decode {}: {what}", short_type_name::<T>()));
    if body.is_empty() {
        return Err(fail("body is empty".to_owned()));
    }
    // Checked up front: serde_json does not check bytes it skips (unknown
    // fields), and a body that is not UTF-8 is never a valid JSON message.
    let text =
        std::str::from_utf8(body).map_err(|e| fail(format!("body is not valid UTF-8 ({e})")))?;
    let describe = |e: serde_json::Error| {
        let what = match e.classify() {
            serde_json::error::Category::Data => "JSON does not match the type",
            serde_json::error::Category::Eof => "JSON ends too early",
            _ => "body is not valid JSON",
        };
        fail(format!("{what}: {e}"))
    };
    // serde lets a struct be written as an array of its field values in
    // declaration order; a message is an object with named fields, so a
    // top-level array is the wrong shape for a struct type (accepting it
    // would tie the meaning of a body to the Rust field order).
    if text.trim_start().starts_with('[')
        && let Some(name) = struct_name::<T>()
    {
        serde_json::from_str::<serde::de::IgnoredAny>(text).map_err(describe)?;
        let expected = format!("struct {name}");
        return Err(describe(serde::de::Error::invalid_type(
            serde::de::Unexpected::Seq,
            &expected.as_str(),
        )));
    }
    serde_json::from_str(text).map_err(describe)
}

/// The name of `T` if `T` deserializes as a struct (asks `T` which
/// `deserialize_*` method it calls, without any input).
fn struct_name<T: DeserializeOwned>() -> Option<&'static str> {
    match T::deserialize(ShapeProbe) {
        Err(ProbeError::Struct(name)) => Some(name),
        _ => None,
    }
}

struct ShapeProbe;

#[derive(Debug)]
enum ProbeError {
    Struct(&'static str),
    Other,
}

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("shape probe")
    }
}

impl std::error::Error for ProbeError {}

impl serde::de::Error for ProbeError {
    fn custom<M: fmt::Display>(_: M) -> Self {
        ProbeError::Other
    }
}

impl<'de> serde::Deserializer<'de> for ShapeProbe {
    type Error = ProbeError;

    fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, ProbeError> {
        Err(ProbeError::Other)
    }

    fn deserialize_struct<V: serde::de::Visitor<'de>>(
        self,
        name: &'static str,
        _: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, ProbeError> {
        Err(ProbeError::Struct(name))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

fn short_type_name<T>() -> &'static str {
    let full = std::any::type_name::<T>();
    let base = full.split('<').next().unwrap_or(full);
    base.rsplit("::").next().unwrap_or(base)
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::decode_json;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Order {
        order_id: String,
        amount_cents: i64,
        lines: Vec<u32>,
    }

    /// Text that looks like JSON often enough to reach serde's deeper paths.
    fn jsonish() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..64),
            r#"[\[\]{}":,0-9a-z_ .e+-]{0,64}"#.prop_map(String::into_bytes),
            (".{0,12}", any::<i64>(), any::<u64>()).prop_map(|(id, a, big)| {
                format!(r#"{{"order_id":{id:?},"amount_cents":{a},"lines":[{big},1],"amount_cents":{big}}}"#)
                    .into_bytes()
            }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(10_000))]

        #[test]
        fn decoding_any_bytes_never_panics(body in jsonish()) {
            match decode_json::<Order>(&body) {
                Ok(o) => prop_assert!(o.order_id.len() <= body.len()),
                Err(e) => prop_assert!(e.0.starts_with("cannot decode Order: "), "{}", e.0),
            }
            let _ = decode_json::<serde_json::Value>(&body);
        }
    }

    #[test]
    fn deep_nesting_is_a_decode_error_not_a_stack_overflow() {
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        let e = decode_json::<serde_json::Value>(deep.as_bytes())
            .err()
            .map(|e| e.0);
        assert!(
            e.as_deref().is_some_and(|e| e.contains("recursion limit")),
            "{e:?}"
        );
    }
}
