//! How the console shows a message body: JSON pretty-printed, other UTF-8
//! text as text plus a hex dump, anything else (not UTF-8) as a hex dump
//! only ([`BodyView::of`], [`hex_dump`]). The results are plain text; the
//! page template escapes them.

/// The hex dump stops after this many bytes (a body may be megabytes).
pub(super) const HEX_LIMIT: usize = 64 * 1024;

/// A body, ready to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum BodyView {
    /// Valid JSON, pretty-printed.
    Json(String),
    /// UTF-8 that is not JSON.
    Text(String),
    /// Not UTF-8.
    Binary,
}

impl BodyView {
    pub(super) fn of(body: &[u8]) -> BodyView {
        let Ok(text) = std::str::from_utf8(body) else {
            return BodyView::Binary;
        };
        match serde_json::from_str::<serde_json::Value>(text) {
            Ok(value) => BodyView::Json(
                serde_json::to_string_pretty(&value).unwrap_or_else(|_| text.to_owned()),
            ),
            Err(_) => BodyView::Text(text.to_owned()),
        }
    }
}

/// `offset  16 bytes in hex  |ASCII|` lines, like `hexdump -C`, of at most
/// [`HEX_LIMIT`] bytes; bytes outside printable ASCII show as `.`.
pub(super) fn hex_dump(bytes: &[u8]) -> String {
    let mut out = String::new();
    for (line, chunk) in bytes[..bytes.len().min(HEX_LIMIT)].chunks(16).enumerate() {
        out.push_str(&format!("{:08x} ", line * 16));
        for i in 0..16 {
            if i == 8 {
                out.push(' ');
            }
            match chunk.get(i) {
                Some(b) => out.push_str(&format!(" {b:02x}")),
                None => out.push_str("   "),
            }
        }
        out.push_str("  |");
        out.extend(chunk.iter().map(|b| {
            if b.is_ascii_graphic() || *b == b' ' {
                char::from(*b)
            } else {
                '.'
            }
        }));
        out.push_str("|\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_pretty_printed_and_other_bodies_dumped() {
        assert_eq!(
            BodyView::of(br#"{"a":[1,"<b>"]}"#),
            BodyView::Json("{\n  \"a\": [\n    1,\n    \"<b>\"\n  ]\n}".into())
        );
        assert_eq!(
            BodyView::of(b"plain <i>"),
            BodyView::Text("plain <i>".into())
        );
        assert_eq!(BodyView::of(&[0xff, 0xfe, b'a']), BodyView::Binary);
    }

    #[test]
    fn hex_dump_lines() {
        let dump = hex_dump(b"0123456789abcdef<\x00\xff");
        assert_eq!(
            dump,
            "00000000  30 31 32 33 34 35 36 37  38 39 61 62 63 64 65 66  |0123456789abcdef|\n\
             00000010  3c 00 ff                                          |<..|\n"
        );
        assert_eq!(hex_dump(b""), "");
        let big = vec![b'x'; HEX_LIMIT + 100];
        assert_eq!(hex_dump(&big).lines().count(), HEX_LIMIT / 16);
    }
}
