//! A key field that needs a raw identifier (`r#type`); the spec lists it by
//! its plain name.

use mqkit::Consumer;
use mqkit::KeyBuilder;

#[derive(serde::Deserialize)]
struct OrderEvent {
    order_id: String,
    r#type: String,
}

#[mqkit::consumer(queue = "order", idempotency = "order_id, r#type")]
async fn on_order(evt: OrderEvent) -> Result<(), mqkit::HandlerError> {
    let _ = (evt.order_id, evt.r#type);
    Ok(())
}

fn main() {
    let consumer = on_order {};
    assert_eq!(consumer.spec().idempotency, ["order_id", "type"]);
    let evt = consumer
        .decode(br#"{"order_id":"o-1","type":"created"}"#)
        .expect("decodes");
    let mut key = KeyBuilder::new("order");
    consumer.idempotency_key(&evt, &mut key);
    assert_eq!(key.finish(), "mqkit:idem:order:o-1:created");
}
