//! What an alert looks like on the wire for each chat robot
//! (`MQKIT_DLQ_ALERT_FORMAT`), and the signatures DingTalk and Feishu
//! check (`MQKIT_DLQ_ALERT_SECRET`):
//!
//! | format | body | with a secret |
//! |---|---|---|
//! | `wecom` (default) | `{"msgtype":"text","text":{"content":…}}` | startup error: WeCom does not sign |
//! | `dingtalk` | the same | `timestamp` (ms) and `sign` query parameters |
//! | `feishu` | `{"msg_type":"text","content":{"text":…}}` | `"timestamp"` (s, a string) and `"sign"` in the body |
//! | `slack` | `{"text":…}` | startup error: Slack does not sign |
//!
//! Entry points: [`AlertFormat::parse`], [`AlertFormat::request`],
//! [`Secret`] (never shown).

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hmac::{Hmac, Mac as _};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Value, json};
use sha2::Sha256;

use super::http::Url;

/// The body shape (and signing) a webhook expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AlertFormat {
    /// WeCom (WeChat Work) group robot; also what most text webhooks take.
    WeCom,
    /// DingTalk custom robot, signed with the "加签" secret when one is set.
    DingTalk,
    /// Feishu / Lark custom bot, signed when a secret is set.
    Feishu,
    /// Slack incoming webhook (and Mattermost, Rocket.Chat).
    Slack,
}

/// The names `MQKIT_DLQ_ALERT_FORMAT` accepts, for error messages.
pub(crate) const FORMAT_NAMES: &str = "wecom, dingtalk, feishu, slack";

impl AlertFormat {
    /// The format named `name` (any case); `None` for an unknown name.
    pub(crate) fn parse(name: &str) -> Option<AlertFormat> {
        match name.trim().to_ascii_lowercase().as_str() {
            "wecom" => Some(AlertFormat::WeCom),
            "dingtalk" => Some(AlertFormat::DingTalk),
            "feishu" => Some(AlertFormat::Feishu),
            "slack" => Some(AlertFormat::Slack),
            _ => None,
        }
    }

    /// Its name in `MQKIT_DLQ_ALERT_FORMAT`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            AlertFormat::WeCom => "wecom",
            AlertFormat::DingTalk => "dingtalk",
            AlertFormat::Feishu => "feishu",
            AlertFormat::Slack => "slack",
        }
    }

    /// Whether the robot checks a signature made with a secret.
    pub(crate) fn signs(self) -> bool {
        matches!(self, AlertFormat::DingTalk | AlertFormat::Feishu)
    }

    /// The URL to POST to and the JSON body of an alert saying `content`,
    /// signed with `secret` at `now` where the format signs.
    pub(crate) fn request(
        self,
        webhook: &Url,
        content: &str,
        secret: Option<&Secret>,
        now: SystemTime,
    ) -> (Url, Value) {
        let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
        match (self, secret) {
            (AlertFormat::WeCom, _) => (webhook.clone(), text_body(content)),
            (AlertFormat::DingTalk, None) => (webhook.clone(), text_body(content)),
            (AlertFormat::DingTalk, Some(secret)) => {
                let timestamp = since_epoch.as_millis();
                let sign = dingtalk_sign(&secret.0, timestamp);
                let signed = format!(
                    "timestamp={timestamp}&sign={}",
                    utf8_percent_encode(&sign, NON_ALPHANUMERIC)
                );
                let mut url = webhook.clone();
                let query = match webhook.query() {
                    Some(q) if !q.is_empty() => format!("{q}&{signed}"),
                    _ => signed,
                };
                url.set_query(Some(&query));
                (url, text_body(content))
            }
            (AlertFormat::Feishu, secret) => {
                let mut body = json!({"msg_type": "text", "content": {"text": content}});
                if let (Some(secret), Some(fields)) = (secret, body.as_object_mut()) {
                    let timestamp = since_epoch.as_secs();
                    fields.insert("timestamp".into(), Value::String(timestamp.to_string()));
                    fields.insert(
                        "sign".into(),
                        Value::String(feishu_sign(&secret.0, timestamp)),
                    );
                }
                (webhook.clone(), body)
            }
            (AlertFormat::Slack, _) => (webhook.clone(), json!({"text": content})),
        }
    }
}

/// WeCom's and DingTalk's text message.
fn text_body(content: &str) -> Value {
    json!({"msgtype": "text", "text": {"content": content}})
}

/// DingTalk: base64(HMAC-SHA256(key = secret, message = timestamp + "\n" +
/// secret)), the timestamp in ms; the caller percent-encodes it into the
/// query.
pub(crate) fn dingtalk_sign(secret: &str, timestamp_ms: u128) -> String {
    hmac_base64(
        secret.as_bytes(),
        format!("{timestamp_ms}\n{secret}").as_bytes(),
    )
}

/// Feishu: base64(HMAC-SHA256(key = timestamp + "\n" + secret, message =
/// nothing)), the timestamp in seconds.
pub(crate) fn feishu_sign(secret: &str, timestamp_s: u64) -> String {
    hmac_base64(format!("{timestamp_s}\n{secret}").as_bytes(), b"")
}

fn hmac_base64(key: &[u8], message: &[u8]) -> String {
    // HMAC takes a key of any length, so this never fails.
    let mut mac = <Hmac<Sha256>>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(message);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// A signing secret: shown as `****` in `Debug`, so a settings struct that
/// holds one can be logged.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Secret(String);

impl Secret {
    /// `None` for an empty (or all-blank) value.
    pub(crate) fn new(value: &str) -> Option<Secret> {
        let value = value.trim();
        (!value.is_empty()).then(|| Secret(value.to_owned()))
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("****")
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn names_parse_in_any_case_and_only_the_four() {
        for format in [
            AlertFormat::WeCom,
            AlertFormat::DingTalk,
            AlertFormat::Feishu,
            AlertFormat::Slack,
        ] {
            assert_eq!(AlertFormat::parse(format.name()), Some(format));
            assert!(FORMAT_NAMES.contains(format.name()));
        }
        assert_eq!(
            AlertFormat::parse(" DingTalk "),
            Some(AlertFormat::DingTalk)
        );
        assert_eq!(AlertFormat::parse("lark"), None);
        assert_eq!(AlertFormat::parse(""), None);
    }

    // Known vectors, computed outside Rust with
    //   python3 -c 'import hmac,hashlib,base64;print(base64.b64encode(hmac.new(b"SECtest", b"1700000000000\nSECtest", hashlib.sha256).digest()).decode())'
    //   python3 -c 'import hmac,hashlib,base64;print(base64.b64encode(hmac.new(b"1700000000\nfeishu-secret", b"", hashlib.sha256).digest()).decode())'
    // and again with
    //   printf '1700000000000\nSECtest' | openssl dgst -sha256 -hmac SECtest -binary | base64
    //   printf '' | openssl dgst -sha256 -hmac "$(printf '1700000000\nfeishu-secret')" -binary | base64
    #[test]
    fn signatures_match_vectors_computed_elsewhere() {
        assert_eq!(
            dingtalk_sign("SECtest", 1_700_000_000_000),
            "aZLLrriXgn05YbwaGR7knYsLeJADjr9NwLaNNKpxh4g="
        );
        assert_eq!(
            feishu_sign("feishu-secret", 1_700_000_000),
            "OrBzY1Y01Gq+HgJsl+7OfWcMVwc7YocohQm5iiZwjhU="
        );
    }

    #[test]
    fn each_format_has_its_body_and_signature() {
        let hook = url("https://robot.example/send?access_token=tok");
        let now = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        let secret = Secret::new("SECtest");

        let (u, body) = AlertFormat::WeCom.request(&hook, "hi \"x\"", None, now);
        assert_eq!(u, hook);
        assert_eq!(
            body.to_string(),
            r#"{"msgtype":"text","text":{"content":"hi \"x\""}}"#
        );

        let (u, body) = AlertFormat::Slack.request(&hook, "hi", None, now);
        assert_eq!(
            (u, body.to_string()),
            (hook.clone(), r#"{"text":"hi"}"#.into())
        );

        let (u, body) = AlertFormat::DingTalk.request(&hook, "hi", None, now);
        assert_eq!(u, hook);
        assert_eq!(body, json!({"msgtype": "text", "text": {"content": "hi"}}));
        let (u, body) = AlertFormat::DingTalk.request(&hook, "hi", secret.as_ref(), now);
        let sign = dingtalk_sign("SECtest", 1_700_000_000_123);
        assert_eq!(
            u.as_str(),
            format!(
                "https://robot.example/send?access_token=tok&timestamp=1700000000123&sign={}",
                utf8_percent_encode(&sign, NON_ALPHANUMERIC)
            )
        );
        // base64's `=` (and any `+`, `/`) is percent-encoded in the query.
        assert!(u.as_str().ends_with("%3D"), "{u}");
        assert_eq!(body, json!({"msgtype": "text", "text": {"content": "hi"}}));
        let bare = url("https://robot.example/send");
        let (u, _) = AlertFormat::DingTalk.request(&bare, "hi", secret.as_ref(), now);
        assert!(
            u.as_str()
                .starts_with("https://robot.example/send?timestamp=1700000000123&sign="),
            "{u}"
        );

        let (u, body) = AlertFormat::Feishu.request(&hook, "hi", None, now);
        assert_eq!(u, hook);
        assert_eq!(body, json!({"msg_type": "text", "content": {"text": "hi"}}));
        let (_, body) = AlertFormat::Feishu.request(&hook, "hi", secret.as_ref(), now);
        assert_eq!(
            body,
            json!({
                "msg_type": "text",
                "content": {"text": "hi"},
                "timestamp": "1700000000",
                "sign": feishu_sign("SECtest", 1_700_000_000),
            })
        );
    }

    #[test]
    fn secrets_are_never_shown() {
        let secret = Secret::new("  SECtop  ");
        assert_eq!(format!("{secret:?}"), "Some(****)");
        assert_eq!(secret.map(|s| s.0).as_deref(), Some("SECtop"));
        assert_eq!(Secret::new("  "), None);
    }
}
