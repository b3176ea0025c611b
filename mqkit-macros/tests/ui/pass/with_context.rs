//! `async fn f(msg: T, ctx: mqkit::Context) -> Result<(), E>` with `E` a
//! user-defined `std::error::Error`, run in memory.

use std::fmt;

use mqkit::testing::TestHarness;
use mqkit::Outcome;

#[derive(Debug)]
struct PaymentDeclined;

impl fmt::Display for PaymentDeclined {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("payment declined")
    }
}

impl std::error::Error for PaymentDeclined {}

#[derive(serde::Deserialize)]
struct OrderEvent {
    amount_cents: i64,
}

#[mqkit::consumer(queue = "order")]
async fn on_order(evt: OrderEvent, ctx: mqkit::Context) -> Result<(), PaymentDeclined> {
    assert_eq!(ctx.attempt(), 1);
    if evt.amount_cents > 1_000 {
        return Err(PaymentDeclined);
    }
    Ok(())
}

#[tokio::main]
async fn main() {
    let harness = TestHarness::new(on_order {});
    assert_eq!(harness.deliver_bytes(r#"{"amount_cents":5}"#).await, Outcome::Ack);
    // A std error is transient: retried.
    let outcome = harness.deliver_bytes(r#"{"amount_cents":5000}"#).await;
    assert!(
        matches!(&outcome, Outcome::Retry { error, .. } if error.contains("payment declined")),
        "{outcome:?}"
    );
}
