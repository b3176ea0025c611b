//! The console's HTML (maud: every inserted value is escaped): the layout
//! with its inline style and "select all" script (both allowed by a
//! per-response CSP nonce, nothing else may run), the list page
//! ([`index`]), one letter ([`letter`]), the replay confirmation
//! ([`confirm`]) and result ([`result`]), and the error page ([`error`]).

use std::collections::BTreeMap;

use axum::http::header::{CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, PreEscaped, html};
use serde_json::Value;

use super::body::{BodyView, HEX_LIMIT, hex_dump};
use super::chart::chart;
use super::params::{FilterText, ListQuery, ReplayForm, Scope};
use crate::addons::cli::archive::ReplayReport;
use crate::addons::dlq::store::{StatsRow, Stored};

const STYLE: &str = "
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#222;background:#fafafa}
header{background:#263238;color:#fff;padding:8px 16px}header a{color:#fff;text-decoration:none;font-weight:600}
header span{color:#b0bec5;margin-left:12px}main{padding:12px 16px;max-width:1400px}
h1{font-size:20px;margin:8px 0}h2{font-size:16px;margin:18px 0 6px}
table{border-collapse:collapse;background:#fff}th,td{border:1px solid #ddd;padding:3px 6px;text-align:left;vertical-align:top}
th{background:#eceff1}td.n{text-align:right;font-variant-numeric:tabular-nums}
tr.total td{font-weight:600}pre{background:#fff;border:1px solid #ddd;padding:8px;overflow:auto;white-space:pre-wrap;word-break:break-all}
pre.hex{white-space:pre;word-break:normal}.muted{color:#777}.err{color:#b71c1c}
form.filter label{margin-right:10px;display:inline-block}form.filter input{width:11em}
.chart{width:100%;max-width:960px;background:#fff;border:1px solid #ddd}
ul.legend{list-style:none;padding:0;margin:4px 0}ul.legend li{display:inline-block;margin-right:14px}
.actions{margin:8px 0}.actions button{margin-right:8px}button{padding:3px 10px}
td.excerpt{max-width:420px;overflow-wrap:anywhere}td.t{white-space:nowrap}.notice{background:#fff8e1;border:1px solid #ffe082;padding:8px}
";

const SCRIPT: &str = "document.addEventListener('DOMContentLoaded',function(){\
var all=document.getElementById('all');if(!all)return;\
all.addEventListener('change',function(){\
document.querySelectorAll('input[name=id]').forEach(function(c){c.checked=all.checked;});});});";

/// A complete page with `status`.
pub(super) fn page(status: StatusCode, title: &str, content: Markup) -> Response {
    let nonce = uuid::Uuid::new_v4().simple().to_string();
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · mqkit dead letters" }
                style nonce=(nonce) { (PreEscaped(STYLE)) }
            }
            body {
                header { a href="/" { "mqkit dead letters" } span { "the dead-letter archive" } }
                main { (content) }
                script nonce=(nonce) { (PreEscaped(SCRIPT)) }
            }
        }
    };
    let csp = format!(
        "default-src 'none'; style-src 'nonce-{nonce}'; script-src 'nonce-{nonce}'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    );
    let mut response = (status, markup).into_response();
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    if let Ok(csp) = HeaderValue::from_str(&csp) {
        headers.insert(CONTENT_SECURITY_POLICY, csp);
    }
    response
}

/// An error page: what went wrong and what to check.
pub(super) fn error(status: StatusCode, title: &str, message: &str) -> Response {
    page(
        status,
        title,
        html! {
            h1 { (title) }
            p.err #error { (message) }
            p { a href="/" { "Back to the dead letters" } }
        },
    )
}

/// What the list page shows.
pub(super) struct Index<'a> {
    /// The archive URL, password masked.
    pub(super) archive: &'a str,
    pub(super) query: &'a ListQuery,
    /// The filter with its times pinned, for the replay form.
    pub(super) pinned: &'a FilterText,
    /// Counts by day, queue and kind of every matching letter.
    pub(super) stats: &'a [StatsRow],
    /// This page of the list, newest first.
    pub(super) rows: &'a [Stored],
    /// The id cursor of the next (older) page, if there is one.
    pub(super) older: Option<i64>,
}

/// `GET /`.
pub(super) fn index(v: &Index<'_>) -> Markup {
    let mut counts: BTreeMap<(&str, &str), (i64, i64)> = BTreeMap::new();
    for r in v.stats {
        let c = counts.entry((&r.queue, &r.kind)).or_default();
        c.0 += r.count;
        c.1 += r.replayed;
    }
    let total: i64 = counts.values().map(|c| c.0).sum();
    let replayed: i64 = counts.values().map(|c| c.1).sum();
    let f = &v.query.filter;
    let queues: std::collections::BTreeSet<&str> = counts.keys().map(|k| k.0).collect();
    let kinds: std::collections::BTreeSet<&str> = counts.keys().map(|k| k.1).collect();
    let filtered = !f.pairs().is_empty();
    html! {
        h1 { "Dead letters" }
        p.muted { "Archive " (v.archive) ". Times are UTC." }
        form.filter method="get" action="/" {
            label { "queue " input name="queue" value=(f.queue) list="queues"; }
            label { "kind " input name="kind" value=(f.kind) list="kinds" placeholder="decode,rejected"; }
            label { "since " input name="since" value=(f.since) placeholder="2h, 3d, 2026-12-01"; }
            label { "until " input name="until" value=(f.until) placeholder="same forms"; }
            label { "error contains " input name="text" value=(f.text); }
            label { "business key " input name="key" value=(f.key); }
            button type="submit" { "Filter" }
            @if filtered { " " a href="/" { "clear" } }
            datalist #queues { @for q in &queues { option value=(q) {} } }
            datalist #kinds { @for k in &kinds { option value=(k) {} } }
        }
        h2 { "Per day" }
        (chart(v.stats))
        h2 { "Per queue and kind" }
        table #counts {
            thead { tr { th { "queue" } th { "kind" } th { "count" } th { "replayed" } } }
            tbody {
                @for ((queue, kind), (n, r)) in &counts {
                    tr data-queue=(queue) data-kind=(kind) {
                        td { (queue) } td { (kind) } td.n.count { (n) } td.n.replayed { (r) }
                    }
                }
                tr.total { td colspan="2" { "total" } td.n #total { (total) } td.n { (replayed) } }
            }
        }
        h2 { "Letters" @if v.query.before.is_some() { " (older)" } }
        form #letters method="post" action="/replay" {
            @for (k, val) in v.pinned.pairs() { input type="hidden" name=(k) value=(val); }
            div.actions {
                button type="submit" name="scope" value="selected" #replay-selected { "Replay selected…" }
                button type="submit" name="scope" value="matching" #replay-matching {
                    "Replay all " (total) " matching…"
                }
                label { input type="checkbox" name="again" value="yes" #again; " also letters replayed before (again)" }
            }
            @if v.rows.is_empty() {
                p.muted #empty { "No dead letters match." }
            } @else {
                table #list {
                    thead { tr {
                        th { input type="checkbox" #all title="select all on this page"; }
                        th { "id" } th { "failed at" } th { "queue" } th { "kind" } th { "error" }
                        th { "message id" } th { "replays" }
                    } }
                    tbody {
                        @for r in v.rows {
                            tr data-id=(r.id) {
                                td { input type="checkbox" name="id" value=(r.id); }
                                td { a href=(format!("/letter/{}", r.id)) { (r.id) } }
                                td.t { (r.failed_at) } td { (r.original_queue) } td.t { (r.error_kind) }
                                td.excerpt { (excerpt(&r.error_text)) }
                                td { (r.message_id) } td.n { (r.replays) }
                            }
                        }
                    }
                }
            }
        }
        p {
            @if v.query.before.is_some() { a href=(format!("/{}", f.query(&[]))) { "← newest" } " " }
            @if let Some(older) = v.older {
                a #older href=(format!("/{}", f.query(&[("before", &older.to_string())]))) { "older →" }
            }
        }
    }
}

fn excerpt(text: &str) -> String {
    const MAX: usize = 120;
    let mut chars = text.chars();
    let cut: String = chars.by_ref().take(MAX).collect();
    if chars.next().is_some() {
        format!("{cut}…")
    } else {
        cut
    }
}

/// `GET /letter/{id}`.
pub(super) fn letter(r: &Stored) -> Markup {
    let fields: [(&str, String); 12] = [
        ("id", r.id.to_string()),
        ("original queue", r.original_queue.clone()),
        ("dead-letter queue", r.dlq.clone()),
        ("message id", r.message_id.clone()),
        ("failed at (UTC)", r.failed_at.clone()),
        ("error kind", r.error_kind.clone()),
        ("error", r.error_text.clone()),
        (
            "attempts",
            r.attempts.map(|a| a.to_string()).unwrap_or_default(),
        ),
        ("business key", r.business_key.clone().unwrap_or_default()),
        ("archived at (UTC)", r.archived_at.clone()),
        (
            "replayed at (UTC)",
            r.replayed_at.clone().unwrap_or_default(),
        ),
        ("replays", r.replays.to_string()),
    ];
    let view = BodyView::of(&r.body);
    html! {
        h1 { "Dead letter " (r.id) }
        table #fields { @for (k, v) in &fields { tr { th { (k) } td { (v) } } } }
        form.actions method="post" action="/replay" {
            input type="hidden" name="id" value=(r.id);
            button type="submit" name="scope" value="selected" { "Replay this letter…" }
            @if r.replayed_at.is_some() {
                label { input type="checkbox" name="again" value="yes"; " again (it was replayed before)" }
            }
        }
        h2 { "Properties" }
        (json_table("properties", &r.properties))
        h2 { "Headers" }
        (json_table("headers", &r.headers))
        h2 { "Body (" (r.body.len()) " bytes" @match &view {
            BodyView::Json(_) => { ", JSON" },
            BodyView::Text(_) => { ", text" },
            BodyView::Binary => { ", not UTF-8" },
        } ")" }
        @match &view {
            BodyView::Json(pretty) => { pre #body { (pretty) } },
            BodyView::Text(text) => { pre #body { (text) } },
            BodyView::Binary => {},
        }
        @if !matches!(view, BodyView::Json(_)) && !r.body.is_empty() {
            @if r.body.len() > HEX_LIMIT { p.muted { "The first " (HEX_LIMIT) " bytes:" } }
            pre.hex #hex { (hex_dump(&r.body)) }
        }
    }
}

/// A JSON object column as a two-column table (strings as they are, other
/// values as JSON).
fn json_table(id: &str, json: &str) -> Markup {
    let parsed = serde_json::from_str::<serde_json::Map<String, Value>>(json);
    html! {
        @match parsed {
            Ok(map) if map.is_empty() => { p.muted { "none" } },
            Ok(map) => {
                table id=(id) {
                    @for (k, v) in &map {
                        tr { th { (k) } td { @match v {
                            Value::String(s) => { (s) },
                            other => { code { (other.to_string()) } },
                        } } }
                    }
                }
            },
            Err(_) => { pre id=(id) { (json) } },
        }
    }
}

/// What the confirmation page says.
pub(super) struct Confirm<'a> {
    pub(super) form: &'a ReplayForm,
    /// The filter with its times pinned.
    pub(super) pinned: &'a FilterText,
    /// Letters to replay per original queue.
    pub(super) per_queue: &'a BTreeMap<String, i64>,
    /// Letters the selection or filter names that were replayed before and
    /// are left out (no `again`).
    pub(super) skipped: i64,
}

/// `POST /replay` without `confirm`.
pub(super) fn confirm(c: &Confirm<'_>) -> Markup {
    let total: i64 = c.per_queue.values().sum();
    let what = match c.form.scope {
        Scope::Selected => "selected",
        Scope::Matching => "matching",
    };
    html! {
        h1 { "Replay " (total) " dead letter" @if total != 1 { "s" } "?" }
        @if total == 0 {
            p #summary { "None of the " (what) " letters is left to replay." }
        } @else {
            p #summary {
                "Each of the " (total) " " (what) " letter" @if total != 1 { "s" }
                " is published to its original queue (with a confirm) and then marked replayed in the archive:"
            }
            table #targets {
                thead { tr { th { "queue" } th { "letters" } } }
                tbody { @for (q, n) in c.per_queue { tr data-queue=(q) { td { (q) } td.n { (n) } } } }
            }
        }
        @if c.skipped > 0 {
            p.notice #skipped {
                (c.skipped) " " (what) " letter" @if c.skipped != 1 { "s were" } @else { " was" }
                " replayed before and " @if c.skipped != 1 { "are" } @else { "is" }
                " left out; tick \"again\" to include " @if c.skipped != 1 { "them" } @else { "it" } "."
            }
        }
        form method="post" action="/replay" {
            input type="hidden" name="scope" value=(match c.form.scope { Scope::Selected => "selected", Scope::Matching => "matching" });
            @for id in &c.form.ids { input type="hidden" name="id" value=(id); }
            @for (k, v) in c.pinned.pairs() { input type="hidden" name=(k) value=(v); }
            @if c.form.again { input type="hidden" name="again" value="yes"; }
            input type="hidden" name="count" value=(total);
            @if total > 0 {
                button type="submit" name="confirm" value="yes" #confirm { "Confirm: replay " (total) }
                " "
            }
            a href=(format!("/{}", c.form.filter.query(&[]))) { "Cancel" }
        }
    }
}

/// `POST /replay` with `confirm`: what the replay did.
pub(super) fn result(
    report: &ReplayReport,
    errors: &[String],
    failure: Option<&str>,
    back: &FilterText,
) -> Markup {
    let n = report.moved_total;
    html! {
        h1 { "Replayed " (n) " dead letter" @if n != 1 { "s" } }
        @if n > 0 {
            table #replayed {
                thead { tr { th { "queue" } th { "replayed" } } }
                tbody { @for (q, k) in &report.moved { tr data-queue=(q) { td { (q) } td.n { (k) } } } }
            }
        }
        p #unroutable {
            (report.unroutable) " unroutable (their queue does not exist; left unmarked, replay them once it exists)"
        }
        @if let Some(failure) = failure {
            p.err #failure { "The replay stopped: " (failure) }
        }
        @if !errors.is_empty() {
            h2 { "Not replayed" }
            ul #errors { @for e in errors { li { (e) } } }
        }
        p { a #back href=(format!("/{}", back.query(&[]))) { "Back to the dead letters" } }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(body: &[u8]) -> Stored {
        Stored {
            id: 7,
            original_queue: "order<q>".into(),
            message_id: "m-\"1\"".into(),
            failed_at: "2026-12-01 10:00:00.000".into(),
            dlq: "dlq.order".into(),
            business_key: None,
            error_kind: "rejected".into(),
            error_text: "<img src=x onerror=alert(1)>".into(),
            attempts: Some(1),
            headers: r#"{"x-note":"<script>alert(2)</script>","n":[1,{"a":"<b>"}]}"#.into(),
            properties: r#"{"content_type":"application/json"}"#.into(),
            body: body.to_vec(),
            archived_at: "2026-12-01 10:00:01.000".into(),
            replayed_at: None,
            replays: 0,
        }
    }

    #[test]
    fn archive_values_are_escaped_everywhere() {
        let html = letter(&stored(br#"{"note":"<script>alert(1)</script>"}"#)).into_string();
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(!html.contains("<b>"), "{html}");
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{html}"
        );
        assert!(
            html.contains("&lt;img src=x onerror=alert(1)&gt;"),
            "{html}"
        );
        assert!(html.contains("order&lt;q&gt;"), "{html}");
        assert!(
            html.contains("m-&quot;1&quot;") || html.contains("m-\"1\""),
            "{html}"
        );

        let text = letter(&stored(b"<script>alert(1)</script>")).into_string();
        assert!(!text.contains("<script"), "{text}");
        assert!(
            text.contains("id=\"hex\""),
            "a text body gets a hex dump too"
        );
        let binary = letter(&stored(&[0xff, b'<', 0x00])).into_string();
        assert!(
            binary.contains("ff 3c 00") && binary.contains("|.&lt;.|"),
            "{binary}"
        );
        assert!(!binary.contains("id=\"body\""), "{binary}");
    }

    #[test]
    fn the_list_escapes_the_filter_and_rows() {
        let query = ListQuery {
            filter: FilterText {
                queue: "\"><script>x</script>".into(),
                ..FilterText::default()
            },
            before: None,
        };
        let row = Stored {
            headers: String::new(),
            properties: String::new(),
            body: Vec::new(),
            ..stored(b"")
        };
        let html = index(&Index {
            archive: "mysql://root:****@h/db",
            query: &query,
            pinned: &query.filter,
            stats: &[StatsRow {
                queue: "order<q>".into(),
                kind: "rejected".into(),
                day: "2026-12-01".into(),
                count: 3,
                replayed: 1,
            }],
            rows: &[row],
            older: Some(7),
        })
        .into_string();
        assert!(!html.contains("<script>x"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(html.contains("data-queue=\"order&lt;q&gt;\""), "{html}");
        assert!(html.contains("before=7"), "{html}");
    }

    #[test]
    fn error_pages_carry_the_message() {
        let r = error(
            StatusCode::BAD_REQUEST,
            "Bad filter",
            "since: `x<y` is not a time",
        );
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let csp = r
            .headers()
            .get(CONTENT_SECURITY_POLICY)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert!(csp.contains("script-src 'nonce-"), "{csp}");
    }
}
