use std::marker::PhantomData;

/// Deserializes, but cannot be sent to the task that runs the handler.
#[derive(serde::Deserialize)]
struct OrderEvent {
    order_id: String,
    #[serde(skip)]
    not_send: PhantomData<*const ()>,
}

#[mqkit::consumer(queue = "order")]
async fn on_order(evt: OrderEvent) -> Result<(), mqkit::HandlerError> {
    let _ = (evt.order_id, evt.not_send);
    Ok(())
}

fn main() {}
