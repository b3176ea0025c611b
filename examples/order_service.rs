//! The ARCHITECTURE.md example as a runnable service: consumes queue `order`,
//! rejects negative amounts, fails transiently on `"flaky": true` until the
//! third attempt, and logs every outcome.
//!
//! ```text
//! cargo run -p mqkit-examples --example order_service
//! ```

use serde::Deserialize;

/// An order event as the order service publishes it.
#[derive(Debug, Deserialize)]
struct OrderEvent {
    order_id: String,
    event_type: String,
    amount_cents: i64,
    #[serde(default)]
    flaky: bool,
}

/// Charges an order.
#[mqkit::consumer(
    queue = "order",
    dlx = "dlx",
    idempotency = "order_id,event_type",
    retry_delay = "500ms",
    max_retries = 3
)]
async fn on_order(evt: OrderEvent, ctx: mqkit::Context) -> Result<(), mqkit::HandlerError> {
    if evt.amount_cents < 0 {
        return Err(mqkit::HandlerError::reject("negative amount")); // permanent: straight to the DLQ
    }
    charge(&evt, ctx.attempt()).await?; // any std error: transient, retried with back-off, then DLQ
    tracing::info!(order_id = %evt.order_id, event_type = %evt.event_type, amount_cents = evt.amount_cents, attempt = ctx.attempt(), "charged");
    Ok(())
}

/// Stands in for a payment API call.
async fn charge(evt: &OrderEvent, attempt: u32) -> Result<(), std::io::Error> {
    if evt.flaky && attempt < 3 {
        return Err(std::io::Error::other("payment gateway timed out"));
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), mqkit::Error> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,mqkit=debug".into()),
        )
        .init();
    mqkit::run().await // every #[consumer] in this binary, config from the environment
}
