//! Expansion snapshots: a change in generated code shows in review.

use quote::quote;

fn expand(attr: proc_macro2::TokenStream, item: proc_macro2::TokenStream) -> String {
    let tokens = crate::expand::consumer(attr, item);
    match syn::parse2::<syn::File>(tokens.clone()) {
        Ok(file) => prettyplease::unparse(&file),
        Err(e) => panic!("expansion is not valid Rust ({e}): {tokens}"),
    }
}

#[test]
fn minimal_args() {
    insta::assert_snapshot!(expand(
        quote!(queue = "order"),
        quote! {
            async fn on_order(evt: OrderEvent) -> Result<(), mqkit::HandlerError> { Ok(()) }
        },
    ));
}

#[test]
fn all_args() {
    insta::assert_snapshot!(expand(
        quote!(
            queue = "payment",
            dlx = "payments.dlx",
            dlq = "payments.dead",
            idempotency = "payment_id, event_type",
            idempotency_ttl = "7d",
            max_retries = 5,
            retry_delay = "250ms",
            prefetch = 20,
            concurrency = 4,
            timeout = "2m",
            exchange = "payments",
            exchange_type = "direct",
            routing_key = "payment.captured",
            queue_type = "quorum"
        ),
        quote! {
            /// Captures a payment.
            pub(crate) async fn on_payment(evt: PaymentEvent) -> Result<(), std::io::Error> { Ok(()) }
        },
    ));
}

#[test]
fn context_form() {
    insta::assert_snapshot!(expand(
        quote!(
            queue = "order",
            idempotency = "order_id",
            exchange = "orders"
        ),
        quote! {
            pub async fn on_order(evt: OrderEvent, ctx: mqkit::Context) -> Result<(), mqkit::HandlerError> {
                let _ = ctx.attempt();
                Ok(())
            }
        },
    ));
}

#[test]
fn state_form() {
    // States are taken from the context before it is moved into the call;
    // the arguments keep the declared order.
    insta::assert_snapshot!(expand(
        quote!(queue = "order"),
        quote! {
            async fn on_order(
                evt: OrderEvent,
                mqkit::State(deps): mqkit::State<Deps>,
                ctx: mqkit::Context,
                State(clock): State<Clock>,
            ) -> Result<(), mqkit::HandlerError> {
                Ok(())
            }
        },
    ));
}

#[test]
fn state_without_context_drops_it_after_taking_the_states() {
    let out = expand(
        quote!(queue = "order"),
        quote! {
            async fn on_order(evt: OrderEvent, s: mqkit::State<Deps>) -> Result<(), mqkit::HandlerError> { Ok(()) }
        },
    );
    let take = out.find("from_context(&__mqkit_ctx)");
    let drop = out.find("::core::mem::drop(__mqkit_ctx)");
    assert!(matches!((take, drop), (Some(t), Some(d)) if t < d), "{out}");
    assert!(
        out.contains("on_order(__mqkit_msg, __mqkit_state_0)"),
        "{out}"
    );
}

#[test]
fn tx_form() {
    // The Tx is taken from the context like a state, in the declared
    // order, and its type names the consumer's database.
    insta::assert_snapshot!(expand(
        quote!(queue = "payment", idempotency = "payment_id"),
        quote! {
            async fn capture(
                p: Payment,
                mqkit::State(deps): mqkit::State<Deps>,
                mut tx: mqkit::Tx,
                ctx: mqkit::Context,
            ) -> Result<(), mqkit::HandlerError> {
                Ok(())
            }
        },
    ));
}

#[test]
fn tx_without_context_drops_it_after_taking_the_tx() {
    let out = expand(
        quote!(queue = "payment"),
        quote! {
            async fn capture(p: Payment, mut tx: Tx<sqlx::MySql>) -> Result<(), mqkit::HandlerError> { Ok(()) }
        },
    );
    let take = out.find("TxParam>::from_context(&__mqkit_ctx)");
    let drop = out.find("::core::mem::drop(__mqkit_ctx)");
    assert!(matches!((take, drop), (Some(t), Some(d)) if t < d), "{out}");
    assert!(out.contains("capture(__mqkit_msg, __mqkit_tx)"), "{out}");
    assert!(out.contains("fn transaction("), "{out}");
    assert!(
        out.contains("Tx<sqlx::MySql> as ::mqkit::__private::TxParam>::DATABASE"),
        "{out}"
    );
    // The user's fn keeps its pattern.
    assert!(
        out.starts_with("async fn capture(\n    p: Payment,\n    mut tx: Tx<sqlx::MySql>,\n)"),
        "{out}"
    );
}

#[test]
fn no_tx_no_transaction() {
    let out = expand(
        quote!(queue = "order"),
        quote! {
            async fn on_order(evt: OrderEvent, ctx: mqkit::Context) -> Result<(), mqkit::HandlerError> { Ok(()) }
        },
    );
    assert!(!out.contains("fn transaction"), "{out}");
    assert!(!out.contains("TxParam"), "{out}");
}

#[test]
fn bad_parameters_are_all_reported() {
    let out = expand(
        quote!(queue = "order"),
        quote! {
            async fn on_order(
                evt: OrderEvent,
                a: mqkit::Context,
                b: mqkit::State<Deps>,
                c: mqkit::Context,
                d: mqkit::State<Deps>,
                e: &mqkit::Context,
                f: mqkit::Tx,
                g: Pool,
                h: mqkit::Tx<sqlx::MySql>,
                i: &mut mqkit::Tx,
            ) -> Result<(), mqkit::HandlerError> { Ok(()) }
        },
    );
    // Second Context, second State<Deps>, Context by reference, not a
    // parameter, second Tx, Tx by reference; the first Tx is fine.
    assert_eq!(out.matches("compile_error!").count(), 6, "{out}");
    assert!(out.contains("a second `mqkit::Tx` parameter"), "{out}");
    assert!(out.contains("take `mqkit::Tx` by value"), "{out}");
    assert!(!out.contains("REGISTRATION"), "{out}");
}

#[test]
fn renamed_crate() {
    let out = expand(
        quote!(crate = "mq", queue = "order", idempotency = "order_id"),
        quote! {
            async fn on_order(evt: OrderEvent, ctx: mq::Context) -> Result<(), mq::HandlerError> { Ok(()) }
        },
    );
    // Not one path through `::mqkit`: a crate that depends on mqkit under
    // another name has no `mqkit` in its extern prelude.
    assert!(!out.contains("mqkit::"), "{out}");
    insta::assert_snapshot!(out);
}

#[test]
fn errors_keep_the_users_fn_and_a_stub_companion() {
    let out = expand(
        quote!(queue = "order", prefetch = 0),
        quote! {
            /// Handles orders.
            pub async fn on_order(evt: OrderEvent) -> Result<(), mqkit::HandlerError> { Ok(()) }
        },
    );
    assert_eq!(out.matches("compile_error!").count(), 1, "{out}");
    assert!(!out.contains("REGISTRATION"), "{out}");
    insta::assert_snapshot!(out);
}

#[test]
fn every_error_is_reported_next_to_the_stub() {
    let out = expand(
        quote!(queue = "", prefetch = 0),
        quote! { fn on_order(evt: &OrderEvent) {} },
    );
    // Empty queue, prefetch 0, not async, message by reference, no return type.
    assert_eq!(out.matches("compile_error!").count(), 5, "{out}");
    assert!(out.contains("fn on_order(evt: &OrderEvent) {}"), "{out}");
    assert!(out.contains("struct on_order {}"), "{out}");
    assert!(out.contains("ConsumerSpec::new(\"\")"), "{out}");
}

#[test]
fn a_stub_companion_needs_a_name_it_cannot_clash_with() {
    // A struct already owns its name in the type namespace; a method's
    // companion could not sit in its impl block.
    for item in [
        quote!(
            struct OrderConsumer;
        ),
        quote!(
            async fn on_order(&self, evt: OrderEvent) -> Result<(), mqkit::HandlerError> {
                Ok(())
            }
        ),
    ] {
        let out = expand(quote!(queue = "order"), item);
        assert_eq!(out.matches("compile_error!").count(), 1, "{out}");
        assert!(!out.contains("Consumer for"), "{out}");
    }
    // A const has its name in the value namespace only.
    let out = expand(
        quote!(queue = "order"),
        quote!(
            const ON_ORDER: u32 = 1;
        ),
    );
    assert!(out.contains("const ON_ORDER: u32 = 1;"), "{out}");
    assert!(out.contains("struct ON_ORDER {}"), "{out}");
}
