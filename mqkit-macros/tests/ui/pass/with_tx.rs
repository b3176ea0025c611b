//! `mut tx: mqkit::Tx` between a `State<S>` and a `Context`, the handler
//! using the transaction's connection and outbox. The consumer is a
//! PostgreSQL transactional one; in memory (no database) the harness
//! requeues the delivery before the handler runs.

use mqkit::testing::TestHarness;
use mqkit::{Consumer, DatabaseKind, Outcome, RequeueReason};

#[derive(Clone)]
struct Deps {
    exchange: &'static str,
}

#[derive(serde::Deserialize)]
struct PaymentEvent {
    payment_id: String,
    cents: i64,
}

#[derive(serde::Serialize)]
struct Captured<'a> {
    payment_id: &'a str,
}

#[mqkit::consumer(queue = "payment", idempotency = "payment_id")]
async fn on_payment(
    evt: PaymentEvent,
    mqkit::State(deps): mqkit::State<Deps>,
    mut tx: mqkit::Tx,
    ctx: mqkit::Context,
) -> Result<(), mqkit::HandlerError> {
    sqlx::query("UPDATE accounts SET cents = cents - $1 WHERE payment_id = $2")
        .bind(evt.cents)
        .bind(&evt.payment_id)
        .execute(tx.conn())
        .await?;
    tx.publish_json(
        deps.exchange,
        "payment.captured",
        &Captured {
            payment_id: &evt.payment_id,
        },
    )
    .await?;
    let _ = ctx.attempt();
    Ok(())
}

#[tokio::main]
async fn main() {
    assert_eq!(on_payment {}.transaction(), Some(DatabaseKind::Postgres));
    assert_eq!(on_payment {}.state_types().len(), 1);
    let harness = TestHarness::new(on_payment {}).state(Deps {
        exchange: "payments",
    });
    let outcome = harness
        .deliver_bytes(r#"{"payment_id":"p-1","cents":5}"#)
        .await;
    assert!(
        matches!(
            &outcome,
            Outcome::Requeue {
                reason: RequeueReason::DatabaseUnavailable(_),
                ..
            }
        ),
        "{outcome:?}"
    );
}
