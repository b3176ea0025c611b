//! Publishes sample payments to queue `payment` so that `payment_service`
//! shows what a transactional consumer does: a capture, the same payment
//! again under a new message id (a duplicate: nothing debited twice, no
//! second event), and a payment the account cannot cover (rejected: rolled
//! back, dead-lettered).
//!
//! ```text
//! cargo run -p mqkit-examples --example publish_payments -- pay-1
//! ```
//!
//! The argument is the first payment's id (default `pay-1`); run it again
//! with another id to capture another payment.

use serde_json::json;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let id = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "pay-1".to_owned());
    // Start payment_service first: it declares queue `payment`.
    let url =
        std::env::var("MQKIT_AMQP_URL").unwrap_or_else(|_| mqkit::DEFAULT_AMQP_URL.to_owned());
    let publisher = mqkit::Publisher::connect(&url).await?;
    let payment = json!({"payment_id": id, "account": "alice", "amount_cents": 2500});
    publisher.publish_json("", "payment", &payment).await?;
    // The same payment again (a new message id): a duplicate.
    publisher.publish_json("", "payment", &payment).await?;
    // More than bob has: rejected, nothing debited.
    let too_much =
        json!({"payment_id": format!("{id}-big"), "account": "bob", "amount_cents": 1_000_000});
    publisher.publish_json("", "payment", &too_much).await?;
    println!("published 3 payments to queue `payment`");
    publisher.close().await;
    Ok(())
}
