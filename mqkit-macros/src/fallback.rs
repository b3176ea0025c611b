//! What the attribute emits on any error: the user's item unchanged, the
//! errors, and a stub of the companion type, so that the rest of the crate
//! (`on_order {}` passed to a harness, the fn called directly) still
//! resolves and rustc shows only the attribute's errors, as
//! dtolnay/thiserror's `fallback.rs` does for a derive.

use proc_macro2::TokenStream;
use quote::quote;
use syn::{Ident, Item, Visibility};

use crate::args::Args;
use crate::errors::Errors;

/// `item` as written, `compile_error!`s for `errors` and, when `parsed`
/// names something a companion can stand beside, the stub companion.
pub(crate) fn expand(
    item: TokenStream,
    parsed: Option<&Item>,
    args: &Args,
    errors: Errors,
) -> TokenStream {
    let errors = errors.finish().map(|e| e.to_compile_error());
    let companion = parsed
        .and_then(companion_name)
        .map(|(vis, name)| stub(vis, name, args));
    quote! {
        #item
        #errors
        #companion
    }
}

/// The name and visibility for a companion struct, from items whose name
/// lives in the value namespace only (a fn, a const, a static): the braced
/// companion takes the type namespace, so it cannot clash with them. A
/// struct, enum, trait, … already owns the name there, and a method's
/// companion could not sit inside its impl block: those get none.
fn companion_name(item: &Item) -> Option<(&Visibility, &Ident)> {
    let (vis, name) = match item {
        Item::Fn(f) if f.sig.receiver().is_none() => (&f.vis, &f.sig.ident),
        Item::Const(c) => (&c.vis, &c.ident),
        Item::Static(s) => (&s.vis, &s.ident),
        _ => return None,
    };
    (name != "_").then_some((vis, name))
}

/// The companion with the derives of the real one and a `Consumer` impl
/// that cannot fail to compile: `()` messages, the queue from the attribute
/// (empty when missing or invalid), and no registration, so nothing runs it.
fn stub(vis: &Visibility, name: &Ident, args: &Args) -> TokenStream {
    let krate = args.krate();
    let private = quote!(#krate::__private);
    let queue = args.queue.as_ref().map_or("", |q| q.value.as_str());
    quote! {
        #[allow(non_camel_case_types, dead_code)]
        #[derive(Debug, Clone, Copy, Default)]
        #vis struct #name {}

        const _: () = {
            #[automatically_derived]
            impl #private::Consumer for #name {
                type Message = ();

                fn spec(&self) -> #private::ConsumerSpec {
                    #private::ConsumerSpec::new(#queue)
                }

                fn decode(&self, _: &[u8]) -> ::core::result::Result<(), #private::DecodeError> {
                    ::core::result::Result::Ok(())
                }

                fn handle(
                    &self,
                    _: (),
                    _: #private::Context,
                ) -> impl ::core::future::Future<Output = ::core::result::Result<(), #private::HandlerError>> + ::core::marker::Send + 'static {
                    ::core::future::ready(::core::result::Result::Ok(()))
                }
            }
        };
    }
}
