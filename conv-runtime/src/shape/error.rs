//! Every way a layer can refuse its input.

use crate::isa::Isa;
use crate::shape::geometry::PaddingMode;

/// Why a layer could not be built or run. Each variant names what was expected and what
/// came; no input a user can construct makes a layer panic or return a wrong-shaped array.
///
/// ```
/// use conv_runtime::prelude::*;
/// use conv_runtime::ndarray::Array4;
///
/// let layer = Conv2d::new(conv!(k = 3), 3, 8);
/// let error = layer.forward(&Array4::<f32>::zeros((1, 4, 8, 8))).unwrap_err();
/// assert_eq!(error, ConvError::InputChannels { expected: 3, got: 4 });
/// assert_eq!(
///     error.to_string(),
///     "input has 4 channels, but the layer expects 3 (its in_channels)"
/// );
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
#[allow(missing_docs)] // The fields say what they hold; sizes are `(h, w)` (a length in 1-D), shapes NCHW (NCL).
pub enum ConvError {
    /// The input's channel axis (axis 1, NCHW) does not match the layer.
    #[error("input has {got} channels, but the layer expects {expected} (its in_channels)")]
    InputChannels { expected: usize, got: usize },

    /// The input's height or width is below what the geometry needs for one output.
    #[error(
        "input of {}x{} is too small: this {operation} needs at least {}x{} (h x w)",
        got.0, got.1, min.0, min.1
    )]
    InputTooSmall {
        operation: Operation,
        min: (usize, usize),
        got: (usize, usize),
    },

    /// A 1-D input (`[n, c, length]`) is shorter than the geometry needs for one output.
    #[error("input of length {got} is too short: this {operation} needs at least {min}")]
    InputTooShort {
        operation: Operation,
        min: usize,
        got: usize,
    },

    /// The input is too small for the geometry's padding mode (PyTorch's rules): reflect
    /// padding must be smaller than the input along its axis, circular padding at most as
    /// large. `padding` is the larger of the two sides of each axis.
    #[error(
        "input of {}x{} is too small for {mode} padding of {}x{}: it needs at least {}x{} \
         (h x w; reflect padding must be smaller than the input, circular padding at most \
         the input)",
        got.0, got.1, padding.0, padding.1, min.0, min.1
    )]
    PaddingTooLarge {
        mode: PaddingMode,
        padding: (usize, usize),
        min: (usize, usize),
        got: (usize, usize),
    },

    /// A 1-D input is too short for the geometry's padding mode (PyTorch's rules, as for
    /// [`PaddingTooLarge`](Self::PaddingTooLarge)).
    #[error(
        "input of length {got} is too short for {mode} padding of {padding}: it needs at \
         least {min} (reflect padding must be shorter than the input, circular padding at \
         most the input)"
    )]
    PaddingTooLong {
        mode: PaddingMode,
        padding: usize,
        min: usize,
        got: usize,
    },

    /// The weight's kernel axes (2 and 3) do not match the geometry.
    #[error(
        "weight has a {}x{} kernel (shape {got:?}), but the geometry's kernel is {}x{}",
        got[2], got[3], expected.0, expected.1
    )]
    KernelSize {
        expected: (usize, usize),
        got: [usize; 4],
    },

    /// A 1-D layer's weight (axis 2) does not match the geometry's kernel size.
    #[error(
        "weight has a kernel of {} taps (shape {got:?}), but the geometry's kernel has {expected}",
        got[2]
    )]
    KernelLength { expected: usize, got: [usize; 3] },

    /// The bias does not have one value per output channel.
    #[error("bias has {got} values, but the layer has {expected} output channels")]
    BiasShape { expected: usize, got: usize },

    /// A [`BatchNorm2d`](crate::BatchNorm2d) tensor does not have one value per feature
    /// (`weight`'s length).
    #[error("batch norm {tensor} has {got} values, but its weight has {expected}")]
    BatchNormShape {
        tensor: &'static str,
        expected: usize,
        got: usize,
    },

    /// A [`BatchNorm2d`](crate::BatchNorm2d) folded into a layer normalises another number of
    /// channels than the layer puts out.
    #[error(
        "batch norm has {got} features, but the layer it folds into has {expected} output \
         channels"
    )]
    BatchNormFeatures { expected: usize, got: usize },

    /// `groups` is zero or does not divide both channel counts.
    #[error(
        "groups = {groups} must be at least 1 and divide both in_channels ({in_channels}) and \
         out_channels ({out_channels})"
    )]
    Groups {
        groups: usize,
        in_channels: usize,
        out_channels: usize,
    },

    /// A channel count is zero.
    #[error(
        "channel counts must be at least 1, got in_channels = {in_channels}, \
         out_channels = {out_channels}"
    )]
    ZeroChannels {
        in_channels: usize,
        out_channels: usize,
    },

    /// `forward_with_output_size` asked for a size the transposed convolution cannot produce.
    #[error(
        "requested output size {}x{} is out of range: for this input it must be between {}x{} \
         and {}x{}",
        requested.0, requested.1, min.0, min.1, max.0, max.1
    )]
    OutputSize {
        requested: (usize, usize),
        min: (usize, usize),
        max: (usize, usize),
    },

    /// `forward_with_output_size` of a 1-D layer asked for a length the transposed
    /// convolution cannot produce.
    #[error(
        "requested output length {requested} is out of range: for this input it must be \
         between {min} and {max}"
    )]
    OutputLength {
        requested: usize,
        min: usize,
        max: usize,
    },

    /// The array given to `forward_into` has the wrong shape.
    #[error("output array has shape {got:?}, but this input gives {expected:?}")]
    OutputShape {
        expected: Vec<usize>,
        got: Vec<usize>,
    },

    /// The output gradient given to `backward` does not have the shape of the layer's output
    /// for that input. For `ConvTranspose2d`, whose output size `output_size` can choose,
    /// `expected` keeps the size `grad_output` has when that size is one the input can
    /// produce, and is the default size otherwise.
    #[error(
        "grad_output has shape {got:?}, but the layer's output for this input has shape \
         {expected:?}"
    )]
    GradOutputShape {
        expected: Vec<usize>,
        got: Vec<usize>,
    },

    /// An optimiser was given gradients whose shape is not that of the layer's parameter
    /// (`weight` or `bias`), or a layer without a bias and a bias gradient (or the reverse).
    /// An empty `expected` (or `got`) means that side has no such parameter.
    #[error(
        "{parameter} gradient has shape {got:?}, but the layer's {parameter} has shape \
         {expected:?}"
    )]
    GradientShape {
        parameter: Parameter,
        expected: Vec<usize>,
        got: Vec<usize>,
    },

    /// An optimiser holding state for one layer was stepped on a layer whose parameters have
    /// another shape. Optimisers keep per-parameter state (momentum, moment estimates): use
    /// one optimiser per layer.
    #[error(
        "the optimiser's state is for a {parameter} of shape {expected:?}, but this layer's \
         {parameter} has shape {got:?}: use one optimiser per layer"
    )]
    OptimizerState {
        parameter: Parameter,
        expected: Vec<usize>,
        got: Vec<usize>,
    },

    /// An [`Upsample`](crate::Upsample) scale factor is zero.
    #[error(
        "scale factor {}x{} is refused: each factor (h x w) must be at least 1",
        got.0, got.1
    )]
    ScaleFactor { got: (usize, usize) },

    /// An [`Upsample`](crate::Upsample) input has no rows or no columns (PyTorch refuses it
    /// too).
    #[error(
        "input of {}x{} is empty: upsampling needs at least 1x1 (h x w)",
        got.0, got.1
    )]
    EmptyInput { got: (usize, usize) },

    /// A layer was asked to run on an instruction set this build or CPU does not have.
    #[error("instruction set {requested} is not available here; available: {available:?}")]
    IsaUnavailable { requested: Isa, available: Vec<Isa> },

    /// A shape so large its output size does not fit in `usize`.
    #[error("input of {}x{} is too large: its output size overflows usize", got.0, got.1)]
    TooLarge { got: (usize, usize) },
}

/// Which direction a shape error concerns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    /// `Conv2d`.
    Convolution,
    /// `ConvTranspose2d`.
    TransposedConvolution,
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Operation::Convolution => "convolution",
            Operation::TransposedConvolution => "transposed convolution",
        })
    }
}

/// Which learnable parameter of a layer an error concerns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Parameter {
    /// The weight.
    Weight,
    /// The bias.
    Bias,
}

impl std::fmt::Display for Parameter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Parameter::Weight => "weight",
            Parameter::Bias => "bias",
        })
    }
}
