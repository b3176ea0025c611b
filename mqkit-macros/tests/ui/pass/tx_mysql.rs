//! `mut tx: Tx<sqlx::MySql>`, with `Tx` imported: a MySQL/MariaDB
//! transactional consumer, the only parameter after the message.

use mqkit::{Consumer, DatabaseKind, Tx};

#[derive(serde::Deserialize)]
struct PaymentEvent {
    payment_id: String,
}

#[mqkit::consumer(queue = "payment")]
async fn on_payment(evt: PaymentEvent, mut tx: Tx<sqlx::MySql>) -> Result<(), mqkit::HandlerError> {
    sqlx::query("INSERT INTO captured (payment_id) VALUES (?)")
        .bind(&evt.payment_id)
        .execute(tx.conn())
        .await?;
    Ok(())
}

/// Without the `mqkit::` path and without arguments: PostgreSQL.
#[mqkit::consumer(queue = "refund")]
async fn on_refund(evt: PaymentEvent, tx: Tx) -> Result<(), mqkit::HandlerError> {
    let _ = (evt.payment_id, tx);
    Ok(())
}

fn main() {
    assert_eq!(on_payment {}.transaction(), Some(DatabaseKind::MySql));
    assert_eq!(on_refund {}.transaction(), Some(DatabaseKind::Postgres));
    assert_eq!(on_payment {}.state_types().len(), 0);
}
