//! Step 3: emit the user's fn unchanged, a companion type named like it,
//! its `mqkit::Consumer` implementation (spec as `ConsumerSpec::new` plus
//! one setter per argument written, the handler's name, state types and
//! transaction's database, JSON decode, key function, handler call with
//! each `State<S>` and the `Tx` taken from the context) and its
//! registration. No behaviour lives here, and no defaults: those are the
//! runtime's. On any error, `fallback` emits instead.

use std::time::Duration;

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{Ident, Item, Type};

use crate::args::{self, Arg, Args};
use crate::errors::Errors;
use crate::fallback;
use crate::validate::{self, Handler, Param};

/// The whole macro on token streams (so tests can call it without a compiler).
pub(crate) fn consumer(attr: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let args = args::parse(attr, &mut errors);
    // rustc hands an attribute macro only items it parsed, so this fails only
    // on syntax newer than syn's.
    let parsed: Item = match syn::parse2(item.clone()) {
        Ok(parsed) => parsed,
        Err(e) => {
            errors.push(syn::Error::new(
                e.span(),
                format!("#[mqkit::consumer] goes on an `async fn`; this item does not parse: {e}"),
            ));
            return fallback::expand(item, None, &args, errors);
        }
    };
    let Item::Fn(func) = &parsed else {
        errors.push(validate::not_a_function(&parsed));
        return fallback::expand(item, Some(&parsed), &args, errors);
    };
    match validate::handler(func, &args, &mut errors) {
        Some(handler) if errors.is_empty() => expand(&args, &handler),
        // The user's fn and a stub companion, so the rest of the crate still
        // type-checks and rustc shows only the attribute's errors.
        _ => fallback::expand(item, Some(&parsed), &args, errors),
    }
}

fn expand(args: &Args, handler: &Handler<'_>) -> TokenStream {
    let func = handler.func;
    let name = &func.sig.ident;
    let vis = &func.vis;
    let name_str = name.to_string();
    let msg = handler.message;
    let err = handler.error;
    let krate = args.krate();
    let private = quote!(#krate::__private);
    let docs: Vec<_> = func
        .attrs
        .iter()
        .filter(|a| a.path().is_ident("doc"))
        .collect();
    let separator = (!docs.is_empty()).then(|| quote!(#[doc = ""]));

    let spec = spec_tokens(args, &private);
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
    // Generated locals have names no user writes: even hygienic (mixed-site)
    // idents resolve items at the call site, so a const named `msg` would
    // turn a parameter `msg` into a pattern, and a local `msg` would shadow
    // a handler fn named `msg`.
    //
    // Each push sits on the `idempotency` literal, so a missing field or a
    // field that is not Display is reported there. Mixed-site hygiene (with
    // the parameters named to match) marks the tokens as macro-made, so
    // rustc does not offer to replace the whole literal with a field name it
    // guessed; field access itself ignores hygiene.
    let msg_param = Ident::new("__mqkit_msg", Span::mixed_site());
    let key_param = Ident::new("__mqkit_key", Span::mixed_site());
    let pushes = args.idempotency.iter().map(|field| {
        let span = Span::mixed_site().located_at(field.span());
        let mut field = field.clone();
        field.set_span(span);
        let msg_param = Ident::new("__mqkit_msg", span);
        let key_param = Ident::new("__mqkit_key", span);
        quote_spanned!(span=> #key_param.push(&#msg_param.#field);)
    });
    // The handler's arguments carry the user's spans, so that a message type
    // that is not Send, a `Context` that is not mqkit's, a `State<S>` that
    // is not mqkit's or whose `S` is not `Clone + Send + Sync + 'static`, or
    // a `Tx` that is not mqkit's, is reported in the signature (mixed-site
    // idents would add "in this macro expansion"). Their names differ only
    // in span, so they are one binding.
    let body = Ident::new("__mqkit_body", Span::call_site());
    let err_local = Ident::new("__mqkit_error", Span::call_site());
    let msg_local = Ident::new("__mqkit_msg", msg.span());
    let context_span = handler.params.iter().find_map(|p| match p {
        Param::Context(ty) => Some(ty.span()),
        Param::State(_) | Param::Tx(_) => None,
    });
    let ctx_local = Ident::new("__mqkit_ctx", context_span.unwrap_or_else(Span::call_site));
    let state_types: Vec<&Type> = handler
        .params
        .iter()
        .filter_map(|p| match p {
            Param::State(ty) => Some(*ty),
            Param::Context(_) | Param::Tx(_) => None,
        })
        .collect();
    let state_type_calls = state_types
        .iter()
        .map(|ty| quote_spanned!(ty.span()=> <#ty as #private::FromContext>::state_type()));
    // A consumer is transactional by its `Tx` parameter; the database is
    // the one its type names (validate allows one `Tx`).
    let transaction = handler.params.iter().find_map(|p| match p {
        Param::Tx(ty) => {
            let database = quote_spanned!(ty.span()=> <#ty as #private::TxParam>::DATABASE);
            Some(quote! {
                fn transaction(&self) -> ::core::option::Option<#private::DatabaseKind> {
                    ::core::option::Option::Some(#database)
                }
            })
        }
        Param::Context(_) | Param::State(_) => None,
    });
    // Each state and the transaction are taken from the context before the
    // call moves it in.
    let mut extractions = Vec::new();
    let mut call_args = vec![msg_local.clone()];
    let mut states = 0;
    for param in &handler.params {
        match param {
            Param::Context(_) => call_args.push(ctx_local.clone()),
            Param::State(ty) => {
                let local = Ident::new(&format!("__mqkit_state_{states}"), ty.span());
                states += 1;
                let from_context = quote_spanned!(ty.span()=>
                    <#ty as #private::FromContext>::from_context(&#ctx_local)
                );
                extractions.push(quote! {
                    let #local = match #from_context {
                        ::core::result::Result::Ok(__mqkit_state) => __mqkit_state,
                        ::core::result::Result::Err(#err_local) => return ::core::result::Result::Err(#err_local),
                    };
                });
                call_args.push(local);
            }
            Param::Tx(ty) => {
                let local = Ident::new("__mqkit_tx", ty.span());
                let from_context = quote_spanned!(ty.span()=>
                    <#ty as #private::TxParam>::from_context(&#ctx_local)
                );
                extractions.push(quote! {
                    let #local = match #from_context {
                        ::core::result::Result::Ok(__mqkit_tx) => __mqkit_tx,
                        ::core::result::Result::Err(#err_local) => return ::core::result::Result::Err(#err_local),
                    };
                });
                call_args.push(local);
            }
        }
    }
    let call = match context_span {
        Some(_) => quote!(#name(#(#call_args),*)),
        None => quote!({ ::core::mem::drop(#ctx_local); #name(#(#call_args),*) }),
    };
    let into_error = quote_spanned!(err.span()=>
        #private::into_handler_error::<#err>(#err_local)
    );
    // A handler whose future is not Send is reported on its `async`, not on
    // the attribute: both the future and the return type that requires Send
    // carry that span.
    let async_span = func.sig.asyncness.map_or_else(|| name.span(), |a| a.span);
    let handle_output = quote_spanned!(async_span=>
        impl ::core::future::Future<Output = ::core::result::Result<(), #private::HandlerError>> + ::core::marker::Send + 'static
    );
    let handle_body = quote! {
        match #call.await {
            ::core::result::Result::Ok(()) => ::core::result::Result::Ok(()),
            ::core::result::Result::Err(#err_local) => ::core::result::Result::Err(#into_error),
        }
    };
    let handle_future = quote_spanned!(async_span=> async move {
        #(#extractions)*
        #handle_body
    });

    quote! {
        #func

        #(#docs)*
        #separator
        #[doc = #queue_doc]
        #[allow(non_camel_case_types)]
        #[derive(Debug, Clone, Copy, Default)]
        #vis struct #name {}

        const _: () = {
            #[automatically_derived]
            impl #private::Consumer for #name {
                #message_assoc

                fn spec(&self) -> #private::ConsumerSpec {
                    #spec
                }

                fn name(&self) -> &'static str {
                    #name_str
                }

                fn state_types(&self) -> ::std::vec::Vec<#private::StateType> {
                    ::std::vec::Vec::from([#(#state_type_calls),*])
                }

                #transaction

                fn decode(&self, #body: &[u8]) -> ::core::result::Result<#msg, #private::DecodeError> {
                    // Generic over the consumer, so `DeserializeOwned` comes from
                    // the trait's bound on `Message`: a type without it is
                    // reported once, on `type Message`, not again here.
                    fn decode_message<C: #private::Consumer>(
                        #body: &[u8],
                    ) -> ::core::result::Result<<C as #private::Consumer>::Message, #private::DecodeError> {
                        #private::decode_json::<<C as #private::Consumer>::Message>(#body)
                    }
                    decode_message::<Self>(#body)
                }

                fn idempotency_key(&self, #msg_param: &#msg, #key_param: &mut #private::KeyBuilder) {
                    #(#pushes)*
                }

                fn handle(
                    &self,
                    #msg_local: #msg,
                    #ctx_local: #private::Context,
                ) -> #handle_output {
                    #handle_future
                }
            }

            #[#private::linkme::distributed_slice(#private::CONSUMERS)]
            #[linkme(crate = #private::linkme)]
            static REGISTRATION: #private::Registration =
                #private::Registration::of::<#name>(#name_str);
        };
    }
}

/// `ConsumerSpec::new(queue)` and a setter for each argument written, in a
/// fixed order (`prefetch` before `concurrency`, `exchange` before
/// `exchange_type` before `routing_key`, as the setters' defaults need).
/// The defaults are the runtime's: nothing unwritten is emitted.
fn spec_tokens(args: &Args, private: &TokenStream) -> TokenStream {
    fn value<T: ToTokens>(arg: &Option<Arg<T>>) -> Option<TokenStream> {
        arg.as_ref().map(|a| a.value.to_token_stream())
    }
    fn time(arg: &Option<Arg<Duration>>) -> Option<TokenStream> {
        arg.as_ref().map(|a| duration(a.value))
    }
    let idempotency = (!args.idempotency.is_empty()).then(|| {
        let fields = args.idempotency.iter().map(|f| f.unraw().to_string());
        quote!(&[#(#fields),*])
    });
    let queue_type = args.queue_type.as_ref().map(|a| match a.value.as_str() {
        "quorum" => quote!(#private::QueueType::Quorum),
        _ => quote!(#private::QueueType::Classic),
    });
    let setters = [
        ("dlx", value(&args.dlx)),
        ("dlq", value(&args.dlq)),
        ("idempotency", idempotency),
        ("idempotency_ttl", time(&args.idempotency_ttl)),
        ("max_retries", value(&args.max_retries)),
        ("retry_delay", time(&args.retry_delay)),
        ("prefetch", value(&args.prefetch)),
        ("concurrency", value(&args.concurrency)),
        ("timeout", time(&args.timeout)),
        ("exchange", value(&args.exchange)),
        ("exchange_type", value(&args.exchange_type)),
        ("routing_key", value(&args.routing_key)),
        ("queue_type", queue_type),
    ]
    .into_iter()
    .filter_map(|(name, value)| {
        let setter = format_ident!("{name}");
        value.map(|value| quote!(.#setter(#value)))
    });
    let queue = args.queue.as_ref().map_or("", |q| q.value.as_str());
    quote!(#private::ConsumerSpec::new(#queue) #(#setters)*)
}

fn duration(d: Duration) -> TokenStream {
    let secs = d.as_secs();
    let nanos = d.subsec_nanos();
    quote!(::core::time::Duration::new(#secs, #nanos))
}
