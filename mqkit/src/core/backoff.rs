//! Capped exponential back-off with jitter, the one schedule every retry
//! loop uses (reconnects, the archive table migration, per-consumer retries).

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

/// Delays from `min` doubling to `max`, each plus up to 100 % jitter, forever.
pub(crate) fn exponential(min: Duration, max: Duration) -> backon::ExponentialBackoff {
    ExponentialBuilder::default()
        .with_min_delay(min.min(max))
        .with_max_delay(max)
        .with_jitter()
        .without_max_times()
        .build()
}
