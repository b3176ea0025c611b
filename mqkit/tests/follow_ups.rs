//! What a handler's follow-up messages carry, in memory (the recording
//! publisher of `mqkit::testing`): the message builder's properties, and
//! the correlation id and trace context inherited from the delivery.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use mqkit::testing::{TestDelivery, TestHarness};
use mqkit::{FieldValue, HandlerError, Outcome};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct Order {
    order_id: String,
    #[serde(default)]
    own_ids: bool,
}

#[mqkit::consumer(queue = "order")]
async fn charge(order: Order, ctx: mqkit::Context) -> Result<(), HandlerError> {
    let publisher = ctx.publisher();
    publisher
        .publish_json(
            "billing",
            "order.plain",
            &serde_json::json!({"id": order.order_id}),
        )
        .await?;
    let mut message = publisher
        .message("billing", "order.built")
        .json(&serde_json::json!({"id": order.order_id}))
        .header("x-tenant", "acme")
        .expiration(Duration::from_secs(60))
        .priority(5);
    if order.own_ids {
        message = message
            .message_id("charge-1")
            .correlation_id("mine")
            .header(
                "traceparent",
                "00-11111111111111111111111111111111-2222222222222222-00",
            );
    }
    message.send().await?;
    Ok(())
}

const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn text(v: Option<&FieldValue>) -> Option<String> {
    v.and_then(FieldValue::to_text)
}

#[tokio::test]
async fn follow_ups_inherit_the_correlation_id_and_trace_unless_set() {
    let harness = TestHarness::new(charge {});
    let delivery = TestDelivery::json(&serde_json::json!({"order_id": "A-1"}))
        .unwrap()
        .message_id("m-1")
        .header("traceparent", TP)
        .header("tracestate", "vendor=x");
    assert_eq!(harness.deliver(&delivery).await, Outcome::Ack);
    let published = harness.published();
    assert_eq!(published.len(), 2);
    for p in &published {
        let props = &p.properties;
        assert_eq!(
            props.correlation_id.as_deref(),
            Some("m-1"),
            "no correlation id: the message id"
        );
        assert_eq!(text(props.header("traceparent")).as_deref(), Some(TP));
        assert_eq!(
            text(props.header("tracestate")).as_deref(),
            Some("vendor=x")
        );
        assert_eq!(props.content_type.as_deref(), Some("application/json"));
        let id = props.message_id.as_deref().unwrap();
        assert_eq!(id.len(), 36, "a new UUID: {id}");
        assert_ne!(id, "m-1");
    }
    assert_ne!(
        published[0].properties.message_id,
        published[1].properties.message_id
    );
    let built = &published[1];
    assert_eq!(
        (built.exchange.as_str(), built.routing_key.as_str()),
        ("billing", "order.built")
    );
    assert_eq!(built.properties.expiration.as_deref(), Some("60000"));
    assert_eq!(built.properties.priority, Some(5));
    assert_eq!(
        text(built.properties.header("x-tenant")).as_deref(),
        Some("acme")
    );
    assert_eq!(built.json::<serde_json::Value>().unwrap()["id"], "A-1");

    // With a correlation id on the delivery, that one.
    let harness = TestHarness::new(charge {});
    let delivery = TestDelivery::json(&serde_json::json!({"order_id": "A-2"}))
        .unwrap()
        .message_id("m-2")
        .correlation_id("c-2");
    assert_eq!(harness.deliver(&delivery).await, Outcome::Ack);
    let published = harness.published();
    assert!(
        published
            .iter()
            .all(|p| p.properties.correlation_id.as_deref() == Some("c-2"))
    );
    assert!(
        published
            .iter()
            .all(|p| p.properties.header("traceparent").is_none()),
        "no trace context to pass on"
    );

    // What the message sets wins.
    let harness = TestHarness::new(charge {});
    let delivery = TestDelivery::json(&serde_json::json!({"order_id": "A-3", "own_ids": true}))
        .unwrap()
        .message_id("m-3")
        .header("traceparent", TP);
    assert_eq!(harness.deliver(&delivery).await, Outcome::Ack);
    let built = &harness.published()[1];
    assert_eq!(built.properties.message_id.as_deref(), Some("charge-1"));
    assert_eq!(built.properties.correlation_id.as_deref(), Some("mine"));
    assert_eq!(
        text(built.properties.header("traceparent")).as_deref(),
        Some("00-11111111111111111111111111111111-2222222222222222-00")
    );
}

#[tokio::test]
async fn a_body_that_does_not_serialize_fails_send() {
    // A map with non-string keys cannot be JSON.
    let bad: std::collections::HashMap<(u8, u8), u8> = [((1, 2), 3)].into_iter().collect();
    let err = mqkit::Publisher::disconnected()
        .message("x", "y")
        .json(&bad)
        .send()
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("cannot serialize message for \"x\"/\"y\""),
        "{err}"
    );
}
