//! The one layer both public faces are: [`Layer`], generic over the geometry and the
//! [`Direction`]. Everything the two directions share is written here once: construction
//! and its checks, the instruction set, the accessors, `forward`, `forward_into`,
//! `backward`'s checks and plumbing, training hooks and `Debug`. What differs (weight
//! layout, kernels, the backward pass itself) is the direction's [`Rules`].

mod builder;
mod checks;
mod direction;
mod init;
mod parameters;

use std::fmt;
use std::marker::PhantomData;

use ndarray::{
    Array1, Array4, ArrayBase, ArrayView1, ArrayView4, ArrayViewMut1, ArrayViewMut4, Data, DataMut,
    Ix4,
};

pub use builder::Builder;
pub(crate) use checks::{
    check_allocatable, check_grad_output, check_transposed_grad_output, output_shape,
};
pub use direction::{Accepts, Direction, Rules};
pub use init::SplitMix64;
pub(crate) use parameters::{Pack, Parameters};

use crate::isa::Isa;
use crate::memory::border;
use crate::shape::error::ConvError;
use crate::shape::geometry::Geometry;
use crate::train::gradients::Gradients;
use crate::train::optim::Trainable;

/// A 2-D convolution layer of geometry `G` in direction `D`, over NCHW `f32` input, with
/// PyTorch's semantics, weight layouts and default initialisation. Use it by its names:
/// [`Conv2d`](crate::Conv2d) (`D` = [`Convolution`](crate::Convolution)) and
/// [`ConvTranspose2d`](crate::ConvTranspose2d) (`D` = [`Transposed`](crate::Transposed)).
///
/// The geometry is a `conv!` type, so its kernels are unrolled and specialised at compile
/// time; channel counts, groups and input sizes are run-time values.
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
pub struct Layer<G: Geometry, D: Direction> {
    geometry: G,
    parameters: Parameters,
    direction: PhantomData<D>,
}

// The constructors: a layer exists only for a geometry its direction accepts.
impl<G: Geometry, D: Direction + Accepts<G>> Layer<G, D> {
    /// A layer with PyTorch's default initialisation (kaiming-uniform weights, uniform bias),
    /// bias on, one group.
    ///
    /// # Panics
    ///
    /// If a channel count is zero. [`builder`](Self::builder) reports that as an error
    /// instead.
    pub fn new(geometry: G, in_channels: usize, out_channels: usize) -> Self {
        match Self::builder(geometry, in_channels, out_channels).build() {
            Ok(layer) => layer,
            Err(error) => panic!("{}::new: {error}", D::NAME),
        }
    }

    /// A builder for groups, bias, seed and instruction set.
    pub fn builder(_geometry: G, in_channels: usize, out_channels: usize) -> Builder<Self> {
        Builder::new(in_channels, out_channels)
    }

    /// A layer with the given parameters, in PyTorch's layout, so that a trained layer loads
    /// unchanged: `weight` is `[out_channels, in_channels / groups, kh, kw]` for a
    /// [`Conv2d`](crate::Conv2d) and `[in_channels, out_channels / groups, kh, kw]` for a
    /// [`ConvTranspose2d`](crate::ConvTranspose2d); `bias` is `[out_channels]`.
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
        Self::checked(geometry, weight, bias, groups, Isa::default_for_process())
    }

    fn checked(
        geometry: G,
        weight: Array4<f32>,
        bias: Option<Array1<f32>>,
        groups: usize,
        isa: Isa,
    ) -> Result<Self, ConvError> {
        // With zero groups the weight's layout does not say how many channels the layer
        // has: the error names the counts of one group.
        let (in_channels, out_channels) = D::channels(&weight, groups.max(1));
        checks::check_channels(in_channels, out_channels, groups)?;
        checks::check_kernel(&G::SPEC, &weight)?;
        checks::check_bias(bias.as_ref(), out_channels)?;
        checks::check_isa(isa)?;
        Ok(Layer {
            geometry,
            parameters: Parameters::new(weight, bias, groups, isa, D::pack::<G>()),
            direction: PhantomData,
        })
    }
}

impl<G: Geometry, D: Direction> Layer<G, D> {
    /// The same layer with its kernels on `isa`, or why not: the set is not
    /// [available](Isa::is_available) here.
    ///
    /// ```
    /// use conv_runtime::prelude::*;
    /// use conv_runtime::Isa;
    ///
    /// let layer = Conv2d::new(conv!(k = 3), 2, 4).with_isa(Isa::Portable)?;
    /// assert_eq!(layer.isa(), Isa::Portable);
    /// # Ok::<(), ConvError>(())
    /// ```
    pub fn with_isa(self, isa: Isa) -> Result<Self, ConvError> {
        checks::check_isa(isa)?;
        Ok(Layer {
            geometry: self.geometry,
            parameters: self.parameters.on_isa(isa),
            direction: PhantomData,
        })
    }

    /// The instruction set the layer's kernels use, chosen when it was built.
    pub fn isa(&self) -> Isa {
        self.parameters.isa()
    }

    /// The geometry the layer was made with.
    pub fn geometry(&self) -> G {
        self.geometry
    }

    /// The weight, in PyTorch's layout for the layer (see
    /// [`from_weights`](Self::from_weights)).
    pub fn weight(&self) -> &Array4<f32> {
        &self.parameters.weight
    }

    /// The bias, `[out_channels]`, if the layer has one.
    pub fn bias(&self) -> Option<&Array1<f32>> {
        self.parameters.bias.as_ref()
    }

    /// Input channels, PyTorch's `in_channels`.
    pub fn in_channels(&self) -> usize {
        self.channels().0
    }

    /// Output channels, PyTorch's `out_channels`.
    pub fn out_channels(&self) -> usize {
        self.channels().1
    }

    fn channels(&self) -> (usize, usize) {
        D::channels(&self.parameters.weight, self.parameters.groups)
    }

    /// Channel groups, PyTorch's `groups`.
    pub fn groups(&self) -> usize {
        self.parameters.groups
    }

    /// The output shape `[n, out_channels, h, w]` for an input of shape `[n, c, h, w]`, or
    /// why that input is refused.
    pub fn output_shape(&self, input: [usize; 4]) -> Result<[usize; 4], ConvError> {
        let (in_channels, out_channels) = self.channels();
        checks::output_shape(input, in_channels, out_channels, &G::SPEC, D::OPERATION)
    }

    /// Runs the layer on `x`, NCHW, any layout (views, slices with steps and permuted axes
    /// included), into a new standard-layout array.
    pub fn forward<S: Data<Elem = f32>>(
        &self,
        x: &ArrayBase<S, Ix4>,
    ) -> Result<Array4<f32>, ConvError> {
        let shape = self.output_shape(x.dim().into())?;
        let engine = self.parameters.engine();
        Ok(if const { G::SPEC.pads_by_copy() } {
            border::with_padded(&G::SPEC, &x.view(), |padded| engine.run_new(padded, shape))
        } else {
            engine.run_new(x, shape)
        })
    }

    /// Runs the layer on `x` into `out`, which must have the shape
    /// [`output_shape`](Self::output_shape) gives. Allocates nothing when `out` is in standard
    /// layout.
    pub fn forward_into<S: Data<Elem = f32>, T: DataMut<Elem = f32>>(
        &self,
        x: &ArrayBase<S, Ix4>,
        out: &mut ArrayBase<T, Ix4>,
    ) -> Result<(), ConvError> {
        let shape = self.output_shape(x.dim().into())?;
        checks::check_output(out, shape)?;
        let engine = self.parameters.engine();
        if const { G::SPEC.pads_by_copy() } {
            border::with_padded(&G::SPEC, &x.view(), |padded| engine.run(padded, out));
        } else {
            engine.run(x, out);
        }
        Ok(())
    }

    /// The gradients of a loss with respect to the input, weight and bias, given `x` (the
    /// input of the forward pass) and `grad_output`, the loss's gradient with respect to
    /// the output. Both may be in any layout. The values are PyTorch autograd's.
    ///
    /// The input gradient is the adjoint operation (the transposed convolution of a
    /// convolution's weight, and the reverse) applied to `grad_output`; the weight gradient
    /// is a correlation of `x` with `grad_output` over the geometry's taps; the bias
    /// gradient sums `grad_output` over the batch and space. `grad_output` has the shape
    /// [`output_shape`](Self::output_shape) gives, or, for a transposed convolution, any
    /// output size its `forward_with_output_size` accepts.
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
        // Named here, where a program calls `backward`, so that only such programs compile
        // the adjoint direction's kernels.
        let adjoint = D::pack_adjoint::<G>();
        D::backward(
            &G::SPEC,
            &self.parameters,
            adjoint,
            &x.view(),
            &grad_output.view(),
        )
    }

    /// The parameters, for the direction's own methods.
    pub(crate) fn parameters(&self) -> &Parameters {
        &self.parameters
    }
}

impl<G: Geometry, D: Direction> Trainable for Layer<G, D> {
    type Dim = Ix4;

    fn weight(&self) -> ArrayView4<'_, f32> {
        self.parameters.weight_view()
    }

    fn bias(&self) -> Option<ArrayView1<'_, f32>> {
        self.parameters.bias_view()
    }

    fn update_parameters(
        &mut self,
        update: impl FnOnce(ArrayViewMut4<'_, f32>, Option<ArrayViewMut1<'_, f32>>),
    ) {
        self.parameters.update(update);
    }
}

impl<G: Geometry, D: Direction + Accepts<G>> Builder<Layer<G, D>> {
    /// The layer, with PyTorch's default initialisation.
    pub fn build(self) -> Result<Layer<G, D>, ConvError> {
        let s = self.settings;
        checks::check_channels(s.in_channels, s.out_channels, s.groups)?;
        let isa = s.isa.unwrap_or_else(Isa::default_for_process);
        checks::check_isa(isa)?;
        let shape = D::weight_shape(s.in_channels, s.out_channels, s.groups, G::SPEC.kernel_size);
        let (weight, bias) = s.initial_parameters(shape);
        Layer::checked(G::default(), weight, bias, s.groups, isa)
    }
}

impl<G: Geometry, D: Direction> fmt::Debug for Layer<G, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(D::NAME)
            .field("geometry", &self.geometry)
            .field("in_channels", &self.in_channels())
            .field("out_channels", &self.out_channels())
            .field("groups", &self.parameters.groups)
            .field("bias", &self.parameters.bias.is_some())
            .field("isa", &self.isa())
            .finish()
    }
}
