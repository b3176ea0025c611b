//! The registry: every `#[consumer]` linked into the binary, collected by
//! linkme into `__private::CONSUMERS` at link time, so [`run`](crate::run)
//! needs no list written by hand.

use crate::core::consumer::Registration;

/// Every consumer linked into this binary, in no particular order.
pub(crate) fn registered() -> &'static [Registration] {
    &crate::__private::CONSUMERS
}
