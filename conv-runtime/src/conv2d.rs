//! `Conv2d`: PyTorch's `nn.Conv2d`, on a geometry fixed at compile time.

use std::fmt;

use ndarray::{
    Array1, Array4, ArrayBase, ArrayView1, ArrayView4, ArrayViewMut1, ArrayViewMut4, Data, DataMut,
    Ix4,
};

use crate::backward::{self, Gradients};
use crate::error::{ConvError, Operation};
use crate::layer::{self, Builder, Engine};
use crate::optim::Trainable;
use crate::weights::LayerWeights;
use crate::{Geometry, weight_grad};

/// A 2-D convolution over NCHW `f32` input, with PyTorch's `nn.Conv2d` semantics, weight
/// layout and default initialisation. The geometry (kernel size, stride, padding, dilation)
/// is a `conv!` type, so its kernels are unrolled and specialised at compile time; channel
/// counts, groups and input sizes are run-time values.
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
#[derive(Clone)]
pub struct Conv2d<G: Geometry> {
    geometry: G,
    weights: LayerWeights,
}

impl<G: Geometry> Conv2d<G> {
    /// A layer with PyTorch's default initialisation (kaiming-uniform weights, uniform bias),
    /// bias on, one group.
    ///
    /// # Panics
    ///
    /// If a channel count is zero. [`Conv2d::builder`] reports that as an error instead.
    pub fn new(geometry: G, in_channels: usize, out_channels: usize) -> Self {
        match Self::builder(geometry, in_channels, out_channels).build() {
            Ok(layer) => layer,
            Err(error) => panic!("Conv2d::new: {error}"),
        }
    }

    /// A builder for groups, bias and seed.
    pub fn builder(_geometry: G, in_channels: usize, out_channels: usize) -> Builder<Self> {
        Builder::new(in_channels, out_channels)
    }

    /// A layer with the given parameters, in PyTorch's layout, so that a trained
    /// `nn.Conv2d` loads unchanged: `weight` is `[out_channels, in_channels / groups, kh, kw]`
    /// and `bias` is `[out_channels]`.
    ///
    /// ```
    /// use conv_runtime::prelude::*;
    /// use conv_runtime::ndarray::{Array1, Array4};
    ///
    /// let weight = Array4::from_elem((8, 2, 3, 3), 0.5);
    /// let layer = Conv2d::from_weights(conv!(k = 3), weight, Some(Array1::zeros(8)), 2)?;
    /// assert_eq!((layer.in_channels(), layer.out_channels(), layer.groups()), (4, 8, 2));
    /// # Ok::<(), ConvError>(())
    /// ```
    pub fn from_weights(
        geometry: G,
        weight: Array4<f32>,
        bias: Option<Array1<f32>>,
        groups: usize,
    ) -> Result<Self, ConvError> {
        let (out_channels, in_per_group, _, _) = weight.dim();
        layer::check_channels(in_per_group * groups, out_channels, groups)?;
        layer::check_kernel(&G::SPEC, &weight)?;
        layer::check_bias(bias.as_ref(), out_channels)?;
        Ok(Conv2d {
            geometry,
            weights: LayerWeights::new(weight, bias, groups, Engine::conv::<G>),
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

    /// The weight, `[out_channels, in_channels / groups, kh, kw]` as in PyTorch.
    pub fn weight(&self) -> &Array4<f32> {
        &self.weights.weight
    }

    /// The bias, `[out_channels]`, if the layer has one.
    pub fn bias(&self) -> Option<&Array1<f32>> {
        self.weights.bias.as_ref()
    }

    /// Input channels, PyTorch's `in_channels`.
    pub fn in_channels(&self) -> usize {
        self.weights.weight.dim().1 * self.weights.groups
    }

    /// Output channels, PyTorch's `out_channels`.
    pub fn out_channels(&self) -> usize {
        self.weights.weight.dim().0
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
            Operation::Convolution,
        )
    }

    /// Convolves `x`, NCHW, any layout (views, slices with steps and permuted axes
    /// included), into a new standard-layout array.
    pub fn forward<S: Data<Elem = f32>>(
        &self,
        x: &ArrayBase<S, Ix4>,
    ) -> Result<Array4<f32>, ConvError> {
        let shape = self.output_shape(x.dim().into())?;
        let mut out = Array4::zeros(shape);
        self.weights.engine().run(x, &mut out);
        Ok(out)
    }

    /// Convolves `x` into `out`, which must have the shape [`output_shape`](Self::output_shape)
    /// gives. Allocates nothing when `out` is in standard layout.
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

    /// The gradients of a loss with respect to the input, weight and bias, given `x` (the
    /// input of the forward pass) and `grad_output`, the loss's gradient with respect to
    /// the output (the shape [`output_shape`](Self::output_shape) gives). Both may be in any
    /// layout. The values are PyTorch autograd's.
    ///
    /// The input gradient is the transposed convolution of `grad_output` with the layer's
    /// weight, at the input's size; the weight gradient is a correlation of `x` with
    /// `grad_output`, unrolled over the geometry's taps like the forward kernels; the bias
    /// gradient sums `grad_output` over the batch and space.
    ///
    /// ```
    /// use conv_runtime::prelude::*;
    /// use conv_runtime::ndarray::Array4;
    ///
    /// let layer = Conv2d::new(conv!(k = 3, stride = 2, padding = 1), 3, 8);
    /// let x = Array4::<f32>::ones((2, 3, 9, 9));
    /// let grad_output = Array4::<f32>::ones((2, 8, 5, 5));
    /// let grads = layer.backward(&x, &grad_output)?;
    /// assert_eq!(grads.input.shape(), &[2, 3, 9, 9]);
    /// assert_eq!(grads.weight.shape(), &[8, 3, 3, 3]);
    /// assert_eq!(grads.bias.unwrap().shape(), &[8]);
    /// # Ok::<(), ConvError>(())
    /// ```
    pub fn backward<S: Data<Elem = f32>, T: Data<Elem = f32>>(
        &self,
        x: &ArrayBase<S, Ix4>,
        grad_output: &ArrayBase<T, Ix4>,
    ) -> Result<Gradients, ConvError> {
        let expected = self.output_shape(x.dim().into())?;
        backward::check_grad_output(grad_output, expected)?;
        // `x`'s size is in the transposed convolution's output range for `grad_output`'s,
        // since the convolution maps it there.
        let mut input = Array4::zeros(x.raw_dim());
        self.weights
            .adjoint(Engine::transposed::<G>)
            .run(grad_output, &mut input);
        let weight = weight_grad::correlate(
            G::SPEC,
            self.isa(),
            &x.view(),
            &grad_output.view(),
            self.weights.groups,
        );
        let bias = self.weights.bias.is_some();
        Ok(Gradients::new(input, weight, bias, &grad_output.view()))
    }
}

impl<G: Geometry> Trainable for Conv2d<G> {
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

impl<G: Geometry> Builder<Conv2d<G>> {
    /// The layer, with PyTorch's default initialisation.
    pub fn build(self) -> Result<Conv2d<G>, ConvError> {
        let s = self.settings;
        layer::check_channels(s.in_channels, s.out_channels, s.groups)?;
        let (kh, kw) = G::SPEC.kernel_size;
        let (weight, bias) =
            s.initial_parameters([s.out_channels, s.in_channels / s.groups, kh, kw]);
        Conv2d::from_weights(G::default(), weight, bias, s.groups)
    }
}

impl<G: Geometry> fmt::Debug for Conv2d<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conv2d")
            .field("geometry", &self.geometry)
            .field("in_channels", &self.in_channels())
            .field("out_channels", &self.out_channels())
            .field("groups", &self.weights.groups)
            .field("bias", &self.weights.bias.is_some())
            .finish()
    }
}
