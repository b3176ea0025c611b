//! The README's "A complete service": consumes queue `order`, records each
//! charge in PostgreSQL and announces it with an `order.charged` event.
//!
//! - The handler gets the database pool as `State<Deps>` and publishes the
//!   follow-up with `ctx.publisher()` (it carries the order's correlation id).
//! - Table `order_charges` is created at startup; its primary key
//!   (order_id, event_type) means a redelivery cannot charge twice.
//! - A negative amount is rejected (straight to `dlq.order`); `"flaky": true`
//!   fails transiently until the third attempt.
//! - `order.charged` goes to exchange `billing`, bound to queue `receipts`,
//!   which the second consumer here reads (in a real system another service
//!   would), so the event is routable and does not pile up.
//!
//! ```text
//! cargo run -p mqkit-examples --example order_service
//! ```
//!
//! `DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/test`) and
//! every `MQKIT_*` variable of the README apply.

use std::time::Duration;

use mqkit::{Context, HandlerError, State};
use serde::{Deserialize, Serialize};
use sqlx::Connection as _;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use tracing::info;

/// What the handlers share: given once with `App::state`.
#[derive(Clone)]
struct Deps {
    pool: PgPool,
}

/// An order event as the checkout publishes it.
#[derive(Debug, Deserialize)]
struct OrderEvent {
    order_id: String,
    event_type: String,
    amount_cents: i64,
    #[serde(default)]
    flaky: bool,
}

/// The follow-up `on_order` publishes once the charge is recorded.
#[derive(Debug, Serialize, Deserialize)]
struct OrderCharged {
    order_id: String,
    event_type: String,
    amount_cents: i64,
}

/// Charges an order once, then announces it.
#[mqkit::consumer(
    queue = "order",
    dlx = "dlx",
    idempotency = "order_id,event_type",
    retry_delay = "500ms",
    max_retries = 3
)]
async fn on_order(
    evt: OrderEvent,
    ctx: Context,
    State(deps): State<Deps>,
) -> Result<(), HandlerError> {
    if evt.amount_cents < 0 {
        return Err(HandlerError::reject("negative amount")); // permanent: straight to the DLQ
    }
    authorize(&evt, ctx.attempt()).await?; // any std error: transient, retried with back-off, then DLQ
    // The row is the charge; a redelivery (a restart, another instance
    // without shared Redis) finds it and charges nothing.
    let inserted = sqlx::query(
        "INSERT INTO order_charges (order_id, event_type, amount_cents, message_id)
         VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
    )
    .bind(&evt.order_id)
    .bind(&evt.event_type)
    .bind(evt.amount_cents)
    .bind(ctx.message_id())
    .execute(&deps.pool)
    .await?
    .rows_affected();
    if inserted == 1 {
        info!(order_id = %evt.order_id, amount_cents = evt.amount_cents, "charged");
    } else {
        info!(order_id = %evt.order_id, "already charged; not charging again");
    }
    // Published even when the row was there: the last attempt may have
    // stopped before this line. A stable message id lets consumers see that.
    let charged = OrderCharged {
        order_id: evt.order_id,
        event_type: evt.event_type,
        amount_cents: evt.amount_cents,
    };
    ctx.publisher()
        .message("billing", "order.charged")
        .json(&charged)
        .message_id(format!(
            "charged:{}:{}",
            charged.order_id, charged.event_type
        ))
        .send()
        .await?; // mandatory and confirmed: unroutable or nacked is a transient error
    Ok(())
}

/// Sends the receipt for a charged order.
#[mqkit::consumer(
    queue = "receipts",
    dlx = "dlx",
    exchange = "billing",
    routing_key = "order.charged",
    idempotency = "order_id,event_type"
)]
async fn send_receipt(evt: OrderCharged) -> Result<(), HandlerError> {
    info!(order_id = %evt.order_id, amount_cents = evt.amount_cents, "receipt sent");
    Ok(())
}

/// Stands in for a payment gateway's authorization call.
async fn authorize(evt: &OrderEvent, attempt: u32) -> Result<(), std::io::Error> {
    if evt.flaky && attempt < 3 {
        return Err(std::io::Error::other("payment gateway timed out"));
    }
    Ok(())
}

const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// Creates the table if it is not there, and the pool the handlers use.
async fn database() -> Result<PgPool, sqlx::Error> {
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_owned());
    let options: PgConnectOptions = url.parse()?;
    // One connection first: its error says why PostgreSQL cannot be
    // reached, where a pool's would only say that it timed out.
    let mut conn = PgConnection::connect_with(&options).await?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS order_charges (
            order_id     TEXT NOT NULL,
            event_type   TEXT NOT NULL,
            amount_cents BIGINT NOT NULL,
            message_id   TEXT,
            charged_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
            PRIMARY KEY (order_id, event_type)
        )",
    )
    .execute(&mut conn)
    .await?;
    conn.close().await?;
    Ok(PgPoolOptions::new()
        .max_connections(10) // the consumer's concurrency
        .acquire_timeout(Duration::from_secs(5))
        .connect_lazy_with(options))
}

/// Runs once the service consumes (the log output `run` installs is in
/// place by then) and never ends: the service stops on SIGINT or SIGTERM.
async fn log_hints() {
    if std::env::var_os("MQKIT_HTTP_ADDR").is_none() {
        info!(
            "MQKIT_HTTP_ADDR is not set: no /livez, /readyz or /metrics; set MQKIT_HTTP_ADDR=127.0.0.1:9464 to serve them"
        );
    }
    std::future::pending::<()>().await;
}

#[tokio::main]
async fn main() -> Result<(), mqkit::Error> {
    let pool = database().await.map_err(|e| {
        mqkit::Error::Config(format!(
            "cannot use PostgreSQL at DATABASE_URL (default {DEFAULT_DATABASE_URL}): {e}"
        ))
    })?;
    mqkit::App::from_env()? // every #[consumer] in this binary, config from the environment
        .state(Deps { pool })
        .run_until(log_hints())
        .await
}
