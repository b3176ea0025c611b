//! The retry schedule: how long to wait after a failed attempt, and which
//! delay queues a consumer needs. (The attempt number itself is read by
//! [`Properties::attempt`](super::headers::Properties::attempt).)

use std::time::Duration;

use super::spec::ConsumerSpec;

/// No retry waits longer than this.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(10 * 60);

/// The delay after failed attempt `attempt` (1-based): `retry_delay`
/// doubled for each earlier attempt, capped at [`MAX_RETRY_DELAY`].
pub(crate) fn delay_for(retry_delay: Duration, attempt: u32) -> Duration {
    let doublings = attempt.saturating_sub(1).min(31);
    retry_delay
        .saturating_mul(1u32 << doublings)
        .min(MAX_RETRY_DELAY)
}

/// Every distinct delay a consumer can need, shortest first: one per retry,
/// plus `retry_delay` itself, used by requeues even when `max_retries = 0`.
pub(crate) fn delays(spec: &ConsumerSpec) -> Vec<Duration> {
    let mut delays = vec![spec.retry_delay.min(MAX_RETRY_DELAY)];
    for attempt in 1..=spec.max_retries {
        let delay = delay_for(spec.retry_delay, attempt);
        if delays.last() != Some(&delay) {
            delays.push(delay);
        }
        if delay == MAX_RETRY_DELAY {
            break;
        }
    }
    delays
}

/// Name of the delay queue for `delay` on `queue`: `<queue>.retry.<ms>`.
pub(crate) fn delay_queue_name(queue: &str, delay: Duration) -> String {
    format!("{queue}.retry.{}", delay.as_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_and_cap_at_ten_minutes() {
        let base = Duration::from_secs(1);
        assert_eq!(delay_for(base, 1), Duration::from_secs(1));
        assert_eq!(delay_for(base, 2), Duration::from_secs(2));
        assert_eq!(delay_for(base, 4), Duration::from_secs(8));
        assert_eq!(delay_for(base, 11), MAX_RETRY_DELAY);
        assert_eq!(delay_for(base, u32::MAX), MAX_RETRY_DELAY);
    }

    #[test]
    fn distinct_delays_include_the_requeue_delay() {
        let mut spec = ConsumerSpec::new("q");
        spec.retry_delay = Duration::from_millis(250);
        spec.max_retries = 0;
        assert_eq!(delays(&spec), vec![Duration::from_millis(250)]);
        spec.max_retries = 3;
        let ms: Vec<u128> = delays(&spec).iter().map(Duration::as_millis).collect();
        assert_eq!(ms, vec![250, 500, 1000]);
        spec.retry_delay = Duration::from_secs(300);
        spec.max_retries = 50;
        let ms: Vec<u128> = delays(&spec).iter().map(Duration::as_millis).collect();
        assert_eq!(ms, vec![300_000, 600_000]);
        assert_eq!(
            delay_queue_name("order", Duration::from_secs(2)),
            "order.retry.2000"
        );
    }
}
