//! `ConvTranspose2d`: PyTorch's `nn.ConvTranspose2d`, on a geometry fixed at compile time.

use std::fmt;

use ndarray::{
    Array1, Array4, ArrayBase, ArrayView1, ArrayView4, ArrayViewMut1, ArrayViewMut4, Data, DataMut,
    Ix4, s,
};

use crate::backward::{self, Gradients};
use crate::error::{ConvError, Operation};
use crate::layer::{self, Builder, Engine};
use crate::optim::Trainable;
use crate::weights::LayerWeights;
use crate::{Geometry, weight_grad};

/// A 2-D transposed convolution ("upconvolution", the adjoint of [`Conv2d`](crate::Conv2d))
/// over NCHW `f32` input, with PyTorch's `nn.ConvTranspose2d` semantics, weight layout and
/// default initialisation.
///
/// A strided transposed convolution runs as `stride_h x stride_w` dense sub-convolutions,
/// one per output phase, each over exactly the taps that reach it: no zeros are inserted and
/// none are multiplied.
///
/// ```
/// use conv_runtime::prelude::*;
/// use conv_runtime::ndarray::Array4;
///
/// // PyTorch: nn.ConvTranspose2d(16, 3, kernel_size=2, stride=2)
/// let upconv = ConvTranspose2d::new(conv!(k = 2, stride = 2), 16, 3);
/// let y = upconv.forward(&Array4::<f32>::ones((1, 16, 64, 64)))?;
/// assert_eq!(y.shape(), &[1, 3, 128, 128]);
/// # Ok::<(), ConvError>(())
/// ```
#[derive(Clone)]
pub struct ConvTranspose2d<G: Geometry> {
    geometry: G,
    weights: LayerWeights,
}

impl<G: Geometry> ConvTranspose2d<G> {
    /// A layer with PyTorch's default initialisation (kaiming-uniform weights, uniform bias),
    /// bias on, one group.
    ///
    /// # Panics
    ///
    /// If a channel count is zero. [`ConvTranspose2d::builder`] reports that as an error.
    pub fn new(geometry: G, in_channels: usize, out_channels: usize) -> Self {
        match Self::builder(geometry, in_channels, out_channels).build() {
            Ok(layer) => layer,
            Err(error) => panic!("ConvTranspose2d::new: {error}"),
        }
    }

    /// A builder for groups, bias and seed.
    pub fn builder(_geometry: G, in_channels: usize, out_channels: usize) -> Builder<Self> {
        Builder::new(in_channels, out_channels)
    }

    /// A layer with the given parameters, in PyTorch's layout, so that a trained
    /// `nn.ConvTranspose2d` loads unchanged: `weight` is
    /// `[in_channels, out_channels / groups, kh, kw]` and `bias` is `[out_channels]`.
    pub fn from_weights(
        geometry: G,
        weight: Array4<f32>,
        bias: Option<Array1<f32>>,
        groups: usize,
    ) -> Result<Self, ConvError> {
        let (in_channels, out_per_group, _, _) = weight.dim();
        layer::check_channels(in_channels, out_per_group * groups, groups)?;
        layer::check_kernel(&G::SPEC, &weight)?;
        layer::check_bias(bias.as_ref(), out_per_group * groups)?;
        Ok(ConvTranspose2d {
            geometry,
            weights: LayerWeights::new(weight, bias, groups, Engine::transposed::<G>),
        })
    }

    /// The instruction set the layer's kernels use, chosen when it was built (see
    /// [`Isa::force`](crate::Isa::force)).
    pub fn isa(&self) -> crate::Isa {
        self.weights.isa()
    }

    /// The geometry the layer was made with.
    pub fn geometry(&self) -> G {
        self.geometry
    }

    /// The weight, `[in_channels, out_channels / groups, kh, kw]` as in PyTorch.
    pub fn weight(&self) -> &Array4<f32> {
        &self.weights.weight
    }

    /// The bias, `[out_channels]`, if the layer has one.
    pub fn bias(&self) -> Option<&Array1<f32>> {
        self.weights.bias.as_ref()
    }

    /// Input channels, PyTorch's `in_channels`.
    pub fn in_channels(&self) -> usize {
        self.weights.weight.dim().0
    }

    /// Output channels, PyTorch's `out_channels`.
    pub fn out_channels(&self) -> usize {
        self.weights.weight.dim().1 * self.weights.groups
    }

    /// Channel groups, PyTorch's `groups`.
    pub fn groups(&self) -> usize {
        self.weights.groups
    }

    /// The output shape `[n, out_channels, h, w]` for an input of shape `[n, c, h, w]`, or
    /// why that input is refused.
    pub fn output_shape(&self, input: [usize; 4]) -> Result<[usize; 4], ConvError> {
        layer::output_shape(
            input,
            self.in_channels(),
            self.out_channels(),
            &G::SPEC,
            Operation::TransposedConvolution,
        )
    }

    /// Applies the transposed convolution to `x`, NCHW, any layout, into a new
    /// standard-layout array.
    pub fn forward<S: Data<Elem = f32>>(
        &self,
        x: &ArrayBase<S, Ix4>,
    ) -> Result<Array4<f32>, ConvError> {
        let shape = self.output_shape(x.dim().into())?;
        let mut out = Array4::zeros(shape);
        self.weights.engine().run(x, &mut out);
        Ok(out)
    }

    /// Applies the transposed convolution into `out`, which must have the shape
    /// [`output_shape`](Self::output_shape) gives. Allocates nothing when `out` is in
    /// standard layout.
    pub fn forward_into<S: Data<Elem = f32>, T: DataMut<Elem = f32>>(
        &self,
        x: &ArrayBase<S, Ix4>,
        out: &mut ArrayBase<T, Ix4>,
    ) -> Result<(), ConvError> {
        let shape = self.output_shape(x.dim().into())?;
        layer::check_output(out, shape)?;
        self.weights.engine().run(x, out);
        Ok(())
    }

    /// As [`forward`](Self::forward), with PyTorch's `output_size` argument: a strided
    /// transposed convolution maps several input sizes to one output size, and this picks
    /// the output `(h, w)` back, anywhere from the smallest size to `stride - 1` more on each
    /// axis (see [`GeometrySpec::transposed_output_range`](crate::GeometrySpec::transposed_output_range); the geometry's `output_padding`
    /// is ignored, as in PyTorch).
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
        let mut out = Array4::zeros((n, self.out_channels(), out_h, out_w));
        self.weights.engine().run(x, &mut out);
        Ok(out)
    }

    /// The gradients of a loss with respect to the input, weight and bias, given `x` (the
    /// input of the forward pass) and `grad_output`, the loss's gradient with respect to
    /// the output. Both may be in any layout. The values are PyTorch autograd's.
    ///
    /// `grad_output` has the output's shape: the size [`output_shape`](Self::output_shape)
    /// gives, or any size [`forward_with_output_size`](Self::forward_with_output_size)
    /// accepts for `x`, which is then the size the forward pass was asked for.
    ///
    /// The input gradient is the convolution of `grad_output` with the layer's weight; the
    /// weight gradient is the correlation of `grad_output` with `x` that
    /// [`Conv2d::backward`](crate::Conv2d::backward) computes with the roles swapped,
    /// `dW[i][o][th][tw] = sum x[n][i][iy][ix] * grad_output[n][o][iy * sh + th * dh - pad_top][ix * sw + tw * dw - pad_left]`,
    /// unrolled over the geometry's taps; the bias gradient sums `grad_output` over the
    /// batch and space.
    ///
    /// ```
    /// use conv_runtime::prelude::*;
    /// use conv_runtime::ndarray::Array4;
    ///
    /// let upconv = ConvTranspose2d::new(conv!(k = 3, stride = 2, padding = 1), 8, 3);
    /// let x = Array4::<f32>::ones((1, 8, 5, 5));
    /// let grads = upconv.backward(&x, &Array4::<f32>::ones((1, 3, 9, 9)))?;
    /// assert_eq!(grads.input.shape(), &[1, 8, 5, 5]);
    /// assert_eq!(grads.weight.shape(), &[8, 3, 3, 3]);
    /// // After forward_with_output_size(&x, (10, 10)):
    /// let grads = upconv.backward(&x, &Array4::<f32>::ones((1, 3, 10, 10)))?;
    /// assert!(upconv.backward(&x, &Array4::<f32>::ones((1, 3, 11, 10))).is_err());
    /// # Ok::<(), ConvError>(())
    /// ```
    pub fn backward<S: Data<Elem = f32>, T: Data<Elem = f32>>(
        &self,
        x: &ArrayBase<S, Ix4>,
        grad_output: &ArrayBase<T, Ix4>,
    ) -> Result<Gradients, ConvError> {
        let default = self.output_shape(x.dim().into())?;
        let (n, channels, h, w) = x.dim();
        let got: [usize; 4] = grad_output.dim().into();
        backward::check_transposed_grad_output(got, default, (h, w), &G::SPEC)?;
        let size = (got[2], got[3]);

        // The convolution of `grad_output` gives the input's size, plus a row or column per
        // `stride` of output padding beyond the stride (possible when the dilation exceeds
        // the stride): those extra rows and columns are not the input's, and are dropped.
        let (conv_h, conv_w) = G::SPEC
            .output_size(size)
            .ok_or(ConvError::TooLarge { got: size })?;
        let input = if (conv_h, conv_w) == (h, w) {
            let mut input = Array4::zeros(x.raw_dim());
            self.weights
                .adjoint(Engine::conv::<G>)
                .run(grad_output, &mut input);
            input
        } else {
            let mut full = Array4::zeros((n, channels, conv_h, conv_w));
            self.weights
                .adjoint(Engine::conv::<G>)
                .run(grad_output, &mut full);
            full.slice(s![.., .., ..h, ..w]).to_owned()
        };
        // The correlation of a `Conv2d` from `out_channels` to `in_channels`, summed over
        // `x`'s grid: its weight `[in, out / groups, kh, kw]` is this layer's weight layout.
        let weight = weight_grad::correlate(
            G::SPEC,
            self.isa(),
            &grad_output.view(),
            &x.view(),
            self.weights.groups,
        );
        let bias = self.weights.bias.is_some();
        Ok(Gradients::new(input, weight, bias, &grad_output.view()))
    }
}

impl<G: Geometry> Trainable for ConvTranspose2d<G> {
    fn weight(&self) -> ArrayView4<'_, f32> {
        self.weights.weight_view()
    }

    fn bias(&self) -> Option<ArrayView1<'_, f32>> {
        self.weights.bias_view()
    }

    fn update_parameters(
        &mut self,
        update: impl FnOnce(ArrayViewMut4<'_, f32>, Option<ArrayViewMut1<'_, f32>>),
    ) {
        self.weights.update(update);
    }
}

impl<G: Geometry> Builder<ConvTranspose2d<G>> {
    /// The layer, with PyTorch's default initialisation.
    pub fn build(self) -> Result<ConvTranspose2d<G>, ConvError> {
        let s = self.settings;
        layer::check_channels(s.in_channels, s.out_channels, s.groups)?;
        let (kh, kw) = G::SPEC.kernel_size;
        let (weight, bias) =
            s.initial_parameters([s.in_channels, s.out_channels / s.groups, kh, kw]);
        ConvTranspose2d::from_weights(G::default(), weight, bias, s.groups)
    }
}

impl<G: Geometry> fmt::Debug for ConvTranspose2d<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConvTranspose2d")
            .field("geometry", &self.geometry)
            .field("in_channels", &self.in_channels())
            .field("out_channels", &self.out_channels())
            .field("groups", &self.weights.groups)
            .field("bias", &self.weights.bias.is_some())
            .finish()
    }
}
