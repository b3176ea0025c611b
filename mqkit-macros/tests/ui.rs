//! Compile-time behaviour of `#[mqkit::consumer]`: every misuse is an error
//! spanned on the offending token (`ui/fail`, with the expected `.stderr`),
//! and every documented handler form compiles (`ui/pass`). A bad attribute
//! shows its error and nothing else: the fail cases that use the companion
//! type elsewhere (`fallback_*`) check that. `pass/renamed_crate.rs` reaches
//! mqkit through `tests/facade`, a dev-dependency renamed to `mq`.
//!
//! Regenerate the `.stderr` files with
//! `TRYBUILD=overwrite cargo test -p mqkit-macros --test ui`, then read them.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/fail/*.rs");
    t.pass("tests/ui/pass/*.rs");
}
