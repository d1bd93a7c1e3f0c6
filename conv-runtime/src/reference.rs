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

use ndarray::{Array1, Array4, ArrayBase, Data, Ix4};

use crate::error::{ConvError, Operation};
use crate::{GeometrySpec, Gradients, backward, layer};

/// The convolution of `x` (NCHW) with `weight` (`[out, in / groups, kh, kw]`) and `bias`.
pub fn conv2d<S: Data<Elem = f32>>(
    x: &ArrayBase<S, Ix4>,
    weight: &Array4<f32>,
    bias: Option<&Array1<f32>>,
    spec: &GeometrySpec,
    groups: usize,
) -> Result<Array4<f32>, ConvError> {
    let (out_channels, in_per_group, kh, kw) = weight.dim();
    check(
        spec,
        weight,
        bias,
        in_per_group * groups,
        out_channels,
        groups,
    )?;
    let shape = layer::output_shape(
        x.dim().into(),
        in_per_group * groups,
        out_channels,
        spec,
        Operation::Convolution,
    )?;
    let [batch, _, out_h, out_w] = shape;
    let (_, _, in_h, in_w) = x.dim();
    let out_per_group = out_channels / groups;
    let (pad_top, pad_left) = spec.pad_before();
    let mut out = Array4::zeros(shape);
    for n in 0..batch {
        for oc in 0..out_channels {
            let group = oc / out_per_group;
            for oy in 0..out_h {
                for ox in 0..out_w {
                    let mut sum = bias.map_or(0.0, |b| f64::from(b[oc]));
                    for i in 0..in_per_group {
                        let ic = group * in_per_group + i;
                        for th in 0..kh {
                            for tw in 0..kw {
                                let iy = (oy * spec.stride.0 + th * spec.dilation.0)
                                    .checked_sub(pad_top)
                                    .filter(|&iy| iy < in_h);
                                let ix = (ox * spec.stride.1 + tw * spec.dilation.1)
                                    .checked_sub(pad_left)
                                    .filter(|&ix| ix < in_w);
                                if let (Some(iy), Some(ix)) = (iy, ix) {
                                    sum += f64::from(weight[[oc, i, th, tw]])
                                        * f64::from(x[[n, ic, iy, ix]]);
                                }
                            }
                        }
                    }
                    out[[n, oc, oy, ox]] = sum as f32;
                }
            }
        }
    }
    Ok(out)
}

/// The transposed convolution of `x` (NCHW) with `weight` (`[in, out / groups, kh, kw]`) and
/// `bias`. `output_size` is PyTorch's argument of that name; `None` uses the geometry's
/// `output_padding`.
pub fn conv_transpose2d<S: Data<Elem = f32>>(
    x: &ArrayBase<S, Ix4>,
    weight: &Array4<f32>,
    bias: Option<&Array1<f32>>,
    spec: &GeometrySpec,
    groups: usize,
    output_size: Option<(usize, usize)>,
) -> Result<Array4<f32>, ConvError> {
    let (in_channels, out_per_group, kh, kw) = weight.dim();
    let out_channels = out_per_group * groups;
    check(spec, weight, bias, in_channels, out_channels, groups)?;
    let [batch, _, mut out_h, mut out_w] = layer::output_shape(
        x.dim().into(),
        in_channels,
        out_channels,
        spec,
        Operation::TransposedConvolution,
    )?;
    if let Some(size) = output_size {
        (out_h, out_w) = size;
    }
    let (_, _, in_h, in_w) = x.dim();
    let in_per_group = in_channels / groups;
    let (pad_top, pad_left) = spec.pad_before();
    let mut sums = ndarray::Array4::<f64>::zeros((batch, out_channels, out_h, out_w));
    for n in 0..batch {
        for ic in 0..in_channels {
            let group = ic / in_per_group;
            for iy in 0..in_h {
                for ix in 0..in_w {
                    let value = f64::from(x[[n, ic, iy, ix]]);
                    for o in 0..out_per_group {
                        for th in 0..kh {
                            for tw in 0..kw {
                                let oy = (iy * spec.stride.0 + th * spec.dilation.0)
                                    .checked_sub(pad_top)
                                    .filter(|&oy| oy < out_h);
                                let ox = (ix * spec.stride.1 + tw * spec.dilation.1)
                                    .checked_sub(pad_left)
                                    .filter(|&ox| ox < out_w);
                                if let (Some(oy), Some(ox)) = (oy, ox) {
                                    sums[[n, group * out_per_group + o, oy, ox]] +=
                                        value * f64::from(weight[[ic, o, th, tw]]);
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    Ok(Array4::from_shape_fn(sums.dim(), |(n, oc, oy, ox)| {
        (sums[[n, oc, oy, ox]] + bias.map_or(0.0, |b| f64::from(b[oc]))) as f32
    }))
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
    let (out_channels, in_per_group, kh, kw) = weight.dim();
    let in_channels = in_per_group * groups;
    check(spec, weight, None, in_channels, out_channels, groups)?;
    let shape = layer::output_shape(
        x.dim().into(),
        in_channels,
        out_channels,
        spec,
        Operation::Convolution,
    )?;
    backward::check_grad_output(grad_output, shape)?;
    let [batch, _, out_h, out_w] = shape;
    let (_, _, in_h, in_w) = x.dim();
    let out_per_group = out_channels / groups;
    let (pad_top, pad_left) = spec.pad_before();
    // Output (oy, ox)'s tap (th, tw) reads input row `oy * sh + th * dh - pad_top`, and so on.
    let read = |o: usize, t: usize, axis: usize| {
        let (stride, dilation, pad, size) = match axis {
            0 => (spec.stride.0, spec.dilation.0, pad_top, in_h),
            _ => (spec.stride.1, spec.dilation.1, pad_left, in_w),
        };
        (o * stride + t * dilation)
            .checked_sub(pad)
            .filter(|&i| i < size)
    };
    let mut input = ndarray::Array4::<f64>::zeros(x.raw_dim());
    let mut weight_grad = ndarray::Array4::<f64>::zeros(weight.raw_dim());
    for n in 0..batch {
        for oc in 0..out_channels {
            let group = oc / out_per_group;
            for oy in 0..out_h {
                for ox in 0..out_w {
                    let g = f64::from(grad_output[[n, oc, oy, ox]]);
                    for i in 0..in_per_group {
                        let ic = group * in_per_group + i;
                        for th in 0..kh {
                            for tw in 0..kw {
                                let (iy, ix) = (read(oy, th, 0), read(ox, tw, 1));
                                let value = match (iy, ix) {
                                    (Some(iy), Some(ix)) => {
                                        input[[n, ic, iy, ix]] +=
                                            g * f64::from(weight[[oc, i, th, tw]]);
                                        f64::from(x[[n, ic, iy, ix]])
                                    }
                                    _ => 0.0, // The padding.
                                };
                                weight_grad[[oc, i, th, tw]] += g * value;
                            }
                        }
                    }
                }
            }
        }
    }
    Ok(Gradients {
        input: input.mapv(|v| v as f32),
        weight: weight_grad.mapv(|v| v as f32),
        bias: bias.then(|| bias_sums(grad_output)),
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
    let (in_channels, out_per_group, kh, kw) = weight.dim();
    let out_channels = out_per_group * groups;
    check(spec, weight, None, in_channels, out_channels, groups)?;
    let default = layer::output_shape(
        x.dim().into(),
        in_channels,
        out_channels,
        spec,
        Operation::TransposedConvolution,
    )?;
    let (batch, _, in_h, in_w) = x.dim();
    let got: [usize; 4] = grad_output.dim().into();
    backward::check_transposed_grad_output(got, default, (in_h, in_w), spec)?;
    let [_, _, out_h, out_w] = got;
    let in_per_group = in_channels / groups;
    let (pad_top, pad_left) = spec.pad_before();
    // Input (iy, ix)'s tap (th, tw) reaches output row `iy * sh + th * dh - pad_top`, and
    // so on; outside the output it reaches the cropped padding.
    let reach = |i: usize, t: usize, axis: usize| {
        let (stride, dilation, pad, size) = match axis {
            0 => (spec.stride.0, spec.dilation.0, pad_top, out_h),
            _ => (spec.stride.1, spec.dilation.1, pad_left, out_w),
        };
        (i * stride + t * dilation)
            .checked_sub(pad)
            .filter(|&o| o < size)
    };
    let mut input = ndarray::Array4::<f64>::zeros(x.raw_dim());
    let mut weight_grad = ndarray::Array4::<f64>::zeros(weight.raw_dim());
    for n in 0..batch {
        for ic in 0..in_channels {
            let group = ic / in_per_group;
            for iy in 0..in_h {
                for ix in 0..in_w {
                    let value = f64::from(x[[n, ic, iy, ix]]);
                    for o in 0..out_per_group {
                        let oc = group * out_per_group + o;
                        for th in 0..kh {
                            for tw in 0..kw {
                                let g = match (reach(iy, th, 0), reach(ix, tw, 1)) {
                                    (Some(oy), Some(ox)) => {
                                        let g = f64::from(grad_output[[n, oc, oy, ox]]);
                                        input[[n, ic, iy, ix]] +=
                                            g * f64::from(weight[[ic, o, th, tw]]);
                                        g
                                    }
                                    _ => 0.0, // The cropped padding.
                                };
                                weight_grad[[ic, o, th, tw]] += value * g;
                            }
                        }
                    }
                }
            }
        }
    }
    Ok(Gradients {
        input: input.mapv(|v| v as f32),
        weight: weight_grad.mapv(|v| v as f32),
        bias: bias.then(|| bias_sums(grad_output)),
    })
}

/// `grad_output` summed over the batch and space, per channel.
fn bias_sums<T: Data<Elem = f32>>(grad_output: &ArrayBase<T, Ix4>) -> Array1<f32> {
    let channels = grad_output.dim().1;
    Array1::from_shape_fn(channels, |c| {
        let plane = grad_output.index_axis(ndarray::Axis(1), c);
        plane.iter().map(|&v| f64::from(v)).sum::<f64>() as f32
    })
}

fn check(
    spec: &GeometrySpec,
    weight: &Array4<f32>,
    bias: Option<&Array1<f32>>,
    in_channels: usize,
    out_channels: usize,
    groups: usize,
) -> Result<(), ConvError> {
    layer::check_channels(in_channels, out_channels, groups)?;
    layer::check_kernel(spec, weight)?;
    layer::check_bias(bias, out_channels)
}
