//! Two `Tx` parameters, even for two databases: a delivery runs in one
//! transaction.

#[derive(serde::Deserialize)]
struct PaymentEvent {
    payment_id: String,
}

#[mqkit::consumer(queue = "payment", idempotency = "payment_id")]
async fn on_payment(
    evt: PaymentEvent,
    tx: mqkit::Tx,
    ctx: mqkit::Context,
    other: mqkit::Tx<sqlx::MySql>,
) -> Result<(), mqkit::HandlerError> {
    let _ = (evt.payment_id, tx, ctx, other);
    Ok(())
}

fn main() {}
