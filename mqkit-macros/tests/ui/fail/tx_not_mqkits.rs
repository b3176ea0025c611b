//! A `Tx` that is not mqkit's (the service's own transaction type) is
//! reported on the parameter's type.

struct Tx;

#[derive(serde::Deserialize)]
struct PaymentEvent {
    payment_id: String,
}

#[mqkit::consumer(queue = "payment", idempotency = "payment_id")]
async fn on_payment(evt: PaymentEvent, tx: Tx) -> Result<(), mqkit::HandlerError> {
    let _ = (evt.payment_id, tx);
    Ok(())
}

fn main() {}
