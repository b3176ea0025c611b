//! An idempotency field of a non-`String` `Display` type.

use mqkit::Consumer;
use mqkit::KeyBuilder;

#[derive(serde::Deserialize)]
struct OrderEvent {
    order_id: u64,
    event_type: String,
}

#[mqkit::consumer(queue = "order", idempotency = "order_id,event_type")]
async fn on_order(evt: OrderEvent) -> Result<(), mqkit::HandlerError> {
    let _ = (evt.order_id, evt.event_type);
    Ok(())
}

fn main() {
    let consumer = on_order {};
    let evt = consumer
        .decode(br#"{"order_id":42,"event_type":"created"}"#)
        .expect("decodes");
    let mut key = KeyBuilder::new("order");
    consumer.idempotency_key(&evt, &mut key);
    assert_eq!(key.finish(), "mqkit:idem:order:42:created");
}
