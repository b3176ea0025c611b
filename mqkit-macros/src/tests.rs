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
fn errors_keep_the_users_fn() {
    let out = expand(
        quote!(queue = "", prefetch = 0),
        quote! { async fn on_order(evt: OrderEvent) -> Result<(), mqkit::HandlerError> { Ok(()) } },
    );
    assert!(out.contains("async fn on_order"), "{out}");
    assert_eq!(out.matches("compile_error!").count(), 2, "{out}");
    assert!(!out.contains("impl ::mqkit"), "{out}");
}
