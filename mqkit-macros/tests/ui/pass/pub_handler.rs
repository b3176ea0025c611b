//! A `pub` handler in a module: the companion type is `pub` too, so other
//! modules can name the consumer.

mod handlers {
    #[derive(serde::Deserialize)]
    pub struct OrderEvent {
        pub order_id: String,
    }

    /// Handles orders.
    #[mqkit::consumer(queue = "order")]
    pub async fn on_order(evt: OrderEvent) -> Result<(), mqkit::HandlerError> {
        let _ = evt.order_id;
        Ok(())
    }
}

use mqkit::Consumer;

fn main() {
    assert_eq!(handlers::on_order {}.spec().queue, "order");
    let _callable = handlers::on_order(handlers::OrderEvent { order_id: "o-1".into() });
}
