#[mqkit::consumer(queue = "order")]
const ON_ORDER: &str = "order";

fn main() {
    let _ = ON_ORDER;
}
