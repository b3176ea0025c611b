//! Span export over OTLP (feature `otel`): when `OTEL_EXPORTER_OTLP_ENDPOINT`
//! (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, the default subscriber
//! gets a `tracing-opentelemetry` layer whose spans go to an OTLP/HTTP
//! (protobuf) exporter, configured by the standard `OTEL_*` variables
//! (`OTEL_SERVICE_NAME`, `OTEL_EXPORTER_OTLP_HEADERS`, …). Spans are batched
//! on the SDK's own thread and flushed when the service stops.

use std::sync::{Mutex, OnceLock};

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Subscriber;
use tracing_subscriber::Layer;
use tracing_subscriber::registry::LookupSpan;

/// The provider the default subscriber exports through, for [`shutdown`].
static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();
/// Why the exporter could not be built, logged once a subscriber exists.
static BUILD_ERROR: Mutex<Option<String>> = Mutex::new(None);

fn endpoint_set() -> bool {
    [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|v| std::env::var(v).is_ok_and(|s| !s.trim().is_empty()))
}

/// The export layer, when an OTLP endpoint is configured.
pub(crate) fn layer_from_env<S>() -> Option<impl Layer<S>>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    if !endpoint_set() {
        return None;
    }
    // With `dlq` or `cli`, reqwest (the exporter's client too) has rustls
    // without a bundled provider and would panic building its client.
    #[cfg(any(feature = "dlq", feature = "cli"))]
    crate::app::crypto::install_default_provider();
    let exporter = match opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
    {
        Ok(exporter) => exporter,
        Err(e) => {
            if let Ok(mut slot) = BUILD_ERROR.lock() {
                // The text may quote the endpoint, credentials included.
                *slot = Some(crate::core::mask::mask_password(&e.to_string()));
            }
            return None;
        }
    };
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .build();
    let tracer = provider.tracer("mqkit");
    let _ = PROVIDER.set(provider);
    Some(tracing_opentelemetry::layer().with_tracer(tracer))
}

/// Logs a failed exporter setup (now that logs go somewhere).
pub(crate) fn report_setup() {
    if let Some(e) = BUILD_ERROR.lock().ok().and_then(|mut slot| slot.take()) {
        tracing::warn!(error = %e, "OTEL_EXPORTER_OTLP_ENDPOINT is set but the OTLP span exporter could not be built; spans are not exported. Check the OTEL_EXPORTER_OTLP_* variables");
    }
}

/// Flushes and stops the exporter (end of [`App::run`](crate::App::run)).
pub(crate) fn shutdown() {
    if let Some(provider) = PROVIDER.get()
        && let Err(e) = provider.shutdown()
    {
        tracing::warn!(error = %e, "could not flush the last spans to the OTLP endpoint");
    }
}
