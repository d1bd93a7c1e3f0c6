//! Naive convolution and transposed convolution, straight from their definitions, with the
//! geometry as a run-time value.
//!
//! They are the oracle the generated kernels are tested against and the baseline they are
//! benchmarked against: simple enough to check by eye, slow (a few GFLOP/s at best), and
//! accumulating in `f64` so their own rounding error is negligible. The transposed
//! convolution is written in its *scatter* form (each input element spreads over the
//! outputs it reaches), independent of the phase decomposition the kernels use.
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

use crate::GeometrySpec;
use crate::error::{ConvError, Operation};
use crate::layer;

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
