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
//!                  [, crate = "mqkit"]              // path to mqkit: a renamed dependency or a facade
//!                  )]
//! async fn name(msg: T) -> Result<(), E>
//! async fn name(msg: T, ctx: mqkit::Context) -> Result<(), E>
//! // T: serde::de::DeserializeOwned + Send + 'static; E: Into<mqkit::HandlerError>
//! ```
//!
//! Durations are strings with a unit: `"250ms"`, `"5s"`, `"2m"`, `"24h"`.
//! `crate` is a string holding a path (`"mq"`, `"my_facade::mqkit"`,
//! `"crate::deps::mqkit"`); generated code then names
//! `<path>::__private::…` instead of `::mqkit::__private::…`.
//!
//! Every misuse is a compile error spanned on the offending token, and all
//! of them are reported at once. The user's item is still emitted unchanged,
//! with a stub of the companion type (a `Consumer` of `()` messages, not
//! registered), so the rest of the crate resolves and rustc shows only the
//! attribute's errors.
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
//! #[automatically_derived]
//! impl ::mqkit::__private::Consumer for on_order {
//!     type Message = OrderEvent;
//!     fn spec(&self) -> ConsumerSpec {
//!         // The runtime's defaults, then one setter per argument written.
//!         ConsumerSpec::new("order").idempotency(&["order_id", "event_type"])
//!     }
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
//!
//! Setters are emitted in a fixed order (`dlx`, `dlq`, `idempotency`,
//! `idempotency_ttl`, `max_retries`, `retry_delay`, `prefetch`,
//! `concurrency`, `timeout`, `exchange`, `exchange_type`, `routing_key`,
//! `queue_type`), so that `concurrency` follows `prefetch` and
//! `routing_key` follows `exchange_type` unless written.

mod args;
mod errors;
mod expand;
mod fallback;
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
