//! The log output [`run`](crate::run) installs when the application set no
//! `tracing` subscriber of its own: stderr, `RUST_LOG` filter (default
//! `info`), no colours unless stderr is a terminal; with the `otel` feature
//! and `OTEL_EXPORTER_OTLP_ENDPOINT` set, spans are exported over OTLP too.

use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// Installs mqkit's default log output now (what [`run`](crate::run) and
/// [`App::run`](crate::App::run) do first), so a service's own startup
/// steps before them are logged too. Does nothing when the application
/// already set a `tracing` subscriber, or on a second call.
pub fn init_logging() {
    init_default();
}

/// Installs the default subscriber unless one is already set.
pub(crate) fn init_default() {
    if tracing::dispatcher::has_been_set() {
        return;
    }
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let registry = tracing_subscriber::registry().with(filter).with(fmt);
    #[cfg(feature = "otel")]
    let registry = registry.with(crate::app::otel::layer_from_env());
    // Another thread may have won the race; its subscriber stays.
    let _ = registry.try_init();
    #[cfg(feature = "otel")]
    crate::app::otel::report_setup();
}

/// Flushes what the default subscriber exports (spans, with `otel`).
pub(crate) fn flush() {
    #[cfg(feature = "otel")]
    crate::app::otel::shutdown();
}
