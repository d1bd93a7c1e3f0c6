//! `Conv1d` and `ConvTranspose1d`: PyTorch's `nn.Conv1d` and `nn.ConvTranspose1d`, on a
//! `conv1d!` geometry. A 1-D layer is the 2-D layer of the same direction on an input one
//! row high: `[n, c, l]` is viewed as `[n, c, 1, l]` (no copy), the geometry is `k = (1, k)`,
//! and the row kernels, which vectorise along a row, run the whole length as one long row.
//! This file only changes the rank of what goes in and comes out, and says errors in
//! lengths rather than `1 x l` sizes.

use std::fmt;

use ndarray::{
    Array1, Array3, ArrayBase, ArrayView1, ArrayView3, ArrayViewMut1, ArrayViewMut3, Axis, Data,
    DataMut, Ix3,
};

use crate::isa::Isa;
use crate::layer_core::{Accepts, Builder, Direction, Layer};
use crate::layers::batch_norm::BatchNorm1d;
use crate::layers::conv_transpose2d::Transposed;
use crate::layers::conv2d::Convolution;
use crate::shape::error::{ConvError, Operation};
use crate::shape::geometry::{Geometry, Geometry1d};
use crate::train::gradients::Gradients;
use crate::train::optim::Trainable;

/// A 1-D convolution over `[n, c, l]` `f32` input, with PyTorch's `nn.Conv1d` semantics,
/// weight layout (`[out_channels, in_channels / groups, k]`) and default initialisation, on
/// a [`conv1d!`](crate::conv1d) geometry. Its methods are [`Layer1d`]'s.
///
/// ```
/// use conv_runtime::prelude::*;
/// use conv_runtime::ndarray::Array3;
///
/// // PyTorch: nn.Conv1d(64, 64, kernel_size=2, dilation=8) on F.pad(x, (8, 0))
/// let layer = Conv1d::new(conv1d!(k = 2, dilation = 8, padding = causal), 64, 64);
/// let x = Array3::<f32>::ones((1, 64, 1000));
/// let y = layer.forward(&x)?;
/// assert_eq!(y.shape(), &[1, 64, 1000]);
/// # Ok::<(), ConvError>(())
/// ```
pub type Conv1d<G> = Layer1d<G, Convolution>;

/// A 1-D transposed convolution over `[n, c, l]` `f32` input, with PyTorch's
/// `nn.ConvTranspose1d` semantics, weight layout (`[in_channels, out_channels / groups, k]`)
/// and default initialisation, on a [`conv1d!`](crate::conv1d) geometry. Its methods are
/// [`Layer1d`]'s, and [`forward_with_output_size`](Layer1d::forward_with_output_size).
///
/// ```
/// use conv_runtime::prelude::*;
/// use conv_runtime::ndarray::Array3;
///
/// // PyTorch: nn.ConvTranspose1d(16, 8, kernel_size=4, stride=2, padding=1)
/// let up = ConvTranspose1d::new(conv1d!(k = 4, stride = 2, padding = 1), 16, 8);
/// let y = up.forward(&Array3::<f32>::ones((2, 16, 50)))?;
/// assert_eq!(y.shape(), &[2, 8, 100]);
/// # Ok::<(), ConvError>(())
/// ```
pub type ConvTranspose1d<G> = Layer1d<G, Transposed>;

/// A 1-D convolution layer of geometry `G` in direction `D`, over `[n, c, l]` `f32` input.
/// Use it by its names, [`Conv1d`] and [`ConvTranspose1d`]. It runs the 2-D [`Layer`] of the
/// same geometry (one row of taps) on the input viewed one row high, so it has the same
/// kernels, threads, instruction sets and numbers.
#[derive(Clone)]
pub struct Layer1d<G: Geometry, D: Direction> {
    rows: Layer<G, D>,
}

// The constructors: only for `conv1d!` geometries, and those the direction accepts.
impl<G: Geometry1d, D: Direction + Accepts<G>> Layer1d<G, D> {
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
            Err(error) => panic!("{}::new: {error}", name::<D>()),
        }
    }

    /// A builder for groups, bias, seed and instruction set.
    pub fn builder(_geometry: G, in_channels: usize, out_channels: usize) -> Builder<Self> {
        Builder::new(in_channels, out_channels)
    }

    /// A layer with the given parameters, in PyTorch's layout, so that a trained layer loads
    /// unchanged: `weight` is `[out_channels, in_channels / groups, k]` for a [`Conv1d`] and
    /// `[in_channels, out_channels / groups, k]` for a [`ConvTranspose1d`]; `bias` is
    /// `[out_channels]`.
    ///
    /// ```
    /// use conv_runtime::prelude::*;
    /// use conv_runtime::ndarray::{Array1, Array3};
    ///
    /// let weight = Array3::from_elem((8, 2, 3), 0.5);
    /// let layer = Conv1d::from_weights(conv1d!(k = 3), weight, Some(Array1::zeros(8)), 2)?;
    /// assert_eq!((layer.in_channels(), layer.out_channels(), layer.groups()), (4, 8, 2));
    /// # Ok::<(), ConvError>(())
    /// ```
    pub fn from_weights(
        geometry: G,
        weight: Array3<f32>,
        bias: Option<Array1<f32>>,
        groups: usize,
    ) -> Result<Self, ConvError> {
        Self::assert_one_row();
        let rows = Layer::from_weights(geometry, weight.insert_axis(Axis(2)), bias, groups)
            .map_err(in_lengths)?;
        Ok(Layer1d { rows })
    }

    /// A hand-written `Geometry1d` impl could name a geometry of several rows, which the
    /// row view cannot run: refused at compile time.
    fn assert_one_row() {
        const {
            assert!(
                G::SPEC.is_one_dimensional(),
                "a `Geometry1d` must have one row of taps and no padding or stride across rows"
            )
        };
    }
}

impl<G: Geometry1d, D: Direction + Accepts<G>> Builder<Layer1d<G, D>> {
    /// The layer, with PyTorch's default initialisation.
    pub fn build(self) -> Result<Layer1d<G, D>, ConvError> {
        Layer1d::<G, D>::assert_one_row();
        let rows = self.retarget::<Layer<G, D>>().build().map_err(in_lengths)?;
        Ok(Layer1d { rows })
    }
}

impl<G: Geometry, D: Direction> Layer1d<G, D> {
    /// The same layer with its kernels on `isa`, or why not: the set is not
    /// [available](Isa::is_available) here.
    pub fn with_isa(self, isa: Isa) -> Result<Self, ConvError> {
        Ok(Layer1d {
            rows: self.rows.with_isa(isa)?,
        })
    }

    /// The instruction set the layer's kernels use, chosen when it was built.
    pub fn isa(&self) -> Isa {
        self.rows.isa()
    }

    /// The geometry the layer was made with.
    pub fn geometry(&self) -> G {
        self.rows.geometry()
    }

    /// The weight, in PyTorch's layout for the layer (see
    /// [`from_weights`](Self::from_weights)).
    pub fn weight(&self) -> ArrayView3<'_, f32> {
        self.rows.weight().view().remove_axis(Axis(2))
    }

    /// The bias, `[out_channels]`, if the layer has one.
    pub fn bias(&self) -> Option<&Array1<f32>> {
        self.rows.bias()
    }

    /// Input channels, PyTorch's `in_channels`.
    pub fn in_channels(&self) -> usize {
        self.rows.in_channels()
    }

    /// Output channels, PyTorch's `out_channels`.
    pub fn out_channels(&self) -> usize {
        self.rows.out_channels()
    }

    /// Channel groups, PyTorch's `groups`.
    pub fn groups(&self) -> usize {
        self.rows.groups()
    }

    /// The 2-D layer this one runs, on inputs one row high.
    pub fn as_2d(&self) -> &Layer<G, D> {
        &self.rows
    }

    /// The output shape `[n, out_channels, l]` for an input of shape `[n, c, l]`, or why
    /// that input is refused.
    pub fn output_shape(&self, [n, c, l]: [usize; 3]) -> Result<[usize; 3], ConvError> {
        let [n, c, _, l] = self.rows.output_shape([n, c, 1, l]).map_err(in_lengths)?;
        Ok([n, c, l])
    }

    /// Runs the layer on `x`, `[n, c, l]`, any layout (views, slices with steps and
    /// permuted axes included), into a new standard-layout array.
    pub fn forward<S: Data<Elem = f32>>(
        &self,
        x: &ArrayBase<S, Ix3>,
    ) -> Result<Array3<f32>, ConvError> {
        let y = self.rows.forward(&one_row(x)).map_err(in_lengths)?;
        Ok(y.remove_axis(Axis(2)))
    }

    /// Runs the layer on `x` into `out`, which must have the shape
    /// [`output_shape`](Self::output_shape) gives. Allocates nothing when `out` is in standard
    /// layout.
    pub fn forward_into<S: Data<Elem = f32>, T: DataMut<Elem = f32>>(
        &self,
        x: &ArrayBase<S, Ix3>,
        out: &mut ArrayBase<T, Ix3>,
    ) -> Result<(), ConvError> {
        let mut out = out.view_mut().insert_axis(Axis(2));
        self.rows
            .forward_into(&one_row(x), &mut out)
            .map_err(in_lengths)
    }

    /// The gradients of a loss with respect to the input, weight and bias, given `x` (the
    /// input of the forward pass) and `grad_output`, PyTorch autograd's values (see
    /// [`Layer::backward`]).
    ///
    /// ```
    /// use conv_runtime::prelude::*;
    /// use conv_runtime::ndarray::Array3;
    ///
    /// let layer = Conv1d::new(conv1d!(k = 3, stride = 2, padding = 1), 3, 8);
    /// let x = Array3::<f32>::ones((2, 3, 9));
    /// let grads = layer.backward(&x, &Array3::<f32>::ones((2, 8, 5)))?;
    /// assert_eq!(grads.input.shape(), &[2, 3, 9]);
    /// assert_eq!(grads.weight.shape(), &[8, 3, 3]);
    /// # Ok::<(), ConvError>(())
    /// ```
    pub fn backward<S: Data<Elem = f32>, T: Data<Elem = f32>>(
        &self,
        x: &ArrayBase<S, Ix3>,
        grad_output: &ArrayBase<T, Ix3>,
    ) -> Result<Gradients<Ix3>, ConvError> {
        let gradients = self
            .rows
            .backward(&one_row(x), &one_row(grad_output))
            .map_err(in_lengths)?;
        Ok(gradients.without_rows())
    }
}

impl<G: Geometry, D: Direction + Accepts<G>> Layer1d<G, D> {
    /// This layer followed by `bn`, as one layer: see [`Layer::fold_batch_norm`]. Refused
    /// when `bn` has another number of features than the layer has output channels.
    pub fn fold_batch_norm(&self, bn: &BatchNorm1d) -> Result<Self, ConvError> {
        Ok(Layer1d {
            rows: self.rows.fold_batch_norm(bn.as_2d())?,
        })
    }
}

impl<G: Geometry> ConvTranspose1d<G> {
    /// As [`forward`](Layer1d::forward), with PyTorch's `output_size` argument: a strided
    /// transposed convolution maps several input lengths to one output length, and this
    /// picks the output length back, from the smallest to `stride - 1` more (the
    /// geometry's `output_padding` is ignored, as in PyTorch).
    ///
    /// ```
    /// use conv_runtime::prelude::*;
    /// use conv_runtime::ndarray::Array3;
    ///
    /// let up = ConvTranspose1d::new(conv1d!(k = 3, stride = 2, padding = 1), 4, 4);
    /// let x = Array3::<f32>::zeros((1, 4, 8));
    /// assert_eq!(up.forward(&x)?.shape(), &[1, 4, 15]);
    /// assert_eq!(up.forward_with_output_size(&x, 16)?.shape(), &[1, 4, 16]);
    /// assert!(up.forward_with_output_size(&x, 17).is_err());
    /// # Ok::<(), ConvError>(())
    /// ```
    pub fn forward_with_output_size<S: Data<Elem = f32>>(
        &self,
        x: &ArrayBase<S, Ix3>,
        output_length: usize,
    ) -> Result<Array3<f32>, ConvError> {
        let y = self
            .rows
            .forward_with_output_size(&one_row(x), (1, output_length))
            .map_err(in_lengths)?;
        Ok(y.remove_axis(Axis(2)))
    }
}

impl<G: Geometry, D: Direction> Trainable for Layer1d<G, D> {
    type Dim = Ix3;

    fn weight(&self) -> ArrayView3<'_, f32> {
        Layer1d::weight(self)
    }

    fn bias(&self) -> Option<ArrayView1<'_, f32>> {
        self.rows.bias().map(|bias| bias.view())
    }

    fn update_parameters(
        &mut self,
        update: impl FnOnce(ArrayViewMut3<'_, f32>, Option<ArrayViewMut1<'_, f32>>),
    ) {
        self.rows
            .update_parameters(|weight, bias| update(weight.remove_axis(Axis(2)), bias));
    }
}

impl<G: Geometry, D: Direction> fmt::Debug for Layer1d<G, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(name::<D>())
            .field("geometry", &self.rows.geometry())
            .field("in_channels", &self.in_channels())
            .field("out_channels", &self.out_channels())
            .field("groups", &self.groups())
            .field("bias", &self.bias().is_some())
            .field("isa", &self.isa())
            .finish()
    }
}

/// The PyTorch class a 1-D layer of direction `D` mirrors.
fn name<D: Direction>() -> &'static str {
    match D::OPERATION {
        Operation::Convolution => "Conv1d",
        Operation::TransposedConvolution => "ConvTranspose1d",
    }
}

/// `[n, c, l]` as `[n, c, 1, l]`, without a copy.
fn one_row<S: Data<Elem = f32>>(x: &ArrayBase<S, Ix3>) -> ndarray::ArrayView4<'_, f32> {
    x.view().insert_axis(Axis(2))
}

/// A 2-D layer's error about an input one row high, said in lengths and 3-D shapes: the row
/// axis is always 1 there, so only the length can be wrong.
fn in_lengths(error: ConvError) -> ConvError {
    let without_rows = |shape: Vec<usize>| -> Vec<usize> {
        match shape.as_slice() {
            [n, c, 1, l] => vec![*n, *c, *l],
            _ => shape,
        }
    };
    match error {
        ConvError::InputTooSmall {
            operation,
            min,
            got,
        } => ConvError::InputTooShort {
            operation,
            min: min.1,
            got: got.1,
        },
        ConvError::PaddingTooLarge {
            mode,
            padding,
            min,
            got,
        } => ConvError::PaddingTooLong {
            mode,
            padding: padding.1,
            min: min.1,
            got: got.1,
        },
        ConvError::KernelSize {
            expected,
            got: [a, b, _, k],
        } => ConvError::KernelLength {
            expected: expected.1,
            got: [a, b, k],
        },
        ConvError::OutputSize {
            requested,
            min,
            max,
        } => ConvError::OutputLength {
            requested: requested.1,
            min: min.1,
            max: max.1,
        },
        ConvError::OutputShape { expected, got } => ConvError::OutputShape {
            expected: without_rows(expected),
            got: without_rows(got),
        },
        ConvError::GradOutputShape { expected, got } => ConvError::GradOutputShape {
            expected: without_rows(expected),
            got: without_rows(got),
        },
        other => other,
    }
}
