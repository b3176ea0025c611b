//! The message, then `State<A>`, `Context` and `State<B>` in mixed order,
//! with patterns and `use`d names, run in memory: each parameter receives
//! its own value.

use std::sync::{Arc, Mutex};

use mqkit::testing::TestHarness;
use mqkit::{Consumer, Context, Outcome, State};

#[derive(Clone)]
struct Deps {
    greeting: String,
    seen: Arc<Mutex<Vec<String>>>,
}

#[derive(Clone)]
struct Region(&'static str);

#[derive(serde::Deserialize)]
struct OrderEvent {
    order_id: String,
}

#[mqkit::consumer(queue = "order")]
async fn on_order(
    evt: OrderEvent,
    mqkit::State(deps): mqkit::State<Deps>,
    ctx: Context,
    State(Region(region)): State<Region>,
) -> Result<(), mqkit::HandlerError> {
    let line = format!(
        "{} {} {region} {}",
        deps.greeting,
        evt.order_id,
        ctx.attempt()
    );
    deps.seen.lock().unwrap().push(line);
    Ok(())
}

/// State without a `Context`.
#[mqkit::consumer(queue = "region")]
async fn on_region(
    _evt: OrderEvent,
    State(region): State<Region>,
) -> Result<(), mqkit::HandlerError> {
    assert_eq!(region.0, "eu");
    Ok(())
}

#[tokio::main]
async fn main() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let deps = Deps {
        greeting: "hello".into(),
        seen: seen.clone(),
    };
    let harness = TestHarness::new(on_order {})
        .state(deps)
        .state(Region("eu"));
    assert_eq!(
        harness.deliver_bytes(r#"{"order_id":"o-1"}"#).await,
        Outcome::Ack
    );
    assert_eq!(*seen.lock().unwrap(), ["hello o-1 eu 1"]);
    assert_eq!(on_order {}.state_types().len(), 2);

    let harness = TestHarness::new(on_region {}).state(Region("eu"));
    assert_eq!(
        harness.deliver_bytes(r#"{"order_id":"o-1"}"#).await,
        Outcome::Ack
    );
}
