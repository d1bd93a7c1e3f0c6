//! Naive convolution and transposed convolution, straight from their definitions, with the
//! geometry as a run-time value.
//!
//! They are the oracle the generated kernels are tested against and the baseline they are
//! benchmarked against: simple enough to check by eye, slow (a few GFLOP/s at best), and
//! accumulating in `f64` so their own rounding error is negligible. The transposed
//! convolution is written in its *scatter* form (each input element spreads over the
//! outputs it reaches), independent of the phase decomposition the kernels use.
//!
//! The backward passes ([`conv2d_backward`], [`conv_transpose2d_backward`]) follow the
//! definitions the same way: each gradient a sum over the products that the forward pass
//! forms. As in PyTorch, a weight-gradient product that reads the zero padding is formed
//! (so an infinite output gradient there gives NaN), and input elements the convolution never
//! reaches are never multiplied.
//!
//! The arguments are checked as the layers check theirs, with the same [`ConvError`]s, so
//! that a test can compare a layer's refusals with the reference's too. Those checks and the
//! shape arithmetic behind them (output sizes, smallest inputs, the sizes `output_size` may
//! choose) are the reference's own, written again from PyTorch's formulas in `checks.rs`
//! rather than taken from the layers or from [`GeometrySpec`]'s methods: an oracle that
//! shares the code it checks cannot catch that code's mistakes, and would agree with a wrong
//! output size or a wrong refusal every time. Only the plain data crosses over: the
//! geometry's parameters, the error type and the [`Gradients`] struct. A [`GeometrySpec`] no
//! `conv!` makes (a kernel size, stride or dilation of 0) is not a convolution, and panics.
//!
//! Each function takes any array or view and hands views to a function of views, which does
//! the work: that one is compiled once, in this crate, at this crate's optimisation, where a
//! function generic over the array type is compiled again in every crate that calls it, at
//! that crate's. The tests, built at opt-level 1, spent most of their time in the
//! reference's indexing, not inlined there (`two_tap_matches_the_reference`: 71 s, 95% of
//! its samples in `reference::conv_transpose2d` and ndarray's index checks, model 207 Xeon,
//! `perf record`).
//!
//! ```
//! use conv_runtime::prelude::*;
//! use conv_runtime::reference;
//! use conv_runtime::ndarray::Array4;
//!
//! let layer = Conv2d::builder(conv!(k = 3, dilation = 2, padding = 2), 2, 4).seed(1).build()?;
//! let x = Array4::from_shape_fn((1, 2, 9, 7), |(_, c, h, w)| (c + h * w) as f32 / 10.0);
//! let naive = reference::conv2d(&x, layer.weight(), layer.bias(), &layer.geometry().spec(), 1)?;
//! let fast = layer.forward(&x)?;
//! assert!(fast.iter().zip(&naive).all(|(a, b)| (a - b).abs() < 1e-4));
//! # Ok::<(), ConvError>(())
//! ```

use ndarray::{Array1, Array4, ArrayBase, ArrayView4, Axis, Data, Ix4};

use crate::shape::error::{ConvError, Operation};
use crate::shape::geometry::{GeometrySpec, PaddingMode};
use crate::train::gradients::Gradients;

mod checks;

/// The convolution of `x` (NCHW) with `weight` (`[out, in / groups, kh, kw]`) and `bias`.
pub fn conv2d<S: Data<Elem = f32>>(
    x: &ArrayBase<S, Ix4>,
    weight: &Array4<f32>,
    bias: Option<&Array1<f32>>,
    spec: &GeometrySpec,
    groups: usize,
) -> Result<Array4<f32>, ConvError> {
    conv2d_of_views(x.view(), weight, bias, spec, groups)
}

/// [`conv2d`] of views: compiled once, in this crate, where the callers' generic
/// instances were compiled in each caller (see the module's notes).
fn conv2d_of_views(
    x: ArrayView4<f32>,
    weight: &Array4<f32>,
    bias: Option<&Array1<f32>>,
    spec: &GeometrySpec,
    groups: usize,
) -> Result<Array4<f32>, ConvError> {
    let operation = Operation::Convolution;
    let channels = checks::parameters(operation, spec, weight, bias, groups)?;
    let shape = checks::output_shape(operation, spec, x.dim().into(), channels)?;
    let (_, _, in_h, in_w) = x.dim();
    let mut sums = Array4::<f64>::zeros(shape);
    let products = Products::of_convolution(spec, groups, weight.dim(), shape, (in_h, in_w));
    products.for_each(|p| {
        if let Some((iy, ix)) = p.reached {
            sums[[p.image, p.grid_channel, p.grid.0, p.grid.1]] +=
                f64::from(weight[p.weight]) * f64::from(x[[p.image, p.channel, iy, ix]]);
        }
    });
    Ok(with_bias(&sums, bias))
}

/// The transposed convolution of `x` (NCHW) with `weight` (`[in, out / groups, kh, kw]`) and
/// `bias`. `output_size` is PyTorch's argument of that name, refused when the input cannot
/// give that size; `None` uses the geometry's `output_padding`.
pub fn conv_transpose2d<S: Data<Elem = f32>>(
    x: &ArrayBase<S, Ix4>,
    weight: &Array4<f32>,
    bias: Option<&Array1<f32>>,
    spec: &GeometrySpec,
    groups: usize,
    output_size: Option<(usize, usize)>,
) -> Result<Array4<f32>, ConvError> {
    conv_transpose2d_of_views(x.view(), weight, bias, spec, groups, output_size)
}

/// [`conv_transpose2d`] of views: compiled once, in this crate, where the callers' generic
/// instances were compiled in each caller (see the module's notes).
fn conv_transpose2d_of_views(
    x: ArrayView4<f32>,
    weight: &Array4<f32>,
    bias: Option<&Array1<f32>>,
    spec: &GeometrySpec,
    groups: usize,
    output_size: Option<(usize, usize)>,
) -> Result<Array4<f32>, ConvError> {
    let operation = Operation::TransposedConvolution;
    let channels = checks::parameters(operation, spec, weight, bias, groups)?;
    let [batch, out_channels, mut out_h, mut out_w] =
        checks::output_shape(operation, spec, x.dim().into(), channels)?;
    if let Some(size) = output_size {
        let (_, _, in_h, in_w) = x.dim();
        checks::check_output_size(spec, (in_h, in_w), size)?;
        checks::representable([batch, out_channels, size.0, size.1], (in_h, in_w))?;
        (out_h, out_w) = size;
    }
    let mut sums = Array4::<f64>::zeros((batch, out_channels, out_h, out_w));
    let products = Products::of_transposed(spec, groups, weight.dim(), x.dim(), (out_h, out_w));
    products.for_each(|p| {
        if let Some((oy, ox)) = p.reached {
            sums[[p.image, p.channel, oy, ox]] +=
                f64::from(x[[p.image, p.grid_channel, p.grid.0, p.grid.1]])
                    * f64::from(weight[p.weight]);
        }
    });
    Ok(with_bias(&sums, bias))
}

/// The gradients of the convolution `conv2d(x, weight, bias, spec, groups)` for the output
/// gradient `grad_output`: with respect to `x`, to `weight` and, when `bias` is true, to the
/// bias.
///
/// ```
/// use conv_runtime::prelude::*;
/// use conv_runtime::reference;
/// use conv_runtime::ndarray::Array4;
///
/// let layer = Conv2d::builder(conv!(k = 3, stride = 2), 2, 4).seed(1).build()?;
/// let x = Array4::from_shape_fn((1, 2, 9, 8), |(_, c, h, w)| (c + h * w) as f32 / 10.0);
/// let grad_output = Array4::from_shape_fn((1, 4, 4, 3), |(_, c, h, w)| (c * h + w) as f32);
/// let naive = reference::conv2d_backward(&x, layer.weight(), true, &grad_output, &layer.geometry().spec(), 1)?;
/// let fast = layer.backward(&x, &grad_output)?;
/// assert!(fast.weight.iter().zip(&naive.weight).all(|(a, b)| (a - b).abs() < 1e-3));
/// assert!(fast.input.iter().zip(&naive.input).all(|(a, b)| (a - b).abs() < 1e-4));
/// # Ok::<(), ConvError>(())
/// ```
pub fn conv2d_backward<S: Data<Elem = f32>, T: Data<Elem = f32>>(
    x: &ArrayBase<S, Ix4>,
    weight: &Array4<f32>,
    bias: bool,
    grad_output: &ArrayBase<T, Ix4>,
    spec: &GeometrySpec,
    groups: usize,
) -> Result<Gradients, ConvError> {
    conv2d_backward_of_views(x.view(), weight, bias, grad_output.view(), spec, groups)
}

/// [`conv2d_backward`] of views: compiled once, in this crate, where the callers' generic
/// instances were compiled in each caller (see the module's notes).
fn conv2d_backward_of_views(
    x: ArrayView4<f32>,
    weight: &Array4<f32>,
    bias: bool,
    grad_output: ArrayView4<f32>,
    spec: &GeometrySpec,
    groups: usize,
) -> Result<Gradients, ConvError> {
    let operation = Operation::Convolution;
    let channels = checks::parameters(operation, spec, weight, None, groups)?;
    let shape = checks::output_shape(operation, spec, x.dim().into(), channels)?;
    checks::check_grad_output(grad_output.dim().into(), shape)?;
    let (_, _, in_h, in_w) = x.dim();
    let mut input = Array4::<f64>::zeros(x.raw_dim());
    let mut weight_grad = Array4::<f64>::zeros(weight.raw_dim());
    let products = Products::of_convolution(spec, groups, weight.dim(), shape, (in_h, in_w));
    products.for_each(|p| {
        let g = f64::from(grad_output[[p.image, p.grid_channel, p.grid.0, p.grid.1]]);
        let value = match p.reached {
            Some((iy, ix)) => {
                input[[p.image, p.channel, iy, ix]] += g * f64::from(weight[p.weight]);
                f64::from(x[[p.image, p.channel, iy, ix]])
            }
            None => 0.0, // The padding.
        };
        weight_grad[p.weight] += g * value;
    });
    Ok(Gradients {
        input: input.mapv(|v| v as f32),
        weight: weight_grad.mapv(|v| v as f32),
        bias: bias.then(|| bias_sums(&grad_output)),
    })
}

/// The gradients of the transposed convolution `conv_transpose2d(x, weight, bias, spec,
/// groups, output_size)` for the output gradient `grad_output`, whose size is the output
/// size (any size `output_size` may choose): with respect to `x`, to `weight` and, when
/// `bias` is true, to the bias.
pub fn conv_transpose2d_backward<S: Data<Elem = f32>, T: Data<Elem = f32>>(
    x: &ArrayBase<S, Ix4>,
    weight: &Array4<f32>,
    bias: bool,
    grad_output: &ArrayBase<T, Ix4>,
    spec: &GeometrySpec,
    groups: usize,
) -> Result<Gradients, ConvError> {
    conv_transpose2d_backward_of_views(x.view(), weight, bias, grad_output.view(), spec, groups)
}

/// [`conv_transpose2d_backward`] of views: compiled once, in this crate, where the callers' generic
/// instances were compiled in each caller (see the module's notes).
fn conv_transpose2d_backward_of_views(
    x: ArrayView4<f32>,
    weight: &Array4<f32>,
    bias: bool,
    grad_output: ArrayView4<f32>,
    spec: &GeometrySpec,
    groups: usize,
) -> Result<Gradients, ConvError> {
    let operation = Operation::TransposedConvolution;
    let channels = checks::parameters(operation, spec, weight, None, groups)?;
    let default = checks::output_shape(operation, spec, x.dim().into(), channels)?;
    let (_, _, in_h, in_w) = x.dim();
    let got: [usize; 4] = grad_output.dim().into();
    checks::check_transposed_grad_output(spec, (in_h, in_w), got, default)?;
    let [_, _, out_h, out_w] = got;
    let mut input = Array4::<f64>::zeros(x.raw_dim());
    let mut weight_grad = Array4::<f64>::zeros(weight.raw_dim());
    let products = Products::of_transposed(spec, groups, weight.dim(), x.dim(), (out_h, out_w));
    products.for_each(|p| {
        let (n, (iy, ix)) = (p.image, p.grid);
        let g = match p.reached {
            Some((oy, ox)) => {
                let g = f64::from(grad_output[[n, p.channel, oy, ox]]);
                input[[n, p.grid_channel, iy, ix]] += g * f64::from(weight[p.weight]);
                g
            }
            None => 0.0, // The cropped padding.
        };
        weight_grad[p.weight] += f64::from(x[[n, p.grid_channel, iy, ix]]) * g;
    });
    Ok(Gradients {
        input: input.mapv(|v| v as f32),
        weight: weight_grad.mapv(|v| v as f32),
        bias: bias.then(|| bias_sums(&grad_output)),
    })
}

/// `grad_output` summed over the batch and space, per channel.
fn bias_sums<T: Data<Elem = f32>>(grad_output: &ArrayBase<T, Ix4>) -> Array1<f32> {
    let channels = grad_output.dim().1;
    Array1::from_shape_fn(channels, |c| {
        let plane = grad_output.index_axis(Axis(1), c);
        plane.iter().map(|&v| f64::from(v)).sum::<f64>() as f32
    })
}

/// The products a convolution-shaped sum is made of, every one visited by
/// [`Products::for_each`]. Both operations have a *grid* side, whose positions step by the
/// stride (a convolution's output, a transposed convolution's input), and an *other* side
/// that each grid position's taps reach, `grid * stride + tap * dilation - padding` on each
/// axis (a convolution's input, a transposed convolution's output). The weight's first axis
/// counts the grid side's channels, its second the other side's channels of one group.
struct Products<'a> {
    spec: &'a GeometrySpec,
    /// What the other side's padding holds: the geometry's mode for a convolution, zeros
    /// (cropped rows and columns) for a transposed convolution.
    mode: PaddingMode,
    groups: usize,
    /// The weight's shape, `[grid channels, other channels per group, kh, kw]`.
    weight: (usize, usize, usize, usize),
    batch: usize,
    grid: (usize, usize),
    other: (usize, usize),
}

/// One product: of weight element `weight` and the values at grid position `grid` of
/// channel `grid_channel` and at `reached` of channel `channel` on the other side.
struct Product {
    image: usize,
    grid_channel: usize,
    channel: usize,
    weight: [usize; 4],
    grid: (usize, usize),
    /// The other side's position, `None` in the padding (a convolution's zeros, the rows and
    /// columns a transposed convolution crops).
    reached: Option<(usize, usize)>,
}

impl<'a> Products<'a> {
    /// A convolution's products: its output `shape` is the grid, its input (`input` high and
    /// wide) the other side.
    fn of_convolution(
        spec: &'a GeometrySpec,
        groups: usize,
        weight: (usize, usize, usize, usize),
        [batch, _, out_h, out_w]: [usize; 4],
        input: (usize, usize),
    ) -> Self {
        let grid = (out_h, out_w);
        Products {
            spec,
            mode: spec.padding_mode,
            groups,
            weight,
            batch,
            grid,
            other: input,
        }
    }

    /// A transposed convolution's products: its input (of dimensions `x`) is the grid, its
    /// output (`output` high and wide) the other side.
    fn of_transposed(
        spec: &'a GeometrySpec,
        groups: usize,
        weight: (usize, usize, usize, usize),
        (batch, _, in_h, in_w): (usize, usize, usize, usize),
        output: (usize, usize),
    ) -> Self {
        let grid = (in_h, in_w);
        Products {
            spec,
            mode: PaddingMode::Zeros,
            groups,
            weight,
            batch,
            grid,
            other: output,
        }
    }

    // Inlined into each pass, so that the visit is too: at the tests' opt-level a call per
    // product would double the passes' time.
    #[inline(always)]
    fn for_each(&self, mut visit: impl FnMut(&Product)) {
        type Reach = (usize, usize, usize, usize);
        let (grid_channels, per_group, kh, kw) = self.weight;
        let grid_per_group = grid_channels / self.groups;
        // Grid position `g`'s tap `t` on one axis, `(stride, dilation, padding before, other
        // side)`.
        let mode = self.mode;
        let reach = |g: usize, t: usize, (stride, dilation, pad, size): Reach| {
            let padded = g * stride + t * dilation;
            match padded.checked_sub(pad) {
                Some(o) if o < size => Some(o),
                // Before the first element: `pad - padded` away from it.
                None => outside(mode, size, padded.abs_diff(pad), Side::Before),
                // After the last: `o - (size - 1)` away from it.
                Some(o) => outside(mode, size, o + 1 - size, Side::After),
            }
        };
        let (rows, cols) = checks::axes(self.spec);
        let rows: Reach = (rows.stride, rows.dilation, rows.pad_before, self.other.0);
        let cols: Reach = (cols.stride, cols.dilation, cols.pad_before, self.other.1);
        for image in 0..self.batch {
            for grid_channel in 0..grid_channels {
                let group = grid_channel / grid_per_group;
                for gy in 0..self.grid.0 {
                    for gx in 0..self.grid.1 {
                        for j in 0..per_group {
                            for th in 0..kh {
                                for tw in 0..kw {
                                    let reached = reach(gy, th, rows).zip(reach(gx, tw, cols));
                                    visit(&Product {
                                        image,
                                        grid_channel,
                                        channel: group * per_group + j,
                                        weight: [grid_channel, j, th, tw],
                                        grid: (gy, gx),
                                        reached,
                                    });
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Which side of an axis a padded position lies on.
#[derive(Clone, Copy)]
enum Side {
    Before,
    After,
}

/// The element a padded position `distance` (at least 1) outside an axis of `size` holds,
/// as PyTorch's `F.pad` fills it; `None` for a zero. The checks have made the input long
/// enough for the mode.
fn outside(mode: PaddingMode, size: usize, distance: usize, side: Side) -> Option<usize> {
    let last = size - 1;
    match (mode, side) {
        (PaddingMode::Zeros, _) => None,
        // Mirrored about the edge element, which is not repeated.
        (PaddingMode::Reflect, Side::Before) => Some(distance),
        (PaddingMode::Reflect, Side::After) => Some(last - distance),
        (PaddingMode::Replicate, Side::Before) => Some(0),
        (PaddingMode::Replicate, Side::After) => Some(last),
        // Wrapped around: the axis repeats with period `size`.
        (PaddingMode::Circular, Side::Before) => Some(size - distance),
        (PaddingMode::Circular, Side::After) => Some(distance - 1),
    }
}

/// `sums` plus the bias of each channel, in `f32`.
fn with_bias(sums: &Array4<f64>, bias: Option<&Array1<f32>>) -> Array4<f32> {
    Array4::from_shape_fn(sums.dim(), |(n, c, y, x)| {
        (sums[[n, c, y, x]] + bias.map_or(0.0, |b| f64::from(b[c]))) as f32
    })
}
