//! The README's transactional service: consumes queue `payment`, debits an
//! account in PostgreSQL and stages a `payment.captured` event in the same
//! transaction (`mqkit::Tx`), so the debit and the event happen exactly
//! once together, or not at all.
//!
//! - `capture` takes `mut tx: mqkit::Tx`: mqkit opened the transaction and
//!   inserted the payment's inbox row in it; the handler's `UPDATE` and its
//!   staged event commit with that row, then the delivery is acked and the
//!   relay publishes the event (confirmed, persistent, a stable message id).
//!   A second delivery of the same `payment_id` is a duplicate: nothing is
//!   debited again and nothing is sent again.
//! - An unknown account or too little money is rejected: the transaction
//!   rolls back (no debit, no event, no inbox row) and the payment goes to
//!   `dlq.payment`.
//! - `payment.captured` goes to exchange `payments`, bound to queue
//!   `payment-receipts`, which `log_capture` reads (in a real system
//!   another service would).
//!
//! ```text
//! cargo run -p mqkit-examples --example payment_service
//! ```
//!
//! `MQKIT_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/test`)
//! and every `MQKIT_*` variable of the README apply. Table `accounts` is
//! created at startup with accounts `alice` and `bob` (10,000 cents each) if
//! they are not there; mqkit creates its own tables (`mqkit_inbox`,
//! `mqkit_outbox`).

use mqkit::HandlerError;
use serde::{Deserialize, Serialize};
use sqlx::Connection as _;
use tracing::info;

/// A payment to capture.
#[derive(Debug, Deserialize)]
struct Payment {
    payment_id: String,
    account: String,
    amount_cents: i64,
}

/// The event staged once the debit is in.
#[derive(Debug, Serialize, Deserialize)]
struct PaymentCaptured {
    payment_id: String,
    account: String,
    amount_cents: i64,
    balance_cents: i64,
}

/// Debits the account and stages `payment.captured`, in one transaction.
#[mqkit::consumer(queue = "payment", dlx = "dlx", idempotency = "payment_id")]
async fn capture(p: Payment, mut tx: mqkit::Tx) -> Result<(), HandlerError> {
    if p.amount_cents <= 0 {
        return Err(HandlerError::reject("amount must be positive"));
    }
    let balance: Option<i64> = sqlx::query_scalar(
        "UPDATE accounts SET balance_cents = balance_cents - $1
         WHERE id = $2 AND balance_cents >= $1
         RETURNING balance_cents",
    )
    .bind(p.amount_cents)
    .bind(&p.account)
    .fetch_optional(tx.conn())
    .await?; // a database error: transient, rolled back and retried
    let Some(balance_cents) = balance else {
        // Rolled back: no debit, no event, and no inbox row, so a replay
        // after a top-up runs again.
        return Err(HandlerError::reject(format!(
            "account {} is unknown or has less than {} cents",
            p.account, p.amount_cents
        )));
    };
    tx.publish_json(
        "payments",
        "payment.captured",
        &PaymentCaptured {
            payment_id: p.payment_id.clone(),
            account: p.account.clone(),
            amount_cents: p.amount_cents,
            balance_cents,
        },
    )
    .await?; // staged in the outbox: sent only if this transaction commits
    info!(payment_id = %p.payment_id, account = %p.account, balance_cents, "captured");
    Ok(())
}

/// Reads the captured events (stands in for the receipt service).
#[mqkit::consumer(
    queue = "payment-receipts",
    dlx = "dlx",
    exchange = "payments",
    routing_key = "payment.captured"
)]
async fn log_capture(evt: PaymentCaptured, ctx: mqkit::Context) -> Result<(), HandlerError> {
    info!(
        payment_id = %evt.payment_id,
        balance_cents = evt.balance_cents,
        message_id = ctx.message_id().unwrap_or(""),
        "payment.captured received"
    );
    Ok(())
}

const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// Creates and seeds `accounts` if needed.
async fn accounts(url: &str) -> Result<(), sqlx::Error> {
    let mut conn = sqlx::PgConnection::connect(url).await?;
    sqlx::raw_sql(
        "SET client_min_messages TO warning; -- no notice when the table exists
        CREATE TABLE IF NOT EXISTS accounts (
            id            TEXT PRIMARY KEY,
            balance_cents BIGINT NOT NULL CHECK (balance_cents >= 0)
        );
        INSERT INTO accounts (id, balance_cents) VALUES ('alice', 10000), ('bob', 10000)
        ON CONFLICT DO NOTHING;",
    )
    .execute(&mut conn)
    .await?;
    conn.close().await
}

#[tokio::main]
async fn main() -> Result<(), mqkit::Error> {
    mqkit::init_logging();
    let mut config = mqkit::Config::from_env()?;
    let url = config
        .database_url
        .get_or_insert_with(|| DEFAULT_DATABASE_URL.to_owned())
        .clone();
    accounts(&url).await.map_err(|e| {
        mqkit::Error::Config(format!(
            "cannot prepare table accounts in PostgreSQL at MQKIT_DATABASE_URL (default {DEFAULT_DATABASE_URL}): {e}"
        ))
    })?;
    mqkit::App::new().config(config).registered().run().await
}
