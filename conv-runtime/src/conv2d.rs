//! `Conv2d`: PyTorch's `nn.Conv2d`, on a geometry fixed at compile time.

use std::fmt;
use std::sync::OnceLock;

use ndarray::{
    Array1, Array4, ArrayBase, ArrayView1, ArrayView4, ArrayViewMut1, ArrayViewMut4, Data, DataMut,
    Ix4,
};

use crate::backward::{self, Gradients};
use crate::error::{ConvError, Operation};
use crate::layer::{self, Builder, Engine};
use crate::optim::Trainable;
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
    weight: Array4<f32>,
    bias: Option<Array1<f32>>,
    groups: usize,
    engine: Engine,
    /// The transposed convolution with the same weight, which computes the input gradient.
    /// Built on the first `backward`, not at construction: a layer used only for inference
    /// never pays for a second packed copy of its weights.
    adjoint: OnceLock<Engine>,
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
        let engine = Engine::conv::<G>(&weight, bias.as_ref(), groups);
        Ok(Conv2d {
            geometry,
            weight,
            bias,
            groups,
            engine,
            adjoint: OnceLock::new(),
        })
    }

    /// The instruction set the layer's kernels use, chosen when it was built (see
    /// [`Isa::force`](crate::Isa::force)).
    pub fn isa(&self) -> crate::Isa {
        self.engine.isa()
    }

    /// The geometry the layer was made with.
    pub fn geometry(&self) -> G {
        self.geometry
    }

    /// The weight, `[out_channels, in_channels / groups, kh, kw]` as in PyTorch.
    pub fn weight(&self) -> &Array4<f32> {
        &self.weight
    }

    /// The bias, `[out_channels]`, if the layer has one.
    pub fn bias(&self) -> Option<&Array1<f32>> {
        self.bias.as_ref()
    }

    /// Input channels, PyTorch's `in_channels`.
    pub fn in_channels(&self) -> usize {
        self.weight.dim().1 * self.groups
    }

    /// Output channels, PyTorch's `out_channels`.
    pub fn out_channels(&self) -> usize {
        self.weight.dim().0
    }

    /// Channel groups, PyTorch's `groups`.
    pub fn groups(&self) -> usize {
        self.groups
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
        self.engine.run(x, &mut out);
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
        self.engine.run(x, out);
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
        self.adjoint().run(grad_output, &mut input);
        let weight =
            weight_grad::correlate::<G>(self.isa(), &x.view(), &grad_output.view(), self.groups);
        let bias = self
            .bias
            .as_ref()
            .map(|_| backward::bias_grad(&grad_output.view()));
        Ok(Gradients {
            input,
            weight,
            bias,
        })
    }

    /// The engine of the transposed convolution with this weight: a `Conv2d` weight
    /// `[out, in / groups, kh, kw]` is a `ConvTranspose2d` weight from `out` to `in`
    /// channels. On the layer's instruction set, without bias.
    fn adjoint(&self) -> &Engine {
        self.adjoint.get_or_init(|| {
            self.isa()
                .force(|| Engine::transposed::<G>(&self.weight, None, self.groups))
        })
    }
}

impl<G: Geometry> Trainable for Conv2d<G> {
    fn weight(&self) -> ArrayView4<'_, f32> {
        self.weight.view()
    }

    fn bias(&self) -> Option<ArrayView1<'_, f32>> {
        self.bias.as_ref().map(|bias| bias.view())
    }

    fn update_parameters(
        &mut self,
        update: impl FnOnce(ArrayViewMut4<'_, f32>, Option<ArrayViewMut1<'_, f32>>),
    ) {
        update(
            self.weight.view_mut(),
            self.bias.as_mut().map(|bias| bias.view_mut()),
        );
        // The kernels read packed copies: repack on the same instruction set.
        self.engine = self
            .isa()
            .force(|| Engine::conv::<G>(&self.weight, self.bias.as_ref(), self.groups));
        self.adjoint = OnceLock::new();
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
            .field("groups", &self.groups)
            .field("bias", &self.bias.is_some())
            .finish()
    }
}
