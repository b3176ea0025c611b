#[mqkit::consumer(queue = "order")]
struct OrderConsumer;

fn main() {}
