#[mqkit::consumer(queue = "order")]
pub enum OrderEvent {
    Created,
    Cancelled,
}

fn main() {}
