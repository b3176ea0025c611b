//! The registry: every `#[consumer]` linked into the binary, collected by
//! linkme into `__private::CONSUMERS` at link time, so [`run`](crate::run)
//! needs no list written by hand.

use crate::core::consumer::Registration;

/// Every consumer linked into this binary, in no particular order (what
/// [`App::from_env`](crate::App::from_env) runs).
pub fn registered() -> &'static [Registration] {
    &crate::__private::CONSUMERS
}
