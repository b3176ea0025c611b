//! `&mut mqkit::Tx`: the transaction is handed over by value, and the error
//! says how to write it.

#[derive(serde::Deserialize)]
struct PaymentEvent {
    payment_id: String,
}

#[mqkit::consumer(queue = "payment", idempotency = "payment_id")]
async fn on_payment(evt: PaymentEvent, tx: &mut mqkit::Tx) -> Result<(), mqkit::HandlerError> {
    let _ = (evt.payment_id, tx);
    Ok(())
}

fn main() {}
