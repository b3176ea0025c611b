//! A handler named `msg`, next to constants named like the generated code's
//! locals (`ctx`, `e`, `body`, `key`): those locals are hygienic, so nothing
//! here shadows or is shadowed.

use mqkit::testing::TestHarness;
use mqkit::Outcome;

#[allow(non_upper_case_globals)]
mod handlers {
    pub const ctx: u8 = 1;
    pub const e: u8 = 2;
    pub const body: u8 = 3;
    pub const key: u8 = 4;

    #[derive(serde::Deserialize)]
    pub struct OrderEvent {
        order_id: String,
    }

    #[mqkit::consumer(queue = "order", idempotency = "order_id")]
    pub async fn msg(evt: OrderEvent) -> Result<(), mqkit::HandlerError> {
        let _ = evt.order_id;
        Ok(())
    }
}

#[tokio::main]
async fn main() {
    let harness = TestHarness::new(handlers::msg {});
    assert_eq!(harness.deliver_bytes(r#"{"order_id":"o-1"}"#).await, Outcome::Ack);
    assert_eq!(handlers::ctx + handlers::e + handlers::body + handlers::key, 10);
}
