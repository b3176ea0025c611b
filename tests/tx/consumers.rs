//! The transactional consumers of the tests and of `mqkit-test-tx-service`:
//! the same handler on PostgreSQL (`charge_pg`, `mqkit::Tx`) and on
//! MariaDB (`charge_my`, `mqkit::Tx<sqlx::MySql>`). Each writes one row to
//! `effects` and stages one follow-up (`{"order_id": …}`) for the queue in
//! `State<Followups>`, through the default exchange; then fails as the
//! event's `fail` asks (`retry`, `reject`, `panic`; `swallow` runs a failing
//! statement and goes on), so a test sees that a failure leaves neither the
//! row nor the follow-up.

use serde::Deserialize;

/// A charge; `order_id` is the business key.
#[derive(Debug, Deserialize)]
pub(crate) struct Charge {
    pub(crate) order_id: String,
    pub(crate) cents: i64,
    #[serde(default)]
    pub(crate) fail: Option<String>,
}

/// Where follow-ups go (a queue, through the default exchange).
#[derive(Debug, Clone)]
pub(crate) struct Followups(pub(crate) String);

/// How long each handler waits after its writes (tests of crashes and
/// outages make handlers last long enough to be caught in flight).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct HandlerDelay(pub(crate) std::time::Duration);

fn fail(evt: &Charge) -> Result<(), mqkit::HandlerError> {
    match evt.fail.as_deref() {
        Some("retry") => Err(mqkit::HandlerError::retry("asked to fail")),
        Some("reject") => Err(mqkit::HandlerError::reject("asked to reject")),
        Some("panic") => panic!("asked to panic"),
        _ => Ok(()),
    }
}

#[mqkit::consumer(
    queue = "mqkit-test-tx-pg",
    idempotency = "order_id",
    retry_delay = "100ms"
)]
pub(crate) async fn charge_pg(
    evt: Charge,
    mut tx: mqkit::Tx,
    mqkit::State(to): mqkit::State<Followups>,
    mqkit::State(delay): mqkit::State<HandlerDelay>,
) -> Result<(), mqkit::HandlerError> {
    sqlx::query("INSERT INTO effects (order_id, cents) VALUES ($1, $2)")
        .bind(&evt.order_id)
        .bind(evt.cents)
        .execute(tx.conn())
        .await?;
    tx.publish_json("", &to.0, &serde_json::json!({ "order_id": evt.order_id }))
        .await?;
    if evt.fail.as_deref() == Some("swallow") {
        // A failed statement the handler goes on from (on PostgreSQL that
        // aborts the transaction; on MySQL only the statement).
        let _ = sqlx::query("SELECT * FROM no_such_table")
            .execute(tx.conn())
            .await;
    }
    if !delay.0.is_zero() {
        tokio::time::sleep(delay.0).await;
    }
    fail(&evt)
}

#[mqkit::consumer(
    queue = "mqkit-test-tx-my",
    idempotency = "order_id",
    retry_delay = "100ms"
)]
pub(crate) async fn charge_my(
    evt: Charge,
    mqkit::State(to): mqkit::State<Followups>,
    mut tx: mqkit::Tx<sqlx::MySql>,
    mqkit::State(delay): mqkit::State<HandlerDelay>,
) -> Result<(), mqkit::HandlerError> {
    sqlx::query("INSERT INTO effects (order_id, cents) VALUES (?, ?)")
        .bind(&evt.order_id)
        .bind(evt.cents)
        .execute(tx.conn())
        .await?;
    tx.publish_json("", &to.0, &serde_json::json!({ "order_id": evt.order_id }))
        .await?;
    if evt.fail.as_deref() == Some("swallow") {
        // A failed statement the handler goes on from (on PostgreSQL that
        // aborts the transaction; on MySQL only the statement).
        let _ = sqlx::query("SELECT * FROM no_such_table")
            .execute(tx.conn())
            .await;
    }
    if !delay.0.is_zero() {
        tokio::time::sleep(delay.0).await;
    }
    fail(&evt)
}
