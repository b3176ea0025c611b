//! The scriptable test consumer shared by the pipeline tests, the
//! idempotency scenarios (here and in the `mqkit-tests` crate) and the
//! pipeline benchmark: a hand-written [`Consumer`] whose handler does what
//! the message's `event_type` says.
//!
//! Included with `#[path = ".../support/orders.rs"] mod orders;`; each
//! includer uses only part of it.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::borrow::Cow;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mqkit::testing::TestHarness;
use mqkit::{
    Consumer, ConsumerSpec, Context, DecodeError, HandlerError, IdempotencyStore, KeyBuilder,
    Outcome, RequeueReason, decode_json,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::Notify;

/// The idempotency fields of every spec made by [`spec`].
pub(crate) const KEY_FIELDS: &[&str] = &["order_id", "event_type"];

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct OrderEvent {
    pub(crate) order_id: String,
    pub(crate) event_type: String,
    /// The pipeline tests send one; the idempotency scenarios send none, so
    /// their `reject` says `bad order` rather than `negative amount …`.
    pub(crate) amount_cents: Option<i64>,
    /// Padding: the benchmark fills it to a realistic body size.
    #[serde(default)]
    pub(crate) note: String,
}

/// Holds a handler (`event_type = "hold"`) until the test releases it.
#[derive(Debug, Default)]
pub(crate) struct Gate {
    started: Notify,
    release: Notify,
}

impl Gate {
    /// Runs `held` (a delivery whose handler holds) and, once that handler
    /// has started, `meanwhile`; then releases the handler. Fails the test
    /// if the two are not done `within`.
    pub(crate) async fn while_held<A, B>(
        &self,
        within: Duration,
        held: impl Future<Output = A>,
        meanwhile: impl Future<Output = B>,
    ) -> (A, B) {
        let meanwhile = async {
            self.started.notified().await;
            let out = meanwhile.await;
            self.release.notify_one();
            out
        };
        tokio::time::timeout(within, async { tokio::join!(held, meanwhile) })
            .await
            .expect("the held handler was released")
    }
}

/// Shared by every instance (harness) of the consumer in one test.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    calls: AtomicUsize,
    flaky_failed: AtomicBool,
    pub(crate) gate: Gate,
    /// The context of every `charged` delivery the handler ran.
    pub(crate) contexts: Mutex<Vec<Context>>,
}

impl Shared {
    /// How many times the handler ran.
    pub(crate) fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Orders {
    spec: ConsumerSpec,
    shared: Arc<Shared>,
}

impl Orders {
    /// One instance of the service: this consumer with `spec` on `store`.
    pub(crate) fn harness(
        spec: ConsumerSpec,
        shared: &Arc<Shared>,
        store: Arc<dyn IdempotencyStore>,
    ) -> TestHarness<Orders> {
        let consumer = Orders {
            spec: spec.clone(),
            shared: shared.clone(),
        };
        TestHarness::with_store(consumer, spec, store)
    }
}

/// A spec for `queue` keyed on [`KEY_FIELDS`], otherwise the defaults.
pub(crate) fn spec(queue: impl Into<Cow<'static, str>>) -> ConsumerSpec {
    let mut spec = ConsumerSpec::new(queue);
    spec.idempotency = KEY_FIELDS;
    spec
}

/// The delay and error of a `Requeue(StoreUnavailable)`; any other outcome
/// fails the test.
pub(crate) fn store_unavailable(outcome: Outcome) -> (Duration, String) {
    let Outcome::Requeue {
        delay,
        reason: RequeueReason::StoreUnavailable(error),
    } = outcome
    else {
        panic!("expected Requeue(StoreUnavailable), got {outcome:?}");
    };
    (delay, error)
}

#[derive(Debug, thiserror::Error)]
#[error("charge failed")]
struct ChargeFailed(#[source] std::io::Error);

async fn io_call(fail: bool) -> Result<(), std::io::Error> {
    if fail {
        Err(std::io::Error::other("connection reset by peer"))
    } else {
        Ok(())
    }
}

impl Consumer for Orders {
    type Message = OrderEvent;

    fn spec(&self) -> ConsumerSpec {
        self.spec.clone()
    }

    fn decode(&self, body: &[u8]) -> Result<OrderEvent, DecodeError> {
        decode_json(body)
    }

    fn idempotency_key(&self, msg: &OrderEvent, key: &mut KeyBuilder) {
        key.push(&msg.order_id);
        key.push(&msg.event_type);
    }

    fn handle(
        &self,
        msg: OrderEvent,
        ctx: Context,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send + 'static {
        let shared = self.shared.clone();
        async move {
            shared.calls.fetch_add(1, Ordering::SeqCst);
            match msg.event_type.as_str() {
                "retry" => Err(HandlerError::retry("upstream unavailable")),
                // `?` on a std error: transient.
                "io" => {
                    io_call(true).await?;
                    Ok(())
                }
                "io-chain" => {
                    io_call(true).await.map_err(ChargeFailed)?;
                    Ok(())
                }
                // Fails (transiently) the first time only.
                "flaky" => {
                    if shared.flaky_failed.swap(true, Ordering::SeqCst) {
                        Ok(())
                    } else {
                        Err(std::io::Error::other("flaky failure").into())
                    }
                }
                "reject" => Err(HandlerError::reject(match msg.amount_cents {
                    Some(amount) => format!("negative amount {amount}"),
                    None => "bad order".to_owned(),
                })),
                "panic" => panic!("kaboom"),
                "panic-string" => {
                    let what = msg.order_id.clone();
                    panic!("{}", what)
                }
                "panic-other" => std::panic::panic_any(42_u32),
                "sleep" => {
                    tokio::time::sleep(Duration::from_secs(10)).await;
                    Ok(())
                }
                // Records its context and publishes `order.charged`.
                "charged" => {
                    shared.contexts.lock().unwrap().push(ctx.clone());
                    ctx.publisher()
                        .publish_json(
                            "events",
                            "order.charged",
                            &json!({"order_id": msg.order_id, "status": "charged"}),
                        )
                        .await?;
                    Ok(())
                }
                "hold" => {
                    shared.gate.started.notify_one();
                    shared.gate.release.notified().await;
                    Ok(())
                }
                // "ok", "created", "paid%", …
                _ => Ok(()),
            }
        }
    }
}
