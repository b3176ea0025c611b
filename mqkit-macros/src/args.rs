//! Step 1: parse `#[consumer(key = value, …)]` into [`Args`], collecting
//! every error (unknown or duplicate key, wrong literal type, bad duration,
//! empty name, out-of-range number, a `crate` that is not a path), each
//! spanned on its token.

use std::time::Duration;

use proc_macro2::{Span, TokenStream};
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::{Expr, ExprLit, Ident, Lit, LitInt, LitStr, Meta, Path, Token};

use crate::errors::Errors;

/// Every argument the attribute accepts, in documentation order.
pub(crate) const KEYS: &[&str] = &[
    "queue",
    "dlx",
    "dlq",
    "idempotency",
    "idempotency_ttl",
    "max_retries",
    "retry_delay",
    "prefetch",
    "concurrency",
    "timeout",
    "exchange",
    "routing_key",
    "exchange_type",
    "queue_type",
    "crate",
];

const EXCHANGE_TYPES: &[&str] = &["direct", "topic", "fanout", "headers"];
const QUEUE_TYPES: &[&str] = &["classic", "quorum"];

/// A value with the span of the literal it came from.
#[derive(Debug, Clone)]
pub(crate) struct Arg<T> {
    pub(crate) value: T,
    pub(crate) span: Span,
}

/// The parsed attribute. Absent optional arguments are `None`: `expand`
/// emits no setter for them, and the runtime's `ConsumerSpec::new` holds
/// the defaults.
#[derive(Default)]
pub(crate) struct Args {
    pub(crate) queue: Option<Arg<String>>,
    /// Whether a `queue = …` argument was written (even an invalid one).
    pub(crate) queue_written: bool,
    pub(crate) dlx: Option<Arg<String>>,
    pub(crate) dlq: Option<Arg<String>>,
    /// Field names, each spanned on the `idempotency` literal.
    pub(crate) idempotency: Vec<Ident>,
    pub(crate) idempotency_ttl: Option<Arg<Duration>>,
    pub(crate) max_retries: Option<Arg<u32>>,
    pub(crate) retry_delay: Option<Arg<Duration>>,
    pub(crate) prefetch: Option<Arg<u16>>,
    pub(crate) concurrency: Option<Arg<u16>>,
    pub(crate) timeout: Option<Arg<Duration>>,
    pub(crate) exchange: Option<Arg<String>>,
    pub(crate) routing_key: Option<Arg<String>>,
    pub(crate) exchange_type: Option<Arg<String>>,
    pub(crate) queue_type: Option<Arg<String>>,
    /// `crate = "path"`: where generated code finds `__private`.
    pub(crate) krate: Option<Path>,
}

impl Args {
    /// The path generated code names runtime items through:
    /// `crate = "…"` when written, else `::mqkit`.
    pub(crate) fn krate(&self) -> Path {
        self.krate
            .clone()
            .unwrap_or_else(|| syn::parse_quote!(::mqkit))
    }
}

/// Parses the attribute's tokens. Errors are added to `errors`; what could
/// be parsed is returned so later checks still run.
pub(crate) fn parse(attr: TokenStream, errors: &mut Errors) -> Args {
    let mut args = Args::default();
    let metas = match Punctuated::<Meta, Token![,]>::parse_terminated.parse2(attr) {
        Ok(metas) => metas,
        Err(e) => {
            errors.push(e);
            return args;
        }
    };
    let mut seen: Vec<String> = Vec::new();
    for meta in metas {
        // `queue("order")` is one mistake: say so once, not also "missing `queue`".
        args.queue_written |= meta.path().is_ident("queue");
        let Meta::NameValue(nv) = meta else {
            errors.push(syn::Error::new_spanned(
                &meta,
                "expected `name = value`, e.g. `queue = \"order\"`",
            ));
            continue;
        };
        let Some(key) = nv.path.get_ident() else {
            errors.push(syn::Error::new_spanned(
                &nv.path,
                unknown_key_message("this path"),
            ));
            continue;
        };
        let name = key.to_string();
        if !KEYS.contains(&name.as_str()) {
            errors.push(syn::Error::new(key.span(), unknown_key_message(&name)));
            continue;
        }
        if seen.contains(&name) {
            errors.push(syn::Error::new(
                key.span(),
                format!("duplicate argument `{name}`"),
            ));
            continue;
        }
        seen.push(name.clone());
        let value = &nv.value;
        let result = match name.as_str() {
            "queue" => name_arg(value, &name).map(|v| args.queue = Some(v)),
            "dlx" => name_arg(value, &name).map(|v| args.dlx = Some(v)),
            "dlq" => name_arg(value, &name).map(|v| args.dlq = Some(v)),
            "exchange" => name_arg(value, &name).map(|v| args.exchange = Some(v)),
            "routing_key" => str_arg(value, &name).map(|v| args.routing_key = Some(v)),
            "exchange_type" => choice_arg(value, &name, EXCHANGE_TYPES)
                .map(|v| args.exchange_type = Some(v)),
            "queue_type" => {
                choice_arg(value, &name, QUEUE_TYPES).map(|v| args.queue_type = Some(v))
            }
            "idempotency" => fields_arg(value).map(|v| args.idempotency = v),
            "idempotency_ttl" => duration_arg(value, &name).and_then(|v| {
                if v.value < Duration::from_secs(1) {
                    Err(syn::Error::new(
                        v.span,
                        "`idempotency_ttl` must be at least 1s (Redis expires keys in whole seconds)",
                    ))
                } else {
                    args.idempotency_ttl = Some(v);
                    Ok(())
                }
            }),
            "retry_delay" => duration_arg(value, &name).map(|v| args.retry_delay = Some(v)),
            "timeout" => duration_arg(value, &name).map(|v| args.timeout = Some(v)),
            "max_retries" => int_arg(value, &name, 0, u32::MAX).map(|v| args.max_retries = Some(v)),
            "prefetch" => int_arg(value, &name, 1, u16::MAX).map(|v| args.prefetch = Some(v)),
            "concurrency" => int_arg(value, &name, 1, u16::MAX).map(|v| args.concurrency = Some(v)),
            "crate" => path_arg(value).map(|v| args.krate = Some(v)),
            _ => Ok(()),
        };
        if let Err(e) = result {
            errors.push(e);
        }
    }
    check_combinations(&args, errors);
    args
}

/// The runtime's default `prefetch` (`ConsumerSpec::new`), needed here only
/// to check a `concurrency` written without `prefetch`; the UI cases
/// `concurrency_exceeds_default_prefetch` and `concurrency_up_to_default_prefetch`
/// fail if the two drift apart.
const DEFAULT_PREFETCH: u16 = 10;

fn check_combinations(args: &Args, errors: &mut Errors) {
    if let Some(c) = &args.concurrency {
        let (prefetch, default_note) = match &args.prefetch {
            Some(p) => (p.value, ""),
            None => (DEFAULT_PREFETCH, ", its default; write `prefetch` too"),
        };
        if c.value > prefetch {
            errors.push(syn::Error::new(
                c.span,
                format!(
                    "`concurrency` ({}) cannot exceed `prefetch` ({prefetch}{default_note}): a consumer never holds more than `prefetch` unacked messages",
                    c.value
                ),
            ));
        }
    }
    if args.exchange.is_none() {
        for (arg, name) in [
            (&args.routing_key, "routing_key"),
            (&args.exchange_type, "exchange_type"),
        ] {
            if let Some(arg) = arg {
                errors.push(syn::Error::new(
                    arg.span,
                    format!("`{name}` needs `exchange = \"…\"`: it describes the binding of a source exchange"),
                ));
            }
        }
    }
}

fn unknown_key_message(name: &str) -> String {
    format!(
        "unknown argument `{name}`; expected one of: {}",
        KEYS.join(", ")
    )
}

fn lit_str(value: &Expr, name: &str, example: &str) -> syn::Result<LitStr> {
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        }) => Ok(s.clone()),
        _ => Err(syn::Error::new_spanned(
            value,
            format!("`{name}` expects a string literal, like `{name} = {example}`"),
        )),
    }
}

fn str_arg(value: &Expr, name: &str) -> syn::Result<Arg<String>> {
    let lit = lit_str(value, name, "\"…\"")?;
    Ok(Arg {
        value: lit.value(),
        span: lit.span(),
    })
}

/// A queue or exchange name: non-empty, at most 255 bytes, not `amq.`-prefixed.
fn name_arg(value: &Expr, name: &str) -> syn::Result<Arg<String>> {
    let lit = lit_str(value, name, "\"order\"")?;
    let v = lit.value();
    if v.trim().is_empty() {
        return Err(syn::Error::new(
            lit.span(),
            format!("`{name}` must not be empty"),
        ));
    }
    if v.len() > 255 {
        return Err(syn::Error::new(
            lit.span(),
            format!(
                "`{name}` is {} bytes long; RabbitMQ names are at most 255 bytes",
                v.len()
            ),
        ));
    }
    if v.starts_with("amq.") {
        return Err(syn::Error::new(
            lit.span(),
            format!("`{name}` must not start with `amq.`: RabbitMQ reserves those names"),
        ));
    }
    Ok(Arg {
        value: v,
        span: lit.span(),
    })
}

fn choice_arg(value: &Expr, name: &str, choices: &[&str]) -> syn::Result<Arg<String>> {
    let lit = lit_str(value, name, &format!("\"{}\"", choices[0]))?;
    let v = lit.value();
    if !choices.contains(&v.as_str()) {
        return Err(syn::Error::new(
            lit.span(),
            format!("`{name}` must be one of: {}", choices.join(", ")),
        ));
    }
    Ok(Arg {
        value: v,
        span: lit.span(),
    })
}

fn duration_arg(value: &Expr, name: &str) -> syn::Result<Arg<Duration>> {
    let lit = lit_str(value, name, "\"5s\"")?;
    let text = lit.value();
    // humantime's own messages ("expected number at 0") describe its parser,
    // not the fix, so they are left out.
    let d = humantime::parse_duration(&text).map_err(|_| {
        syn::Error::new(
            lit.span(),
            format!(
                "`{name}` is not a duration: {text:?}; write a number with a unit, like \"250ms\", \"5s\", \"2m\" or \"24h\""
            ),
        )
    })?;
    if d.is_zero() {
        return Err(syn::Error::new(
            lit.span(),
            format!("`{name}` must be greater than zero"),
        ));
    }
    Ok(Arg {
        value: d,
        span: lit.span(),
    })
}

fn int_arg<T>(value: &Expr, name: &str, min: T, max: T) -> syn::Result<Arg<T>>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
    T::Err: std::fmt::Display,
{
    let lit: &LitInt = match value {
        Expr::Lit(ExprLit {
            lit: Lit::Int(i), ..
        }) => i,
        _ => {
            return Err(syn::Error::new_spanned(
                value,
                format!("`{name}` expects an integer, like `{name} = 10`"),
            ));
        }
    };
    // A negative literal fails to parse as unsigned ("invalid digit"):
    // report it as what it is, below the minimum.
    if lit.base10_digits().starts_with('-') {
        return Err(syn::Error::new(
            lit.span(),
            format!("`{name}` must be at least {min}"),
        ));
    }
    let v: T = lit.base10_parse().map_err(|_| {
        syn::Error::new(lit.span(), format!("`{name}` is too large: at most {max}"))
    })?;
    if v < min {
        return Err(syn::Error::new(
            lit.span(),
            format!("`{name}` must be at least {min}"),
        ));
    }
    Ok(Arg {
        value: v,
        span: lit.span(),
    })
}

/// `crate = "my_facade::mqkit"`: a path without generic arguments, spanned on
/// the literal (as serde's `#[serde(crate = "…")]`).
fn path_arg(value: &Expr) -> syn::Result<Path> {
    let lit = lit_str(value, "crate", "\"mqkit\"")?;
    lit.parse_with(Path::parse_mod_style).map_err(|_| {
        let text = lit.value();
        // A package name is the usual slip: Rust code names it with `_`.
        let hint = if text.contains('-') {
            format!(" (in Rust code `-` becomes `_`: {:?})", text.replace('-', "_"))
        } else {
            String::new()
        };
        syn::Error::new(
            lit.span(),
            format!(
                "`crate` is not a path: {text:?}{hint}; write the path under which your crate sees mqkit, like \"mqkit\" or \"my_facade::mqkit\""
            ),
        )
    })
}

/// `"order_id,event_type"` into field identifiers spanned on the literal, so
/// that a field the message type lacks is reported there.
fn fields_arg(value: &Expr) -> syn::Result<Vec<Ident>> {
    let lit = lit_str(value, "idempotency", "\"order_id,event_type\"")?;
    let text = lit.value();
    if text.trim().is_empty() {
        return Err(syn::Error::new(
            lit.span(),
            "`idempotency` lists no fields; name the message fields that identify a business event, like \"order_id,event_type\", or remove the argument",
        ));
    }
    let mut fields: Vec<Ident> = Vec::new();
    for part in text.split(',') {
        let part = part.trim();
        if part.is_empty() {
            return Err(syn::Error::new(
                lit.span(),
                "`idempotency` has an empty field name; separate field names with single commas",
            ));
        }
        let mut ident = syn::parse_str::<Ident>(part).map_err(|_| {
            syn::Error::new(
                lit.span(),
                format!("`{part}` in `idempotency` is not a field name"),
            )
        })?;
        if fields.contains(&ident) {
            return Err(syn::Error::new(
                lit.span(),
                format!("`{part}` appears twice in `idempotency`"),
            ));
        }
        // `set_span`, not `Ident::new`, which panics on a raw `r#type`.
        ident.set_span(lit.span());
        fields.push(ident);
    }
    Ok(fields)
}
