//! tmp
use proc_macro::TokenStream;
/// tmp
#[proc_macro_attribute]
pub fn consumer(_a: TokenStream, i: TokenStream) -> TokenStream {
    i
}
