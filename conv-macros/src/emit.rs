//! Stage 4: the plan as Rust code.
//!
//! For each geometry the macro writes a zero-sized type with
//!
//! * its constants and `const fn` shape arithmetic (delegating to the runtime's
//!   `GeometrySpec`, so the arithmetic itself lives in one place);
//! * the `Geometry` trait that the layers take;
//! * the hidden `Kernels` trait: the convolution's taps and the transposed convolution's
//!   phases, each tap one call with its weight index and offsets as constant generic
//!   arguments. The runtime's kernels are visitors of these taps, so once inlined every tap
//!   is straight-line code with compile-time offsets.
//!
//! Generated code names the runtime only through `::conv_runtime`, and its private items only
//! through `::conv_runtime::__private`.

use proc_macro2::{Ident, Literal, Span, TokenStream};
use quote::{ToTokens, quote};

use crate::parse::ItemHeader;
use crate::plan::{Extent, Phase, Plan, Tap};
use crate::validate::{BorderMode, Geometry, Rank};

/// The code for a geometry, in the item or the expression form. `errors` (`compile_error!`
/// invocations, possibly none) are placed where they are valid in that form.
pub fn emit(
    header: Option<&ItemHeader>,
    geometry: &Geometry,
    plan: &Plan,
    errors: TokenStream,
) -> TokenStream {
    match header {
        Some(header) => {
            let attrs = &header.attrs;
            let vis = &header.vis;
            let ident = &header.ident;
            let definition = definition(ident, geometry, plan);
            quote! {
                #(#attrs)*
                #[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
                #vis struct #ident;
                #definition
                #errors
            }
        }
        None => {
            let ident = Ident::new("ConvGeometry", Span::call_site());
            let definition = definition(&ident, geometry, plan);
            quote! {
                {
                    #errors
                    /// The geometry of one `conv!` expression.
                    #[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
                    struct #ident;
                    #definition
                    #ident
                }
            }
        }
    }
}

/// The impls shared by both forms.
fn definition(ident: &Ident, geometry: &Geometry, plan: &Plan) -> TokenStream {
    let spec = spec(geometry);
    let forward_plan = phase_plan(&plan.forward);
    let transposed_plans = plan.transposed.iter().map(phase_plan);
    let forward_taps = taps(&plan.forward.taps);
    let transposed_arms = plan
        .transposed
        .iter()
        .enumerate()
        .filter(|(_, phase)| !phase.taps.is_empty())
        .map(|(index, phase)| {
            let index = Literal::usize_unsuffixed(index);
            let taps = taps(&phase.taps);
            quote!(#index => { #taps })
        });

    let phase_arms = plan
        .transposed
        .iter()
        .enumerate()
        .filter(|(_, phase)| !phase.taps.is_empty())
        .map(|(index, _)| {
            let index = Literal::usize_unsuffixed(index);
            quote!(#index => f.call::<#index>(),)
        });
    // Stride 2 across columns: the runtime computes both column phases in one pass.
    let pairing = if geometry.stride[1] == 2 {
        quote!(f.paired())
    } else {
        quote!(f.single())
    };

    // Only a geometry padding with zeros has a transposed layer (PyTorch's rule).
    let zero_padding = (geometry.padding_mode == BorderMode::Zeros)
        .then(|| quote!(impl ::conv_runtime::ZeroPadded for #ident {}));

    let (inherent, debug, one_dimensional) = match geometry.rank {
        Rank::Two => (
            inherent_2d(),
            quote!(::core::fmt::Display::fmt(&Self::SPEC, f)),
            None,
        ),
        Rank::One => (
            inherent_1d(),
            quote!(Self::SPEC.fmt_conv1d(f)),
            Some(quote!(impl ::conv_runtime::Geometry1d for #ident {})),
        ),
    };

    quote! {
        impl #ident {
            /// Every parameter of this geometry, and its shape arithmetic.
            pub const SPEC: ::conv_runtime::GeometrySpec = #spec;
            #inherent
        }

        impl ::core::fmt::Debug for #ident {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                #debug
            }
        }

        impl ::conv_runtime::Geometry for #ident {
            const SPEC: ::conv_runtime::GeometrySpec = #ident::SPEC;
        }

        #zero_padding
        #one_dimensional

        // SAFETY: the taps and phase plans below are `plan`'s, which lists every tap of the
        // geometry once, and every row of taps is applied only after `row` allows it.
        unsafe impl ::conv_runtime::__private::Kernels for #ident {
            const FORWARD: ::conv_runtime::__private::PhasePlan = #forward_plan;
            const TRANSPOSED: &'static [::conv_runtime::__private::PhasePlan] = &[#(#transposed_plans),*];

            #[inline(always)]
            fn forward_taps<V: ::conv_runtime::__private::TapVisitor>(visitor: &mut V) {
                #forward_taps
            }

            #[inline(always)]
            fn transposed_taps<V: ::conv_runtime::__private::TapVisitor>(phase: usize, visitor: &mut V) {
                #[allow(unreachable_patterns)]
                match phase {
                    #(#transposed_arms)*
                    _ => {}
                }
            }

            #[inline(always)]
            fn with_transposed_phase<F: ::conv_runtime::__private::PhaseFn>(phase: usize, f: F) {
                match phase {
                    #(#phase_arms)*
                    _ => f.call::<{ ::conv_runtime::__private::NO_PHASE }>(),
                }
            }

            #[inline(always)]
            fn with_transposed_columns<F: ::conv_runtime::__private::ColumnPairing>(f: F) -> F::Output {
                #pairing
            }
        }
    }
}

/// The constants and shape arithmetic of a `conv!` geometry, per axis `(h, w)`.
fn inherent_2d() -> TokenStream {
    quote! {
            /// `(kh, kw)`.
            pub const KERNEL_SIZE: (usize, usize) = Self::SPEC.kernel_size;
            /// `(sh, sw)`.
            pub const STRIDE: (usize, usize) = Self::SPEC.stride;
            /// Zeros added at the top and the left.
            pub const PADDING: (usize, usize) = Self::SPEC.pad_before();
            /// Zeros added at the bottom and the right (differs from `PADDING` only for an
            /// even kernel with `padding = same`).
            pub const PADDING_AFTER: (usize, usize) = Self::SPEC.pad_after();
            /// What the padding holds (PyTorch's `padding_mode`).
            pub const PADDING_MODE: ::conv_runtime::PaddingMode = Self::SPEC.padding_mode;
            /// `(dh, dw)`.
            pub const DILATION: (usize, usize) = Self::SPEC.dilation;
            /// Extra rows and columns at the bottom and right of a transposed convolution.
            pub const OUTPUT_PADDING: (usize, usize) = Self::SPEC.output_padding;
            /// The input window one output element sees: `dilation * (k - 1) + 1` per axis.
            pub const RECEPTIVE_FIELD: (usize, usize) = Self::SPEC.receptive_field();

            /// The convolution's output `(h, w)` for an input `(h, w)`; `None` when the input
            /// is smaller than the receptive field after padding.
            pub const fn output_size(input: (usize, usize)) -> ::core::option::Option<(usize, usize)> {
                Self::SPEC.output_size(input)
            }

            /// The transposed convolution's output `(h, w)` for an input `(h, w)`; `None` when
            /// the padding would crop the output away.
            pub const fn transposed_output_size(input: (usize, usize)) -> ::core::option::Option<(usize, usize)> {
                Self::SPEC.transposed_output_size(input)
            }
    }
}

/// The constants and shape arithmetic of a `conv1d!` geometry, in lengths: the second axis
/// of its one-row `SPEC`.
fn inherent_1d() -> TokenStream {
    quote! {
        /// `k`.
        pub const KERNEL_SIZE: usize = Self::SPEC.kernel_size.1;
        /// The step between outputs.
        pub const STRIDE: usize = Self::SPEC.stride.1;
        /// Padding added before the input (all of it with `padding = causal`).
        pub const PADDING: usize = Self::SPEC.pad_before().1;
        /// Padding added after the input (none with `padding = causal`).
        pub const PADDING_AFTER: usize = Self::SPEC.pad_after().1;
        /// What the padding holds (PyTorch's `padding_mode`).
        pub const PADDING_MODE: ::conv_runtime::PaddingMode = Self::SPEC.padding_mode;
        /// The spacing between taps.
        pub const DILATION: usize = Self::SPEC.dilation.1;
        /// Extra outputs at the end of a transposed convolution.
        pub const OUTPUT_PADDING: usize = Self::SPEC.output_padding.1;
        /// The input window one output sees: `dilation * (k - 1) + 1`.
        pub const RECEPTIVE_FIELD: usize = Self::SPEC.receptive_field().1;

        /// The convolution's output length for an input length; `None` when the input is
        /// shorter than the receptive field after padding.
        pub const fn output_size(length: usize) -> ::core::option::Option<usize> {
            match Self::SPEC.output_size((1, length)) {
                ::core::option::Option::Some((_, length)) => ::core::option::Option::Some(length),
                ::core::option::Option::None => ::core::option::Option::None,
            }
        }

        /// The transposed convolution's output length for an input length; `None` when the
        /// padding would crop the output away.
        pub const fn transposed_output_size(length: usize) -> ::core::option::Option<usize> {
            match Self::SPEC.transposed_output_size((1, length)) {
                ::core::option::Option::Some((_, length)) => ::core::option::Option::Some(length),
                ::core::option::Option::None => ::core::option::Option::None,
            }
        }
    }
}

fn spec(geometry: &Geometry) -> TokenStream {
    let kernel = pair(geometry.kernel);
    let stride = pair(geometry.stride);
    let dilation = pair(geometry.dilation);
    let output_padding = pair(geometry.output_padding);
    let padding = if geometry.same {
        quote!(::conv_runtime::Padding::Same)
    } else if geometry.causal {
        quote!(::conv_runtime::Padding::Causal)
    } else {
        let [h, w] = geometry.pad_before.map(Literal::usize_unsuffixed);
        quote!(::conv_runtime::Padding::Explicit(#h, #w))
    };
    let mode = match geometry.padding_mode {
        BorderMode::Zeros => quote!(Zeros),
        BorderMode::Reflect => quote!(Reflect),
        BorderMode::Replicate => quote!(Replicate),
        BorderMode::Circular => quote!(Circular),
    };
    quote! {
        ::conv_runtime::GeometrySpec {
            kernel_size: #kernel,
            stride: #stride,
            padding: #padding,
            padding_mode: ::conv_runtime::PaddingMode::#mode,
            dilation: #dilation,
            output_padding: #output_padding,
        }
    }
}

fn pair(values: [usize; 2]) -> TokenStream {
    let [h, w] = values.map(Literal::usize_unsuffixed);
    quote!((#h, #w))
}

fn phase_plan(phase: &Phase) -> TokenStream {
    let row_phase = Literal::usize_unsuffixed(phase.row_phase);
    let col_phase = Literal::usize_unsuffixed(phase.col_phase);
    let taps = phase.taps.iter().map(|tap| {
        let weight = Literal::usize_unsuffixed(tap.weight);
        let (row, col) = (signed(tap.row), signed(tap.col));
        quote!(::conv_runtime::__private::Tap { weight: #weight, row: #row, col: #col })
    });
    let extent = match phase.extent() {
        Some(Extent { rows, cols }) => {
            let (row_min, row_max) = (signed(rows.0), signed(rows.1));
            let (col_min, col_max) = (signed(cols.0), signed(cols.1));
            quote! {
                ::core::option::Option::Some(::conv_runtime::__private::Extent {
                    rows: (#row_min, #row_max),
                    cols: (#col_min, #col_max),
                })
            }
        }
        None => quote!(::core::option::Option::None),
    };
    quote! {
        ::conv_runtime::__private::PhasePlan {
            row_phase: #row_phase,
            col_phase: #col_phase,
            taps: &[#(#taps),*],
            extent: #extent,
        }
    }
}

/// One visitor call per tap, every argument a constant, in groups of consecutive taps on
/// one row, each group behind one `row` test.
fn taps(taps: &[Tap]) -> TokenStream {
    taps.chunk_by(|a, b| a.row == b.row)
        .map(|group| {
            let row = signed(group[0].row);
            let calls = group.iter().map(|tap| {
                let weight = Literal::usize_unsuffixed(tap.weight);
                let col = signed(tap.col);
                quote!(visitor.tap::<#weight, #row, #col>();)
            });
            quote! {
                if visitor.row(#row) {
                    #(#calls)*
                }
            }
        })
        .collect()
}

/// A signed constant as tokens: `-` and a literal for negatives, as the grammar of const
/// generic arguments wants.
fn signed(value: isize) -> TokenStream {
    let magnitude = Literal::usize_unsuffixed(value.unsigned_abs());
    if value < 0 {
        quote!(-#magnitude)
    } else {
        magnitude.into_token_stream()
    }
}
