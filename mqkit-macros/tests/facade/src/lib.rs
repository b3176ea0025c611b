//! mqkit under another name. Cargo refuses one package as two dependencies
//! of a crate (`mqkit` and `mq = { package = "mqkit" }`), so mqkit-macros'
//! renamed-dependency UI case depends on this facade as `mq` instead.

pub use mqkit::*;
