//! Step 2: check the annotated item against the handler form
//! `async fn f(msg: T, <params>) -> Result<(), E>`, where the parameters
//! after the message are any of `mqkit::Context` (at most once),
//! `mqkit::State<S>` (once per `S`) and `mqkit::Tx` (at most once), in any
//! order (saying what was found when it is no fn at all), and check the
//! arguments against each other (`queue` present). Parameters are told
//! apart by the last segment of their type as written: a macro cannot
//! resolve paths, so a type that only looks like mqkit's is caught by the
//! compiler, on the user's type. Produces a [`Handler`] describing what
//! `expand` needs.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, quote};
use syn::ext::IdentExt;
use syn::{
    FnArg, GenericArgument, Ident, Item, ItemFn, PathArguments, PathSegment, ReturnType, Type,
    TypeReference,
};

use crate::args::Args;
use crate::errors::Errors;

/// The parts of a valid handler signature.
pub(crate) struct Handler<'a> {
    pub(crate) func: &'a ItemFn,
    /// `T` of the message parameter.
    pub(crate) message: &'a Type,
    /// The parameters after the message, in the order declared.
    pub(crate) params: Vec<Param<'a>>,
    /// `E` of `Result<(), E>`.
    pub(crate) error: &'a Type,
}

/// A parameter after the message, with its type as written (where errors
/// about it point).
pub(crate) enum Param<'a> {
    /// `mqkit::Context`: the delivery's context, moved in.
    Context(&'a Type),
    /// `mqkit::State<S>`: filled through `FromContext`.
    State(&'a Type),
    /// `mqkit::Tx` or `mqkit::Tx<DB>`: taken through `TxParam`, which also
    /// names its database.
    Tx(&'a Type),
}

const FORMS: &str = "expected `async fn name(msg: T) -> Result<(), E>`, optionally with `ctx: mqkit::Context`, `mqkit::State(s): mqkit::State<S>` and `mut tx: mqkit::Tx` parameters after the message, in any order";

const METHOD: &str =
    "a consumer handler is a free function, not a method; take the message as the first parameter";

const OTHER_PARAM: &str = "handler parameters after the message must be `ctx: mqkit::Context`, `mqkit::State(s): mqkit::State<S>` or `mut tx: mqkit::Tx`, in any order; to share a value such as a database pool, give it to the app with `.state(value)` and take it as `mqkit::State<S>`";

/// Checks `func`, reporting every problem to `errors`; returns the
/// handler's parts when they could be found.
pub(crate) fn handler<'a>(
    func: &'a ItemFn,
    args: &Args,
    errors: &mut Errors,
) -> Option<Handler<'a>> {
    if !args.queue_written {
        errors.push(syn::Error::new(
            Span::call_site(),
            "missing `queue = \"…\"`: every consumer names its work queue",
        ));
    }
    let sig = &func.sig;
    let fail = |errors: &mut Errors, span: Span, msg: String| {
        errors.push(syn::Error::new(span, msg));
    };
    if sig.asyncness.is_none() {
        fail(
            errors,
            sig.fn_token.span,
            format!("#[mqkit::consumer] handlers must be `async fn`; {FORMS}"),
        );
    }
    if let Some(c) = &sig.constness {
        fail(
            errors,
            c.span,
            "a consumer handler cannot be `const`".to_owned(),
        );
    }
    if let Some(u) = &sig.unsafety {
        fail(
            errors,
            u.span,
            "a consumer handler cannot be `unsafe`".to_owned(),
        );
    }
    if let Some(abi) = &sig.abi {
        errors.push(syn::Error::new_spanned(
            abi,
            "a consumer handler cannot have an ABI",
        ));
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        errors.push(syn::Error::new_spanned(
            &sig.generics,
            "a consumer handler cannot be generic: the message type must be concrete",
        ));
    }
    if let Some(v) = &sig.variadic {
        errors.push(syn::Error::new_spanned(
            v,
            "a consumer handler cannot be variadic",
        ));
    }

    let inputs: Vec<&FnArg> = sig.inputs.iter().collect();
    let mut message = None;
    let mut params = Vec::new();
    match inputs.as_slice() {
        [] => fail(
            errors,
            sig.paren_token.span.join(),
            format!("the handler takes no message; {FORMS}"),
        ),
        // A method's other parameters are not the handler forms' anyway:
        // the one error is that it is a method.
        [FnArg::Receiver(_), ..] => {
            message_type(inputs[0], errors);
        }
        [first, rest @ ..] => {
            message = message_type(first, errors);
            params = extra_params(rest, errors);
        }
    }

    // The caller expands only when no error at all was reported.
    let error = result_error_type(&sig.output, sig.ident.span(), errors)?;
    Some(Handler {
        func,
        message: message?,
        params,
        error,
    })
}

fn message_type<'a>(arg: &'a FnArg, errors: &mut Errors) -> Option<&'a Type> {
    match arg {
        FnArg::Receiver(r) => {
            errors.push(syn::Error::new_spanned(r, METHOD));
            None
        }
        FnArg::Typed(pt) => match &*pt.ty {
            Type::Reference(r) => {
                errors.push(syn::Error::new_spanned(
                    r,
                    "the message must be taken by value (`msg: T`), not by reference",
                ));
                None
            }
            Type::ImplTrait(t) => {
                errors.push(syn::Error::new_spanned(
                    t,
                    "the message type must be a concrete type that implements `serde::Deserialize`",
                ));
                None
            }
            ty => Some(ty),
        },
    }
}

/// What a parameter after the message is, by the last segment of its type.
/// A new kind of parameter is one more variant here and one more arm in
/// [`extra_params`].
enum Kind<'a> {
    /// `Context`, without generic arguments.
    Context,
    /// `State<S>` with one type argument: `S`.
    State(&'a Type),
    /// `Tx` or `Tx<DB>`, with any arguments: whether they name a database
    /// is the compiler's to say, through `TxParam`.
    Tx,
    /// `&Context`, `&mut State<S>`, …: what is behind the reference.
    Reference(&'a TypeReference, Box<Kind<'a>>),
    Other,
}

fn classify(ty: &Type) -> Kind<'_> {
    match ty {
        // Types passed through `macro_rules!` arrive wrapped in a group.
        Type::Group(g) => classify(&g.elem),
        Type::Paren(p) => classify(&p.elem),
        Type::Reference(r) => Kind::Reference(r, Box::new(classify(&r.elem))),
        Type::Path(p) if p.qself.is_none() => {
            p.path.segments.last().map_or(Kind::Other, classify_segment)
        }
        _ => Kind::Other,
    }
}

fn classify_segment(last: &PathSegment) -> Kind<'_> {
    match (last.ident.to_string().as_str(), &last.arguments) {
        ("Context", PathArguments::None) => Kind::Context,
        ("Tx", _) => Kind::Tx,
        ("State", PathArguments::AngleBracketed(generic)) => {
            let mut args = generic.args.iter();
            match (args.next(), args.next()) {
                (Some(GenericArgument::Type(state)), None) => Kind::State(state),
                _ => Kind::Other,
            }
        }
        _ => Kind::Other,
    }
}

/// The parameters after the message; an error on each one that is not a
/// handler parameter, is a second `Context`, a second `State` of a type or
/// a second `Tx`.
fn extra_params<'a>(rest: &[&'a FnArg], errors: &mut Errors) -> Vec<Param<'a>> {
    let mut params = Vec::new();
    let mut context_seen = false;
    let mut tx_seen = false;
    // `S` of each `State<S>` so far, as token text: `Deps` and `crate::Deps`
    // look different here, but the same spelling twice is surely a slip.
    let mut states_seen: Vec<String> = Vec::new();
    for arg in rest {
        let ty = match arg {
            FnArg::Typed(pt) => &*pt.ty,
            // syn refuses a receiver that is not first; kept for safety.
            FnArg::Receiver(r) => {
                errors.push(syn::Error::new_spanned(r, METHOD));
                continue;
            }
        };
        match classify(ty) {
            Kind::Context if context_seen => errors.push(syn::Error::new_spanned(
                ty,
                "a second `mqkit::Context` parameter; take the context once",
            )),
            Kind::Context => {
                context_seen = true;
                params.push(Param::Context(ty));
            }
            Kind::State(state) => {
                let key = state.to_token_stream().to_string();
                if states_seen.contains(&key) {
                    errors.push(syn::Error::new_spanned(
                        ty,
                        "a second `mqkit::State<T>` of the same type would receive the same value; take it once",
                    ));
                } else {
                    states_seen.push(key);
                    params.push(Param::State(ty));
                }
            }
            Kind::Tx if tx_seen => errors.push(syn::Error::new_spanned(
                ty,
                "a second `mqkit::Tx` parameter: a delivery has one transaction; take it once",
            )),
            Kind::Tx => {
                tx_seen = true;
                params.push(Param::Tx(ty));
            }
            Kind::Reference(r, behind) => {
                let message = match *behind {
                    Kind::Context => {
                        "take `mqkit::Context` by value (`ctx: mqkit::Context`), not by reference"
                    }
                    Kind::State(_) => {
                        "take `mqkit::State<T>` by value (`mqkit::State(s): mqkit::State<T>`), not by reference: each call gets its own clone"
                    }
                    Kind::Tx => "take `mqkit::Tx` by value (`mut tx: mqkit::Tx`), not by reference",
                    _ => OTHER_PARAM,
                };
                errors.push(syn::Error::new_spanned(r, message));
            }
            Kind::Other => errors.push(syn::Error::new_spanned(ty, OTHER_PARAM)),
        }
    }
    params
}

/// `E` of `Result<(), E>`, or an error on the return type.
fn result_error_type<'a>(
    output: &'a ReturnType,
    name_span: Span,
    errors: &mut Errors,
) -> Option<&'a Type> {
    const EXPECTED: &str = "a consumer handler must return `Result<(), E>` where `E: Into<mqkit::HandlerError>`, e.g. `Result<(), mqkit::HandlerError>`";
    let ty = match output {
        ReturnType::Default => {
            errors.push(syn::Error::new(
                name_span,
                format!("missing return type; {EXPECTED}"),
            ));
            return None;
        }
        ReturnType::Type(_, ty) => ty,
    };
    let ok_err = (|| {
        let Type::Path(p) = &**ty else { return None };
        let last = p.path.segments.last()?;
        if last.ident != "Result" {
            return None;
        }
        let PathArguments::AngleBracketed(generic) = &last.arguments else {
            return None;
        };
        let mut types = generic.args.iter().map(|a| match a {
            GenericArgument::Type(t) => Some(t),
            _ => None,
        });
        let (Some(Some(ok)), Some(Some(err)), None) = (types.next(), types.next(), types.next())
        else {
            return None;
        };
        Some((ok, err))
    })();
    match ok_err {
        None => {
            errors.push(syn::Error::new_spanned(ty, EXPECTED));
            None
        }
        Some((ok, err)) => {
            if matches!(ok, Type::Tuple(t) if t.elems.is_empty()) {
                Some(err)
            } else {
                // Point at the `Ok` type itself rather than at `Result`.
                errors.push(syn::Error::new_spanned(
                    ok,
                    format!("the `Ok` type must be `()`: on success mqkit acks the message and has no use for a value; {EXPECTED}"),
                ));
                None
            }
        }
    }
}

/// "goes on an `async fn`, found a struct `Foo`", spanned from the item's
/// keyword through its name (or its type, for an impl block).
pub(crate) fn not_a_function(item: &Item) -> syn::Error {
    fn named(kind: &str, ident: &Ident) -> String {
        format!("{kind} `{}`", ident.unraw())
    }
    fn span_of(first: &dyn ToTokens, last: &dyn ToTokens) -> TokenStream {
        quote!(#first #last)
    }
    let (found, tokens) = match item {
        Item::Struct(i) => (
            named("a struct", &i.ident),
            span_of(&i.struct_token, &i.ident),
        ),
        Item::Enum(i) => (named("an enum", &i.ident), span_of(&i.enum_token, &i.ident)),
        Item::Union(i) => (
            named("a union", &i.ident),
            span_of(&i.union_token, &i.ident),
        ),
        Item::Trait(i) => (
            named("a trait", &i.ident),
            span_of(&i.trait_token, &i.ident),
        ),
        Item::TraitAlias(i) => (
            named("a trait alias", &i.ident),
            span_of(&i.trait_token, &i.ident),
        ),
        Item::Type(i) => (
            named("a type alias", &i.ident),
            span_of(&i.type_token, &i.ident),
        ),
        Item::Const(i) => (
            named("a const", &i.ident),
            span_of(&i.const_token, &i.ident),
        ),
        Item::Static(i) => (
            named("a static", &i.ident),
            span_of(&i.static_token, &i.ident),
        ),
        Item::Mod(i) => (named("a module", &i.ident), span_of(&i.mod_token, &i.ident)),
        Item::Impl(i) => (
            "an impl block".to_owned(),
            span_of(&i.impl_token, &i.self_ty),
        ),
        Item::Use(i) => (
            "a `use` declaration".to_owned(),
            span_of(&i.use_token, &i.tree),
        ),
        Item::ExternCrate(i) => (
            named("an `extern crate`", &i.ident),
            span_of(&i.extern_token, &i.ident),
        ),
        Item::ForeignMod(i) => ("an `extern` block".to_owned(), i.abi.to_token_stream()),
        Item::Macro(i) => match &i.ident {
            Some(ident) => (
                named("a `macro_rules!`", ident),
                span_of(&i.mac.path, ident),
            ),
            None => (
                "a macro invocation".to_owned(),
                span_of(&i.mac.path, &i.mac.bang_token),
            ),
        },
        other => (
            "an item that is not a function".to_owned(),
            other.to_token_stream(),
        ),
    };
    syn::Error::new_spanned(
        tokens,
        format!("#[mqkit::consumer] goes on an `async fn`, found {found}"),
    )
}
