#[derive(serde::Deserialize)]
struct OrderEvent {
    order_id: String,
    event_type: String,
}

#[mqkit::consumer(queue = "order")]
async fn on_order() -> Result<(), mqkit::HandlerError> {
    Ok(())
}

fn main() {}
