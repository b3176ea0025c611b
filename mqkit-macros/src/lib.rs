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
//! async fn name(msg: T [, <param>]*) -> Result<(), E>
//! // T: serde::de::DeserializeOwned + Send + 'static; E: Into<mqkit::HandlerError>
//! // <param>, any number, in any order after the message, each taken by value:
//! //   ctx: mqkit::Context                    // the delivery; at most once
//! //   mqkit::State(s): mqkit::State<S>       // a value given to the app with
//! //                                          // `.state(value)`; once per S,
//! //                                          // S: Clone + Send + Sync + 'static
//! //   mut tx: mqkit::Tx                      // the delivery's database transaction
//! //                                          // (mqkit feature `tx`): PostgreSQL, or
//! //   mut tx: mqkit::Tx<sqlx::MySql>         // MySQL/MariaDB; at most once
//! ```
//!
//! Parameters are recognised by the last segment of their type (`Context`,
//! `State<S>`, `Tx` with or without arguments), so
//! `use mqkit::{Context, State, Tx};` works; they may be patterns
//! (`mqkit::State(deps): mqkit::State<Deps>`, `mut tx: mqkit::Tx`). A type
//! that only looks like mqkit's is reported by the compiler on the user's
//! type. A handler with a `Tx` parameter is transactional: it runs in a
//! transaction that also holds the delivery's inbox row and the messages it
//! stages, instead of the idempotency store.
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
//!     fn name(&self) -> &'static str { "on_order" }
//!     fn state_types(&self) -> Vec<StateType> {
//!         vec![]   // one `<State<S> as FromContext>::state_type()` per State parameter
//!     }
//!     fn decode(&self, body: &[u8]) -> Result<OrderEvent, DecodeError> { decode_json(body) }
//!     fn idempotency_key(&self, msg: &OrderEvent, key: &mut KeyBuilder) {
//!         key.push(&msg.order_id);   // spanned on the attribute: a missing
//!         key.push(&msg.event_type); // field is a compile error there
//!     }
//!     fn handle(&self, msg: OrderEvent, ctx: Context) -> impl Future<…> {
//!         async move { drop(ctx); on_order(msg).await.map_err(Into::into) }
//!     }
//! }
//! // plus a linkme registration so `mqkit::run()` finds it.
//! ```
//!
//! A handler `async fn on_order(evt: OrderEvent, mqkit::State(deps): mqkit::State<Deps>,
//! ctx: mqkit::Context)` lists `State<Deps>` in `state_types`, and its
//! `handle` takes each state from the context first, then calls the
//! function with the arguments in the order declared:
//!
//! ```ignore
//! async move {
//!     let state_0 = match <mqkit::State<Deps> as FromContext>::from_context(&ctx) {
//!         Ok(state) => state,
//!         Err(e) => return Err(e),   // no such state given to the app
//!     };
//!     on_order(msg, state_0, ctx).await.map_err(Into::into)
//! }
//! ```
//!
//! A handler `async fn capture(p: Payment, mut tx: mqkit::Tx)` also names
//! its transaction's database, which makes the consumer transactional, and
//! its `handle` takes the `Tx` from the context the same way (the user's fn
//! keeps its `mut tx` pattern):
//!
//! ```ignore
//! fn transaction(&self) -> Option<DatabaseKind> {
//!     Some(<mqkit::Tx as TxParam>::DATABASE)   // spanned on the user's type
//! }
//! fn handle(&self, msg: Payment, ctx: Context) -> impl Future<…> {
//!     async move {
//!         let tx = match <mqkit::Tx as TxParam>::from_context(&ctx) {
//!             Ok(tx) => tx,
//!             Err(e) => return Err(e),   // the runtime opened no transaction
//!         };
//!         drop(ctx);
//!         capture(msg, tx).await.map_err(Into::into)
//!     }
//! }
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
