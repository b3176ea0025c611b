//! The `#[mqkit::consumer]` attribute. Use it through the `mqkit` crate,
//! which re-exports it; this crate only translates the attribute into an
//! implementation of `mqkit::Consumer`.
//!
//! # Grammar
//!
//! ```text
//! #[mqkit::consumer( queue = "name"                 // required: work queue
//!                  [, dlx = "dlx"]                  // dead-letter exchange
//!                  [, dlq = "dlq.<queue>"]          // dead-letter queue and its routing key
//!                  [, idempotency = "f1,f2"]        // message fields forming the business key
//!                  [, idempotency_ttl = "24h"]      // how long `done` suppresses duplicates (>= 1s)
//!                  [, max_retries = 3]              // retries after the first attempt
//!                  [, retry_delay = "1s"]           // first delay, doubling, capped at 10 min
//!                  [, prefetch = 10]                // basic.qos, >= 1
//!                  [, concurrency = <prefetch>]     // handlers at once, 1..=prefetch
//!                  [, timeout = "30s"]              // longer runs are transient failures
//!                  [, exchange = "orders"]          // optional durable source exchange…
//!                  [, exchange_type = "topic"]      // …direct | topic | fanout | headers
//!                  [, routing_key = "#"]            // …binding key ("#" for topic, else the queue)
//!                  [, queue_type = "classic"]       // classic | quorum
//!                  )]
//! async fn name(msg: T) -> Result<(), E>
//! async fn name(msg: T, ctx: mqkit::Context) -> Result<(), E>
//! // T: serde::de::DeserializeOwned + Send + 'static; E: Into<mqkit::HandlerError>
//! ```
//!
//! Durations are strings with a unit: `"250ms"`, `"5s"`, `"2m"`, `"24h"`.
//! Every misuse is a compile error spanned on the offending token.
//!
//! # Example
//!
//! ```ignore
//! #[mqkit::consumer(queue = "order", idempotency = "order_id,event_type")]
//! async fn on_order(evt: OrderEvent) -> Result<(), mqkit::HandlerError> { Ok(()) }
//! ```
//!
//! expands to the unchanged `on_order` function plus, in outline:
//!
//! ```ignore
//! #[derive(Debug, Clone, Copy, Default)]
//! struct on_order {}   // a braced struct lives in the type namespace only
//!
//! impl mqkit::Consumer for on_order {
//!     type Message = OrderEvent;
//!     fn spec(&self) -> ConsumerSpec { ConsumerSpec { queue: "order".into(), /* … */ } }
//!     fn decode(&self, body: &[u8]) -> Result<OrderEvent, DecodeError> { decode_json(body) }
//!     fn idempotency_key(&self, msg: &OrderEvent, key: &mut KeyBuilder) {
//!         key.push(&msg.order_id);   // spanned on the attribute: a missing
//!         key.push(&msg.event_type); // field is a compile error there
//!     }
//!     fn handle(&self, msg: OrderEvent, ctx: Context) -> impl Future<…> {
//!         async move { on_order(msg).await.map_err(Into::into) }
//!     }
//! }
//! // plus a linkme registration so `mqkit::run()` finds it.
//! ```

mod args;
mod errors;
mod expand;
mod validate;

#[cfg(test)]
mod tests;

use proc_macro::TokenStream;

/// Turns an `async fn` into a RabbitMQ consumer. See the crate docs for the
/// arguments and the `mqkit` crate for behaviour.
#[proc_macro_attribute]
pub fn consumer(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand::consumer(attr.into(), item.into()).into()
}
