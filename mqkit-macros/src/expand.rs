//! Step 3: emit the user's fn unchanged, a companion type named like it,
//! its `mqkit::Consumer` implementation (spec as data, JSON decode, key
//! function, handler call) and its registration. No behaviour lives here.

use std::time::Duration;

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{Ident, ItemFn};

use crate::args::{self, Args};
use crate::errors::Errors;
use crate::validate::{self, Handler};

/// The whole macro on token streams (so tests can call it without a compiler).
pub(crate) fn consumer(attr: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let args = args::parse(attr, &mut errors);
    let func: ItemFn = match syn::parse2(item.clone()) {
        Ok(func) => func,
        Err(e) => {
            // `e` is spanned where the item stops looking like a fn
            // (`struct`, `impl`, …), which is the token to point at.
            errors.push(syn::Error::new(
                e.span(),
                "#[mqkit::consumer] goes on an `async fn`",
            ));
            return with_errors(item, errors);
        }
    };
    let handler = validate::handler(&func, &args, &mut errors);
    match (errors.finish(), handler) {
        (None, Some(handler)) => expand(&args, &handler),
        (error, _) => {
            let error = error.map(|e| e.to_compile_error());
            // Keep the user's fn so the rest of the crate still type-checks.
            quote!(#func #error)
        }
    }
}

fn with_errors(item: TokenStream, errors: Errors) -> TokenStream {
    let error = errors.finish().map(|e| e.to_compile_error());
    quote!(#item #error)
}

fn expand(args: &Args, handler: &Handler<'_>) -> TokenStream {
    let func = handler.func;
    let name = &func.sig.ident;
    let vis = &func.vis;
    let name_str = name.to_string();
    let msg = handler.message;
    let err = handler.error;
    let docs: Vec<_> = func
        .attrs
        .iter()
        .filter(|a| a.path().is_ident("doc"))
        .collect();
    let separator = (!docs.is_empty()).then(|| quote!(#[doc = ""]));

    let spec = spec_tokens(args);
    let queue_doc = format!(
        " The mqkit consumer of queue `{}` that runs [`{name_str}`](fn@{name_str}).",
        args.queue
            .as_ref()
            .map(|q| q.value.as_str())
            .unwrap_or_default()
    );

    // Spanned on the user's type, so a type that is not DeserializeOwned or
    // not Send is reported there.
    let message_assoc = quote_spanned!(msg.span()=> type Message = #msg;);
    // Each push sits on the `idempotency` literal, so a missing field or a
    // field that is not Display is reported there. Mixed-site hygiene (with
    // the parameters named to match) marks the tokens as macro-made, so
    // rustc does not offer to replace the whole literal with a field name it
    // guessed; field access itself ignores hygiene.
    let msg_param = Ident::new("msg", Span::mixed_site());
    let key_param = Ident::new("key", Span::mixed_site());
    let pushes = args.idempotency.iter().map(|field| {
        let span = Span::mixed_site().located_at(field.span());
        let mut field = field.clone();
        field.set_span(span);
        let msg_param = Ident::new("msg", span);
        let key_param = Ident::new("key", span);
        quote_spanned!(span=> #key_param.push(&#msg_param.#field);)
    });
    // The arguments carry the user's spans: a message type that is not Send,
    // or a `Context` that is not mqkit's, is reported in the signature.
    let msg_arg = quote_spanned!(msg.span()=> msg);
    let call = match handler.context {
        Some(ctx_ty) => {
            let ctx_arg = quote_spanned!(ctx_ty.span()=> ctx);
            quote!(#name(#msg_arg, #ctx_arg))
        }
        None => quote!({ drop(ctx); #name(#msg_arg) }),
    };
    let into_error = quote_spanned!(err.span()=>
        ::mqkit::__private::into_handler_error::<#err>(e)
    );
    // A handler whose future is not Send is reported on its `async`, not on
    // the attribute: both the future and the return type that requires Send
    // carry that span.
    let async_span = func.sig.asyncness.map_or_else(|| name.span(), |a| a.span);
    let handle_output = quote_spanned!(async_span=>
        impl ::core::future::Future<Output = ::core::result::Result<(), ::mqkit::__private::HandlerError>> + ::core::marker::Send + 'static
    );
    let handle_body = quote! {
        match #call.await {
            ::core::result::Result::Ok(()) => ::core::result::Result::Ok(()),
            ::core::result::Result::Err(e) => ::core::result::Result::Err(#into_error),
        }
    };
    let handle_future = quote_spanned!(async_span=> async move { #handle_body });

    quote! {
        #func

        #(#docs)*
        #separator
        #[doc = #queue_doc]
        #[allow(non_camel_case_types)]
        #[derive(Debug, Clone, Copy, Default)]
        #vis struct #name {}

        const _: () = {
            impl ::mqkit::__private::Consumer for #name {
                #message_assoc

                fn spec(&self) -> ::mqkit::__private::ConsumerSpec {
                    #spec
                }

                fn decode(&self, body: &[u8]) -> ::core::result::Result<#msg, ::mqkit::__private::DecodeError> {
                    // Generic over the consumer, so `DeserializeOwned` comes from
                    // the trait's bound on `Message`: a type without it is
                    // reported once, on `type Message`, not again here.
                    fn decode_message<C: ::mqkit::__private::Consumer>(
                        body: &[u8],
                    ) -> ::core::result::Result<C::Message, ::mqkit::__private::DecodeError> {
                        ::mqkit::__private::decode_json::<C::Message>(body)
                    }
                    decode_message::<Self>(body)
                }

                #[allow(unused_variables)]
                fn idempotency_key(&self, #msg_param: &#msg, #key_param: &mut ::mqkit::__private::KeyBuilder) {
                    #(#pushes)*
                }

                fn handle(
                    &self,
                    msg: #msg,
                    ctx: ::mqkit::__private::Context,
                ) -> #handle_output {
                    #handle_future
                }
            }

            #[::mqkit::__private::linkme::distributed_slice(::mqkit::__private::CONSUMERS)]
            #[linkme(crate = ::mqkit::__private::linkme)]
            static REGISTRATION: ::mqkit::__private::Registration =
                ::mqkit::__private::Registration::of::<#name>(#name_str);
        };
    }
}

fn spec_tokens(args: &Args) -> TokenStream {
    let queue = args
        .queue
        .as_ref()
        .map(|q| q.value.clone())
        .unwrap_or_default();
    let dlx = args
        .dlx
        .as_ref()
        .map_or_else(|| "dlx".to_owned(), |a| a.value.clone());
    let dlq = args
        .dlq
        .as_ref()
        .map_or_else(|| format!("dlq.{queue}"), |a| a.value.clone());
    let fields = args.idempotency.iter().map(|f| f.unraw().to_string());
    let idempotency_ttl = duration(
        args.idempotency_ttl
            .as_ref()
            .map_or(Duration::from_secs(86_400), |a| a.value),
    );
    let max_retries = args.max_retries.as_ref().map_or(3, |a| a.value);
    let retry_delay = duration(
        args.retry_delay
            .as_ref()
            .map_or(Duration::from_secs(1), |a| a.value),
    );
    let prefetch = args.prefetch.as_ref().map_or(10, |a| a.value);
    let concurrency = args.concurrency.as_ref().map_or(prefetch, |a| a.value);
    let timeout = duration(
        args.timeout
            .as_ref()
            .map_or(Duration::from_secs(30), |a| a.value),
    );
    let queue_type = match args.queue_type.as_ref().map(|a| a.value.as_str()) {
        Some("quorum") => quote!(::mqkit::__private::QueueType::Quorum),
        _ => quote!(::mqkit::__private::QueueType::Classic),
    };
    let binding = match &args.exchange {
        None => quote!(::core::option::Option::None),
        Some(exchange) => {
            let exchange = &exchange.value;
            let exchange_type = args
                .exchange_type
                .as_ref()
                .map_or("topic", |a| a.value.as_str());
            let routing_key = match &args.routing_key {
                Some(k) => k.value.clone(),
                None if exchange_type == "topic" => "#".to_owned(),
                None => queue.clone(),
            };
            quote!(::core::option::Option::Some(::mqkit::__private::ExchangeBinding {
                exchange: ::mqkit::__private::Cow::Borrowed(#exchange),
                exchange_type: ::mqkit::__private::Cow::Borrowed(#exchange_type),
                routing_key: ::mqkit::__private::Cow::Borrowed(#routing_key),
            }))
        }
    };
    quote! {
        ::mqkit::__private::ConsumerSpec {
            queue: ::mqkit::__private::Cow::Borrowed(#queue),
            dlx: ::mqkit::__private::Cow::Borrowed(#dlx),
            dlq: ::mqkit::__private::Cow::Borrowed(#dlq),
            idempotency: &[#(#fields),*],
            idempotency_ttl: #idempotency_ttl,
            max_retries: #max_retries,
            retry_delay: #retry_delay,
            prefetch: #prefetch,
            concurrency: #concurrency,
            timeout: #timeout,
            binding: #binding,
            queue_type: #queue_type,
        }
    }
}

fn duration(d: Duration) -> TokenStream {
    let secs = d.as_secs();
    let nanos = d.subsec_nanos();
    quote!(::mqkit::__private::Duration::new(#secs, #nanos))
}
