//! Every argument at once, as it ends up in the spec.

use std::time::Duration;

use mqkit::{Consumer, QueueType};

#[derive(serde::Deserialize)]
struct PaymentEvent {
    payment_id: String,
    event_type: String,
}

#[mqkit::consumer(
    queue = "payment",
    dlx = "payments.dlx",
    dlq = "payments.dead",
    idempotency = "payment_id, event_type",
    idempotency_ttl = "7d",
    max_retries = 5,
    retry_delay = "250ms",
    prefetch = 20,
    concurrency = 4,
    timeout = "2m",
    exchange = "payments",
    exchange_type = "direct",
    routing_key = "payment.captured",
    queue_type = "quorum"
)]
async fn on_payment(evt: PaymentEvent) -> Result<(), mqkit::HandlerError> {
    let _ = (evt.payment_id, evt.event_type);
    Ok(())
}

fn main() {
    let spec = on_payment {}.spec();
    assert_eq!(spec.queue, "payment");
    assert_eq!(spec.dlx, "payments.dlx");
    assert_eq!(spec.dlq, "payments.dead");
    assert_eq!(spec.idempotency, ["payment_id", "event_type"]);
    assert_eq!(spec.idempotency_ttl, Duration::from_secs(7 * 24 * 3600));
    assert_eq!(spec.max_retries, 5);
    assert_eq!(spec.retry_delay, Duration::from_millis(250));
    assert_eq!(spec.prefetch, 20);
    assert_eq!(spec.concurrency, 4);
    assert_eq!(spec.timeout, Duration::from_secs(120));
    let binding = spec.binding.expect("exchange binding");
    assert_eq!(binding.exchange, "payments");
    assert_eq!(binding.exchange_type, "direct");
    assert_eq!(binding.routing_key, "payment.captured");
    assert_eq!(spec.queue_type, QueueType::Quorum);
}
