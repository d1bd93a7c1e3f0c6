//! `Conv2d`: PyTorch's `nn.Conv2d`, on a geometry fixed at compile time. The face of the
//! generic [`Layer`] in the [`Convolution`] direction, and that direction's rules.

use ndarray::{Array4, ArrayView4};

use crate::kernels::row::Engine;
use crate::kernels::weight_grad;
use crate::layer_core::{
    Direction, Layer, Pack, Parameters, Rules, check_grad_output, output_shape,
};
use crate::memory::border;
use crate::shape::error::{ConvError, Operation};
use crate::shape::geometry::{Geometry, GeometrySpec};
use crate::train::gradients::Gradients;

/// A 2-D convolution over NCHW `f32` input, with PyTorch's `nn.Conv2d` semantics, weight
/// layout (`[out_channels, in_channels / groups, kh, kw]`) and default initialisation. The
/// geometry (kernel size, stride, padding, dilation) is a `conv!` type, so its kernels are
/// unrolled and specialised at compile time; channel counts, groups and input sizes are
/// run-time values. Its methods are [`Layer`]'s.
///
/// ```
/// use conv_runtime::prelude::*;
/// use conv_runtime::ndarray::Array4;
///
/// // PyTorch: nn.Conv2d(3, 16, kernel_size=3, dilation=2, padding=2)
/// let layer = Conv2d::new(conv!(k = 3, dilation = 2, padding = 2), 3, 16);
/// let x = Array4::<f32>::ones((1, 3, 64, 64));
/// let y = layer.forward(&x)?;
/// assert_eq!(y.shape(), &[1, 16, 64, 64]);
/// # Ok::<(), ConvError>(())
/// ```
pub type Conv2d<G> = Layer<G, Convolution>;

/// The direction of [`Conv2d`]: each output is a weighted sum over its window of the input.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Convolution;

impl Direction for Convolution {}

// Sealed: see `Rules`.
#[allow(private_interfaces)]
impl Rules for Convolution {
    const NAME: &'static str = "Conv2d";
    const OPERATION: Operation = Operation::Convolution;

    fn channels(weight: &Array4<f32>, groups: usize) -> (usize, usize) {
        let (out_channels, in_per_group, _, _) = weight.dim();
        (in_per_group.saturating_mul(groups), out_channels)
    }

    fn weight_shape(
        in_channels: usize,
        out_channels: usize,
        groups: usize,
        (kh, kw): (usize, usize),
    ) -> [usize; 4] {
        [out_channels, in_channels / groups, kh, kw]
    }

    fn pack<G: Geometry>() -> Pack {
        Engine::conv::<G>
    }

    fn pack_adjoint<G: Geometry>() -> Pack {
        Engine::transposed::<G>
    }

    /// The input gradient is the transposed convolution of `grad_output` with the layer's
    /// weight, at the input's size; the weight gradient correlates `x` with `grad_output`.
    fn backward(
        spec: &GeometrySpec,
        parameters: &Parameters,
        adjoint: Pack,
        x: &ArrayView4<f32>,
        grad_output: &ArrayView4<f32>,
    ) -> Result<Gradients, ConvError> {
        let (in_channels, out_channels) = Self::channels(&parameters.weight, parameters.groups);
        let expected = output_shape(
            x.dim().into(),
            in_channels,
            out_channels,
            spec,
            Operation::Convolution,
        )?;
        check_grad_output(grad_output, expected)?;
        let (input, weight) = if spec.pads_by_copy() {
            // With a padding mode other than zeros the kernels convolve a padded copy of `x`
            // (see `GeometrySpec::kernel_spec`): the gradients are those of that copy, and the
            // input's is folded back from the padded copy's.
            let size = (x.dim().2, x.dim().3);
            let (padded_input, weight) = border::with_padded(spec, x, |padded| {
                Self::kernel_gradients(spec, parameters, adjoint, padded, grad_output)
            });
            (border::fold(spec, &padded_input, size), weight)
        } else {
            Self::kernel_gradients(spec, parameters, adjoint, x, grad_output)
        };
        let bias = parameters.bias.is_some();
        Ok(Gradients::new(input, weight, bias, grad_output))
    }
}

impl Convolution {
    /// The input and weight gradients of the kernels' geometry (`spec` without a padding
    /// mode's border) for the input the kernels read.
    fn kernel_gradients(
        spec: &GeometrySpec,
        parameters: &Parameters,
        adjoint: Pack,
        x: &ArrayView4<f32>,
        grad_output: &ArrayView4<f32>,
    ) -> (Array4<f32>, Array4<f32>) {
        let (isa, kernel_spec) = (parameters.isa(), spec.kernel_spec());
        // The two gradients side by side (see `Transposed::backward`). `x`'s size is in the
        // transposed convolution's output range for `grad_output`'s, since the convolution
        // maps it there.
        rayon::join(
            || {
                let engine = parameters.adjoint(adjoint);
                engine.run_new(grad_output, x.dim().into())
            },
            || weight_grad::correlate(kernel_spec, isa, x, grad_output, parameters.groups),
        )
    }
}
