//! Tracing a delivery: the `tracing` span each delivery runs in
//! ([`delivery_span`]), and what a handler's follow-up messages inherit
//! from the delivery ([`Lineage`]): the correlation id and the W3C trace
//! context (`traceparent`, `tracestate`).
//!
//! With the `otel` feature the span's parent is the incoming `traceparent`
//! and it carries the messaging semantic-convention attributes; follow-ups
//! then carry the handler's current span as their parent.

use tracing::field::Empty;

use super::headers::Properties;
use super::outcome::Outcome;

/// The W3C trace-context header names.
pub(crate) const TRACEPARENT: &str = "traceparent";
/// See [`TRACEPARENT`].
pub(crate) const TRACESTATE: &str = "tracestate";

/// What a message published from a handler inherits from the delivery.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Lineage {
    /// The incoming `correlation_id`, else its `message_id`.
    pub(crate) correlation_id: Option<String>,
    /// The incoming `traceparent`, when it is well-formed.
    pub(crate) traceparent: Option<String>,
    /// The incoming `tracestate`, passed on as it is.
    pub(crate) tracestate: Option<String>,
}

impl Lineage {
    /// The lineage of a delivery with these properties.
    pub(crate) fn of(properties: &Properties) -> Self {
        let text = |name| {
            properties
                .header(name)
                .and_then(|v| v.as_str())
                .map(str::to_owned)
        };
        Lineage {
            correlation_id: properties
                .correlation_id
                .clone()
                .filter(|c| !c.is_empty())
                .or_else(|| properties.message_id.clone().filter(|m| !m.is_empty())),
            traceparent: text(TRACEPARENT).filter(|t| TraceParent::parse(t).is_some()),
            tracestate: text(TRACESTATE),
        }
    }

    /// Sets what `properties` does not set already: the correlation id, and
    /// `traceparent` / `tracestate` (the handler's current span as parent
    /// when spans are exported, else the incoming header unchanged).
    pub(crate) fn stamp(&self, properties: &mut Properties) {
        if properties.correlation_id.is_none() {
            properties.correlation_id.clone_from(&self.correlation_id);
        }
        if properties.header(TRACEPARENT).is_some() {
            return;
        }
        let (parent, state) = match current_context() {
            Some((parent, state)) => (Some(parent), state.or_else(|| self.tracestate.clone())),
            None => (self.traceparent.clone(), self.tracestate.clone()),
        };
        if let Some(parent) = parent {
            let headers = properties.headers_mut();
            headers.insert(TRACEPARENT, parent);
            if let Some(state) = state.filter(|s| !s.is_empty()) {
                headers.insert(TRACESTATE, state);
            }
        }
    }
}

/// A parsed W3C `traceparent` (version 00): `00-<trace id>-<parent id>-<flags>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TraceParent<'a> {
    /// 32 lowercase hex digits, not all zero.
    pub(crate) trace_id: &'a str,
    /// 16 lowercase hex digits, not all zero.
    pub(crate) parent_id: &'a str,
    /// 2 hex digits.
    pub(crate) flags: &'a str,
}

impl<'a> TraceParent<'a> {
    /// Parses `value`, or `None` when it is not a valid `traceparent`.
    pub(crate) fn parse(value: &'a str) -> Option<Self> {
        let mut parts = value.trim().split('-');
        let (version, trace_id, parent_id, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let hex = |s: &str, len: usize| {
            s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        };
        let nonzero = |s: &str| s.bytes().any(|b| b != b'0');
        // Version 00 has exactly four parts; later versions may add more.
        let extra = parts.next().is_some();
        let ok = hex(version, 2)
            && version != "ff"
            && !(version == "00" && extra)
            && hex(trace_id, 32)
            && nonzero(trace_id)
            && hex(parent_id, 16)
            && nonzero(parent_id)
            && hex(flags, 2);
        ok.then_some(TraceParent {
            trace_id,
            parent_id,
            flags,
        })
    }
}

/// The span one delivery is processed in: `queue`, `message_id`,
/// `correlation_id`, `attempt` from the start, `key` (the business key)
/// and `outcome` recorded when known.
pub(crate) fn delivery_span(queue: &str, properties: &Properties) -> tracing::Span {
    let message_id = properties.message_id.as_deref();
    // `otel.*` name the exported span and its kind; recorded only with
    // `otel`, so plain log lines never show them.
    let span = tracing::info_span!(
        "delivery",
        queue,
        message_id = Empty,
        correlation_id = Empty,
        attempt = properties.attempt(),
        key = Empty,
        outcome = Empty,
        otel.name = Empty,
        otel.kind = Empty,
    );
    // Absent ids are left out rather than shown empty.
    if let Some(id) = message_id {
        span.record("message_id", id);
    }
    if let Some(id) = properties.correlation_id.as_deref() {
        span.record("correlation_id", id);
    }
    #[cfg(feature = "otel")]
    {
        // Before `link`, while the exported span is still being built.
        span.record("otel.name", format_args!("{queue} process"));
        span.record("otel.kind", "consumer");
        otel::link(&span, queue, message_id.unwrap_or(""), properties);
    }
    span
}

/// Records the outcome on the delivery span (and, with `otel`, `error.type`
/// and an error status for retries and dead letters: `retry` or the
/// dead-letter kind).
pub(crate) fn record_outcome(span: &tracing::Span, outcome: &Outcome) {
    span.record("outcome", outcome.name());
    let error_type = match outcome {
        Outcome::Retry { .. } => Some("retry"),
        Outcome::DeadLetter { kind, .. } => Some(kind.as_str()),
        _ => None,
    };
    #[cfg(feature = "otel")]
    otel::record_error(span, error_type);
    #[cfg(not(feature = "otel"))]
    let _ = error_type;
}

/// The handler's current span as a `traceparent` (and its `tracestate`),
/// when spans are exported.
fn current_context() -> Option<(String, Option<String>)> {
    #[cfg(feature = "otel")]
    {
        otel::current()
    }
    #[cfg(not(feature = "otel"))]
    {
        None
    }
}

#[cfg(feature = "otel")]
mod otel {
    use opentelemetry::KeyValue;
    use opentelemetry::trace::{
        SpanContext, SpanId, Status, TraceContextExt as _, TraceFlags, TraceId, TraceState,
    };
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;

    use super::{TRACEPARENT, TRACESTATE, TraceParent};
    use crate::core::headers::Properties;

    /// Parents `span` on the incoming `traceparent` and sets the messaging
    /// attributes.
    pub(super) fn link(span: &tracing::Span, queue: &str, message_id: &str, p: &Properties) {
        if let Some(remote) = p
            .header(TRACEPARENT)
            .and_then(|v| v.as_str())
            .and_then(TraceParent::parse)
            .and_then(|tp| remote_context(tp, p))
        {
            let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
        }
        for kv in [
            KeyValue::new("messaging.system", "rabbitmq"),
            KeyValue::new("messaging.destination.name", queue.to_owned()),
            KeyValue::new("messaging.operation.type", "process"),
            KeyValue::new("messaging.operation.name", "process"),
        ] {
            span.set_attribute(kv.key, kv.value);
        }
        if !message_id.is_empty() {
            span.set_attribute("messaging.message.id", message_id.to_owned());
        }
    }

    fn remote_context(tp: TraceParent<'_>, p: &Properties) -> Option<SpanContext> {
        let trace_id = TraceId::from_hex(tp.trace_id).ok()?;
        let span_id = SpanId::from_hex(tp.parent_id).ok()?;
        let flags = u8::from_str_radix(tp.flags, 16).ok()?;
        let state = p
            .header(TRACESTATE)
            .and_then(|v| v.as_str())
            .and_then(|s| s.parse::<TraceState>().ok())
            .unwrap_or_default();
        Some(SpanContext::new(
            trace_id,
            span_id,
            TraceFlags::new(flags & 1),
            true,
            state,
        ))
    }

    pub(super) fn record_error(span: &tracing::Span, error_type: Option<&str>) {
        if let Some(kind) = error_type {
            span.set_attribute("error.type", kind.to_owned());
            span.set_status(Status::error(kind.to_owned()));
        }
    }

    /// The current span's context as `traceparent` / `tracestate`, when
    /// it is a valid (exported) span.
    pub(super) fn current() -> Option<(String, Option<String>)> {
        let cx = tracing::Span::current().context();
        let span = cx.span();
        let sc = span.span_context();
        if !sc.is_valid() {
            return None;
        }
        let parent = format!(
            "00-{}-{}-{:02x}",
            sc.trace_id(),
            sc.span_id(),
            sc.trace_flags().to_u8()
        );
        let state = sc.trace_state().header();
        Some((parent, (!state.is_empty()).then_some(state)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::headers::Properties;

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_only_valid_traceparents() {
        let tp = TraceParent::parse(TP);
        assert_eq!(
            tp.map(|t| (t.trace_id, t.parent_id, t.flags)),
            Some(("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", "01"))
        );
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-xx",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn follow_ups_inherit_correlation_and_trace() {
        let mut incoming = Properties {
            message_id: Some("m-1".into()),
            ..Properties::default()
        };
        incoming.headers_mut().insert(TRACEPARENT, TP);
        incoming.headers_mut().insert(TRACESTATE, "vendor=x");
        let lineage = Lineage::of(&incoming);
        let mut out = Properties::default();
        lineage.stamp(&mut out);
        assert_eq!(out.correlation_id.as_deref(), Some("m-1"));
        assert_eq!(out.header(TRACEPARENT).and_then(|v| v.as_str()), Some(TP));
        assert_eq!(
            out.header(TRACESTATE).and_then(|v| v.as_str()),
            Some("vendor=x")
        );

        incoming.correlation_id = Some("c-9".into());
        let mut set = Properties {
            correlation_id: Some("mine".into()),
            ..Properties::default()
        };
        Lineage::of(&incoming).stamp(&mut set);
        assert_eq!(set.correlation_id.as_deref(), Some("mine"));
        let mut out = Properties::default();
        Lineage::of(&incoming).stamp(&mut out);
        assert_eq!(out.correlation_id.as_deref(), Some("c-9"));

        let mut garbage = Properties::default();
        garbage.headers_mut().insert(TRACEPARENT, "not-a-trace");
        let mut out = Properties::default();
        Lineage::of(&garbage).stamp(&mut out);
        assert!(out.header(TRACEPARENT).is_none());
    }
}
