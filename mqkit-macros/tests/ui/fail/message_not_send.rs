/// Holds a raw pointer, so it is not `Send`.
struct NotSend(*const ());

impl Default for NotSend {
    fn default() -> Self {
        NotSend(std::ptr::null())
    }
}

/// Deserializes, but cannot be sent to the task that runs the handler.
#[derive(serde::Deserialize)]
struct OrderEvent {
    order_id: String,
    #[serde(skip)]
    not_send: NotSend,
}

#[mqkit::consumer(queue = "order")]
async fn on_order(evt: OrderEvent) -> Result<(), mqkit::HandlerError> {
    let _ = (evt.order_id, evt.not_send.0);
    Ok(())
}

fn main() {}
