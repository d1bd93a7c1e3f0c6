//! 2-D convolution and transposed convolution ("upconvolution") whose kernels are generated
//! at compile time for one geometry, with PyTorch's semantics, weight layouts and numbers.
//!
//! [`conv!`] takes the geometry (kernel size, stride, padding, dilation, output padding) as
//! constants and emits a type whose kernels are unrolled over exactly the taps that matter,
//! every offset a compile-time constant. [`Conv2d`] and [`ConvTranspose2d`] run them on
//! `ndarray` arrays, NCHW `f32`, spread over all cores.
//!
//! ```
//! use conv_runtime::prelude::*;
//! use conv_runtime::ndarray::Array4;
//!
//! // PyTorch: nn.Conv2d(3, 16, kernel_size=3, dilation=2, padding=2)
//! //          nn.ConvTranspose2d(16, 3, kernel_size=2, stride=2)
//! let dilated_conv = Conv2d::new(conv!(k = 3, dilation = 2, padding = 2), 3, 16);
//! let upconv = ConvTranspose2d::new(conv!(k = 2, stride = 2), 16, 3);
//! let x = Array4::<f32>::zeros((1, 3, 64, 64));
//! let y = dilated_conv.forward(&x)?; // [1, 16, 64, 64]
//! let z = upconv.forward(&y)?; // [1, 3, 128, 128]
//! assert_eq!(z.shape(), &[1, 3, 128, 128]);
//! # Ok::<(), ConvError>(())
//! ```
//!
//! # The `conv!` macro
//!
//! ```text
//! conv!( PARAMS )                                  // expression: a value of an anonymous geometry type
//! conv! { [#[attrs]] [vis] struct NAME; PARAMS }    // item: a named, zero-sized geometry type
//!
//! PARAMS := PARAM ( , PARAM )* [,]
//! PARAM  := k = DIM | kernel_size = DIM                      (required)
//!         | stride = DIM                                     (default 1)
//!         | padding = DIM | same | valid | causal              (default 0)
//!         | padding_mode = zeros | reflect | replicate | circular (default zeros; Conv2d only)
//!         | dilation = DIM                                   (default 1)
//!         | output_padding = DIM                             (default 0; transposed direction)
//! DIM    := INTEGER | ( INTEGER , INTEGER )                  (one value for both axes, or (h, w))
//!
//! conv1d!( PARAMS ) | conv1d! { ... struct NAME; PARAMS }  // the same, every DIM one INTEGER
//! ```
//!
//! One invocation describes one geometry, and its type carries both directions; the layer
//! chooses which runs. The rules are PyTorch's and are checked at compile time, each error
//! pointing at what was typed: kernel size, stride and dilation at least 1; `padding = same`
//! only with stride 1 (an odd total puts the extra zero at the bottom/right); `padding =
//! causal` puts all of `same`'s amount at the top and left (see the 1-D layers below);
//! `output_padding` smaller than the stride or the dilation on each axis; each parameter at
//! most once; integers only. A kernel of more than 256 taps is refused, since every tap is
//! unrolled.
//!
//! `padding_mode` is `nn.Conv2d`'s: what the padding holds. With `reflect`, `replicate` or
//! `circular` the layer pads a copy of the input and its kernels convolve that copy without
//! padding, so the border costs one copy of the input and no test in the inner loops. The
//! input must be long enough for the mode (reflect: longer than the pad; circular: at least
//! as long), else [`ConvError::PaddingTooLarge`]. As in PyTorch, only [`Conv2d`] takes a mode:
//! a [`ConvTranspose2d`] of such a geometry does not compile (see [`ZeroPadded`]).
//!
//! ```
//! use conv_runtime::prelude::*;
//! use conv_runtime::ndarray::Array4;
//!
//! // PyTorch: nn.Conv2d(3, 8, kernel_size=3, dilation=2, padding=2, padding_mode='reflect')
//! let layer = Conv2d::new(conv!(k = 3, dilation = 2, padding = 2, padding_mode = reflect), 3, 8);
//! let y = layer.forward(&Array4::<f32>::ones((1, 3, 16, 16)))?;
//! assert_eq!(y.shape(), &[1, 8, 16, 16]);
//! // Reflecting 2 rows needs at least 3.
//! let error = layer.forward(&Array4::<f32>::ones((1, 3, 2, 16))).unwrap_err();
//! assert!(matches!(error, ConvError::PaddingTooLarge { min: (3, 3), got: (2, 16), .. }));
//! # Ok::<(), ConvError>(())
//! ```
//!
//! The item form names the type, so it can be stored in a struct field. Write it with braces:
//! rustfmt leaves braced macro calls alone, but inserts a comma after the `;` in a
//! parenthesised one, which breaks it.
//!
//! ```
//! use conv_runtime::prelude::*;
//!
//! conv! {
//!     /// The first layer of the context module.
//!     pub struct Context; k = 3, padding = 4, dilation = 4
//! }
//!
//! struct Model {
//!     context: Conv2d<Context>,
//! }
//!
//! let model = Model { context: Conv2d::new(Context, 64, 64) };
//! assert_eq!(Context::RECEPTIVE_FIELD, (9, 9));
//! assert_eq!(Context::output_size((64, 64)), Some((64, 64)));
//! assert_eq!(Context::KERNEL_SIZE, (3, 3));
//! assert_eq!(model.context.out_channels(), 64);
//! ```
//!
//! Per-axis values are `(h, w)` pairs, and the shape arithmetic is usable in constants:
//!
//! ```
//! use conv_runtime::prelude::*;
//!
//! conv! { struct Up; kernel_size = (4, 3), stride = (2, 1), padding = (1, 1), output_padding = (1, 0) }
//! const OUT: Option<(usize, usize)> = Up::transposed_output_size((16, 16));
//! assert_eq!(OUT, Some((33, 16)));
//! assert_eq!(Up::STRIDE, (2, 1));
//! ```
//!
//! # 1-D layers: `conv1d!`, [`Conv1d`], [`ConvTranspose1d`]
//!
//! PyTorch's `nn.Conv1d` and `nn.ConvTranspose1d` over `[n, c, l]` arrays, weights
//! `[out, in / groups, k]` and `[in, out / groups, k]`, with everything the 2-D layers have
//! (groups, bias, backward, optimisers, `forward_into`, `output_size`). `conv1d!` takes the
//! same parameters as `conv!`, each one integer, and one more padding: `padding = causal`
//! puts the whole field but the output's own sample before the input (`(k - 1) * dilation`
//! on the left, nothing on the right), so output `t` sees inputs up to `t` and none after,
//! as Keras' `padding='causal'` (PyTorch users pad by hand). The geometry's constants are
//! lengths, and a stack's receptive field is a constant too:
//!
//! ```
//! use conv_runtime::prelude::*;
//! use conv_runtime::ndarray::Array3;
//!
//! conv1d! { struct Causal; k = 2, dilation = 4, padding = causal }
//! conv1d! { struct Wider; k = 3, dilation = 8, padding = causal }
//! assert_eq!((Causal::PADDING, Causal::PADDING_AFTER, Causal::RECEPTIVE_FIELD), (4, 0, 5));
//! const FIELD: usize = GeometrySpec::stack_receptive_field(&[Causal::SPEC, Wider::SPEC]).1;
//! assert_eq!(FIELD, 21);
//!
//! let layer = Conv1d::new(Causal, 16, 32);
//! let y = layer.forward(&Array3::<f32>::ones((1, 16, 1000)))?;
//! assert_eq!(y.shape(), &[1, 32, 1000]);
//! # Ok::<(), ConvError>(())
//! ```
//!
//! A 1-D layer is the 2-D layer of kernel `(1, k)` on the input viewed one row high (no
//! copy): the row kernels run the whole sequence as one long row. A `conv!` geometry is not
//! accepted by a 1-D layer (see [`Geometry1d`]), and its errors are in lengths
//! ([`ConvError::InputTooShort`] rather than a `1 x l` size).
//!
//! # Where things are
//!
//! From the ground up: `shape` (the geometry, the contract with generated code, the
//! errors) and `isa` (instruction sets, detected at run time, as tokens); `memory` (the
//! operand layout and scratch buffers); `kernels` (the row kernel family and the
//! weight-gradient family); `train` (gradients and optimisers); `layer_core` (the one
//! generic [`Layer`]); `layers` (the public faces); and [`reference`](mod@reference), the
//! naive oracle, which stands on its own. This file only re-exports.
//!
//! # Threads
//!
//! Work is spread over all cores with rayon; `RAYON_NUM_THREADS` sets the count. Results
//! are bit-identical whatever the thread count: the work is split only across outputs,
//! never across the sum that makes one.

#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

// Lets `conv!`'s output, which names `::conv_runtime`, compile inside this crate's own tests.
extern crate self as conv_runtime;

mod isa;
mod kernels;
mod layer_core;
mod layers;
mod memory;
pub mod reference;
mod shape;
mod state_dict;
mod train;

pub use conv_macros::{conv, conv1d};
pub use isa::Isa;
pub use layer_core::{Accepts, Builder, Direction, Layer, SplitMix64};
pub use layers::batch_norm::{BatchNorm1d, BatchNorm2d};
pub use layers::conv_transpose2d::{ConvTranspose2d, Transposed};
pub use layers::conv2d::{Conv2d, Convolution};
pub use layers::one_dimensional::{Conv1d, ConvTranspose1d, Layer1d};
pub use layers::upsample::{ScaleFactor, Upsample, UpsampleMode};
/// The `ndarray` this crate is built with, so that users never mismatch it.
pub use ndarray;
pub use shape::error::{ConvError, Operation, Parameter};
pub use shape::geometry::{Geometry, Geometry1d, GeometrySpec, Padding, PaddingMode, ZeroPadded};
pub use state_dict::{LoadError, StateDict};
pub use train::gradients::Gradients;
pub use train::optim;

/// Everything a user of the layers needs: `use conv_runtime::prelude::*;`.
pub mod prelude {
    pub use crate::optim::{Optimizer, Trainable};
    pub use crate::{
        Conv1d, Conv2d, ConvError, ConvTranspose1d, ConvTranspose2d, Geometry, Geometry1d,
        GeometrySpec, Gradients, Upsample, UpsampleMode, ZeroPadded, conv, conv1d,
    };
}

/// Items the code generated by `conv!` names. Not part of the API.
#[doc(hidden)]
pub use shape::contract as __private;
