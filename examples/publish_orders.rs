//! Publishes sample order events to queue `order` so that `order_service`
//! shows every outcome: acks, one duplicate, one malformed body, one
//! rejected event and one that succeeds only on its third attempt.
//!
//! ```text
//! cargo run -p mqkit-examples --example publish_orders -- 10
//! ```

use serde_json::json;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(10);
    // Start order_service first: it declares queue `order`. Each publish
    // waits for the broker's confirm and fails if nothing is bound.
    let url =
        std::env::var("MQKIT_AMQP_URL").unwrap_or_else(|_| mqkit::DEFAULT_AMQP_URL.to_owned());
    let publisher = mqkit::Publisher::connect(&url).await?;

    for i in 0..n {
        let evt = json!({"order_id": format!("ord-{i}"), "event_type": "created", "amount_cents": 1000 + i});
        publisher.publish_json("", "order", &evt).await?;
    }
    // Same business event again, under a new message id: a duplicate.
    publisher
        .publish_json(
            "",
            "order",
            &json!({"order_id": "ord-0", "event_type": "created", "amount_cents": 1000}),
        )
        .await?;
    // Malformed body: straight to the DLQ with kind `decode`.
    publisher
        .publish_json("", "order", &json!({"order_id": "ord-bad"}))
        .await?;
    // Negative amount: the handler rejects it, kind `rejected`.
    publisher
        .publish_json(
            "",
            "order",
            &json!({"order_id": "ord-neg", "event_type": "created", "amount_cents": -5}),
        )
        .await?;
    // Transient failures, then success on attempt 3.
    publisher
        .publish_json("", "order", &json!({"order_id": "ord-flaky", "event_type": "created", "amount_cents": 42, "flaky": true}))
        .await?;
    println!("published {} events to queue `order`", n + 4);
    publisher.close().await;
    Ok(())
}
