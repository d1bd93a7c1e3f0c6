//! `ConvTranspose2d`: PyTorch's `nn.ConvTranspose2d`, on a geometry fixed at compile time.
//! The face of the generic [`Layer`] in the [`Transposed`] direction, and that direction's
//! rules.

use ndarray::{Array4, ArrayBase, ArrayView4, Data, Ix4, s};

use crate::kernels::row::Engine;
use crate::kernels::weight_grad;
use crate::layer_core::{
    Direction, Layer, Pack, Parameters, Rules, check_allocatable, check_transposed_grad_output,
    output_shape,
};
use crate::shape::error::{ConvError, Operation};
use crate::shape::geometry::{Geometry, GeometrySpec};
use crate::train::gradients::Gradients;

/// A 2-D transposed convolution ("upconvolution") over NCHW `f32` input, with PyTorch's
/// `nn.ConvTranspose2d` semantics, weight layout (`[in_channels, out_channels / groups, kh,
/// kw]`) and default initialisation. Each input element spreads its weighted filter over the
/// output; the kernels compute the `stride_h x stride_w` output phases as dense
/// sub-convolutions, so no multiply touches an inserted zero. Its methods are [`Layer`]'s,
/// and [`forward_with_output_size`](Layer::forward_with_output_size).
///
/// ```
/// use conv_runtime::prelude::*;
/// use conv_runtime::ndarray::Array4;
///
/// // PyTorch: nn.ConvTranspose2d(16, 3, kernel_size=2, stride=2)
/// let layer = ConvTranspose2d::new(conv!(k = 2, stride = 2), 16, 3);
/// let x = Array4::<f32>::ones((1, 16, 32, 32));
/// let y = layer.forward(&x)?;
/// assert_eq!(y.shape(), &[1, 3, 64, 64]);
/// # Ok::<(), ConvError>(())
/// ```
pub type ConvTranspose2d<G> = Layer<G, Transposed>;

/// The direction of [`ConvTranspose2d`]: the adjoint of the convolution, each input element
/// spreading over the outputs its window reaches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Transposed;

impl Direction for Transposed {}

impl<G: Geometry> ConvTranspose2d<G> {
    /// As [`forward`](Layer::forward), with PyTorch's `output_size` argument: a strided
    /// transposed convolution maps several input sizes to one output size, and this picks
    /// the output `(h, w)` back, anywhere from the smallest size to `stride - 1` more on each
    /// axis (see
    /// [`GeometrySpec::transposed_output_range`](crate::GeometrySpec::transposed_output_range);
    /// the geometry's `output_padding` is ignored, as in PyTorch).
    ///
    /// ```
    /// use conv_runtime::prelude::*;
    /// use conv_runtime::ndarray::Array4;
    ///
    /// let up = ConvTranspose2d::new(conv!(k = 3, stride = 2, padding = 1), 4, 4);
    /// let x = Array4::<f32>::zeros((1, 4, 8, 8));
    /// assert_eq!(up.forward(&x)?.shape(), &[1, 4, 15, 15]);
    /// assert_eq!(up.forward_with_output_size(&x, (16, 15))?.shape(), &[1, 4, 16, 15]);
    /// assert!(up.forward_with_output_size(&x, (17, 15)).is_err());
    /// # Ok::<(), ConvError>(())
    /// ```
    pub fn forward_with_output_size<S: Data<Elem = f32>>(
        &self,
        x: &ArrayBase<S, Ix4>,
        output_size: (usize, usize),
    ) -> Result<Array4<f32>, ConvError> {
        let [n, ..] = self.output_shape(x.dim().into())?;
        let input = (x.dim().2, x.dim().3);
        // `output_shape` accepted the input, so some output size exists.
        let (min, max) = G::SPEC
            .transposed_output_range(input)
            .ok_or(ConvError::TooLarge { got: input })?;
        let (out_h, out_w) = output_size;
        if out_h < min.0 || out_h > max.0 || out_w < min.1 || out_w > max.1 {
            return Err(ConvError::OutputSize {
                requested: output_size,
                min,
                max,
            });
        }
        let shape = [n, self.out_channels(), out_h, out_w];
        check_allocatable(shape, input)?;
        Ok(self.parameters().engine().run_new(x, shape))
    }
}

// Sealed: see `Rules`.
#[allow(private_interfaces)]
impl Rules for Transposed {
    const NAME: &'static str = "ConvTranspose2d";
    const OPERATION: Operation = Operation::TransposedConvolution;

    fn channels(weight: &Array4<f32>, groups: usize) -> (usize, usize) {
        let (in_channels, out_per_group, _, _) = weight.dim();
        (in_channels, out_per_group.saturating_mul(groups))
    }

    fn weight_shape(
        in_channels: usize,
        out_channels: usize,
        groups: usize,
        (kh, kw): (usize, usize),
    ) -> [usize; 4] {
        [in_channels, out_channels / groups, kh, kw]
    }

    fn pack<G: Geometry>() -> Pack {
        Engine::transposed::<G>
    }

    fn pack_adjoint<G: Geometry>() -> Pack {
        Engine::conv::<G>
    }

    /// `grad_output` has the output's shape: the default size, or any size
    /// `forward_with_output_size` accepts for `x`. The input gradient is the convolution of
    /// `grad_output` with the layer's weight; the weight gradient is the correlation a
    /// `Conv2d` computes, with the roles swapped:
    /// `dW[i][o][th][tw] = sum x[n][i][iy][ix] * grad_output[n][o][iy * sh + th * dh - pad_top][ix * sw + tw * dw - pad_left]`.
    fn backward(
        spec: &GeometrySpec,
        parameters: &Parameters,
        adjoint: Pack,
        x: &ArrayView4<f32>,
        grad_output: &ArrayView4<f32>,
    ) -> Result<Gradients, ConvError> {
        let (in_channels, out_channels) = Self::channels(&parameters.weight, parameters.groups);
        let default = output_shape(
            x.dim().into(),
            in_channels,
            out_channels,
            spec,
            Operation::TransposedConvolution,
        )?;
        let (n, channels, h, w) = x.dim();
        let got: [usize; 4] = grad_output.dim().into();
        check_transposed_grad_output(got, default, (h, w), spec)?;
        let size = (got[2], got[3]);

        // The convolution of `grad_output` gives the input's size, plus a row or column per
        // `stride` of output padding beyond the stride (possible when the dilation exceeds
        // the stride): those extra rows and columns are not the input's, and are dropped.
        let (conv_h, conv_w) = spec
            .output_size(size)
            .ok_or(ConvError::TooLarge { got: size })?;
        let input_gradient = || {
            let engine = parameters.adjoint(adjoint);
            if (conv_h, conv_w) == (h, w) {
                engine.run_new(grad_output, x.dim().into())
            } else {
                let full = engine.run_new(grad_output, [n, channels, conv_h, conv_w]);
                full.slice(s![.., .., ..h, ..w]).to_owned()
            }
        };
        // The correlation of a `Conv2d` from `out_channels` to `in_channels`, summed over
        // `x`'s grid: its weight `[in, out / groups, kh, kw]` is this layer's weight layout.
        let isa = parameters.isa();
        let weight_gradient =
            || weight_grad::correlate(*spec, isa, grad_output, x, parameters.groups);
        // Side by side: each runs parallel sections between serial ones (laying operands
        // out, packing), in which a second thread of one would wait while it can work on
        // the other. One after the other on one thread.
        let (input, weight) = rayon::join(input_gradient, weight_gradient);
        let bias = parameters.bias.is_some();
        Ok(Gradients::new(input, weight, bias, grad_output))
    }
}
