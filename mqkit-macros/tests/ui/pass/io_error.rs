//! A handler returning `Result<(), std::io::Error>`: `?` on I/O just works.

use mqkit::Consumer;

#[derive(serde::Deserialize)]
struct OrderEvent {
    path: String,
}

#[mqkit::consumer(queue = "order")]
async fn on_order(evt: OrderEvent) -> Result<(), std::io::Error> {
    std::fs::metadata(&evt.path)?;
    Ok(())
}

fn main() {
    assert_eq!(on_order {}.spec().queue, "order");
}
