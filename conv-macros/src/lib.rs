//! The procedural macro behind `conv_runtime::conv!`. Users depend on `conv-runtime`, which
//! re-exports it; see that crate for documentation and examples.
//!
//! The macro runs in four stages, one private module each (plain names here, not links, so
//! that the public documentation has none that lead nowhere):
//!
//! 1. `parse`: tokens to a model of what the user wrote (lenient about values).
//! 2. `validate`: every rule of the grammar, all errors collected, each at its token
//!    (for `conv1d!`, after `one_dimension` has made each integer the pair of one row).
//! 3. `plan`: the taps each kernel unrolls and the phases of the transposed convolution.
//! 4. `emit`: the geometry type and its kernels as Rust code.

use proc_macro::TokenStream;

mod emit;
mod one_dimension;
mod parse;
mod plan;
mod validate;

/// Defines a convolution geometry whose kernels are unrolled at compile time.
///
/// See `conv_runtime::conv!` for the grammar and examples.
#[proc_macro]
pub fn conv(input: TokenStream) -> TokenStream {
    expand(input, validate::Rank::Two)
}

/// Defines a 1-D convolution geometry (one integer per parameter, as `nn.Conv1d`), for
/// `Conv1d` and `ConvTranspose1d`.
///
/// See the "1-D layers" section of the `conv_runtime` crate documentation for the grammar
/// and examples.
#[proc_macro]
pub fn conv1d(input: TokenStream) -> TokenStream {
    expand(input, validate::Rank::One)
}

fn expand(input: TokenStream, rank: validate::Rank) -> TokenStream {
    let invocation = syn::parse_macro_input!(input as parse::Invocation);
    let (geometry, errors) = validate::validate(&invocation, rank);
    let plan = plan::Plan::new(&geometry);
    // Even after an error, emit the geometry (with defaults in place of bad values) so that
    // code using it still type-checks and each mistake gives exactly one error.
    let errors = errors
        .into_combined()
        .map(|error| error.to_compile_error())
        .unwrap_or_default();
    emit::emit(invocation.item.as_ref(), &geometry, &plan, errors).into()
}
