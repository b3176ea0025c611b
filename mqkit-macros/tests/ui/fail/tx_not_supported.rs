//! `mqkit::Tx` as DESIGN.md describes it. This version has no such type,
//! but the attribute's error is the only one shown.

#[derive(serde::Deserialize)]
struct OrderEvent {
    order_id: String,
}

#[mqkit::consumer(queue = "order")]
async fn on_order(evt: OrderEvent, tx: mqkit::Tx) -> Result<(), mqkit::HandlerError> {
    let _ = (evt.order_id, tx);
    Ok(())
}

fn main() {}
