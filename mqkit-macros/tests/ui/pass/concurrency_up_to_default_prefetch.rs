//! `concurrency` without `prefetch` may go up to the default prefetch (10),
//! the value `ConsumerSpec::new` gives.

use mqkit::Consumer;

#[derive(serde::Deserialize)]
struct OrderEvent {
    order_id: String,
}

#[mqkit::consumer(queue = "order", concurrency = 10)]
async fn on_order(evt: OrderEvent) -> Result<(), mqkit::HandlerError> {
    let _ = evt.order_id;
    Ok(())
}

fn main() {
    let spec = on_order {}.spec();
    assert_eq!((spec.prefetch, spec.concurrency), (10, 10));
    assert_eq!(mqkit::ConsumerSpec::new("order").prefetch, 10);
    assert!(spec.validate().is_ok());
}
