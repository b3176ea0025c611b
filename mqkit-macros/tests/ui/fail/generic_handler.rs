#[derive(serde::Deserialize)]
struct OrderEvent {
    order_id: String,
    event_type: String,
}

#[mqkit::consumer(queue = "order")]
async fn on_order<T: serde::de::DeserializeOwned>(evt: T) -> Result<(), mqkit::HandlerError> {
    let _ = evt;
    Ok(())
}

fn main() {}
