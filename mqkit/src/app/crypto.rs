//! The process's rustls crypto provider (features `dlq`, `cli`): reqwest
//! is built with `rustls-no-provider` (ring instead of aws-lc-rs, whose C
//! build needs cmake), and then every reqwest client of the process, mqkit's
//! and the OTLP exporter's (feature `otel`), uses the process-wide default
//! provider, panicking when building a client if there is none. Entry
//! point: [`install_default_provider`], called before any client is built.

use std::sync::Once;

/// Installs ring's provider as the process default, unless the application
/// installed one already (then that one is used). Safe to call any number
/// of times, from any thread; never panics.
pub(crate) fn install_default_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            // An error means another thread installed one in between; fine.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installs_once_and_never_panics() {
        install_default_provider();
        install_default_provider();
        assert!(rustls::crypto::CryptoProvider::get_default().is_some());
        // Installing again by hand reports the one already there.
        assert!(
            rustls::crypto::ring::default_provider()
                .install_default()
                .is_err()
        );
    }
}
