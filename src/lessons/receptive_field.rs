//! The receptive field of a stack of 3x3 convolutions, measured with the layers' own
//! backward pass: the gradient of one output pixel with respect to the input is non-zero
//! exactly where that pixel looks. With every weight 1 its value counts the paths from each
//! input pixel to the output pixel, so the picture also shows the *gridding* of repeated
//! equal dilations: (2, 2, 2) sees a 13x13 field, but only one pixel in four of it.

use conv_runtime::ndarray::{Array2, Array4, s};
use conv_runtime::prelude::*;

conv! { struct Dilation1; k = 3, dilation = 1, padding = 1 }
conv! { struct Dilation2; k = 3, dilation = 2, padding = 2 }
conv! { struct Dilation4; k = 3, dilation = 4, padding = 4 }

/// The dilations this module has geometries for.
pub const DILATIONS: [usize; 3] = [1, 2, 4];

/// The receptive field of a stack of 3x3 convolutions with these dilations, per axis:
/// `1 + 2 * sum(dilations)`, the single layers' fields (`Dilation2::RECEPTIVE_FIELD` is
/// `(5, 5)`) chained.
pub const fn stack_field(dilations: &[usize]) -> usize {
    let mut field = 1;
    let mut i = 0;
    while i < dilations.len() {
        field += Dilation1::KERNEL_SIZE.0.saturating_sub(1) * dilations[i];
        i += 1;
    }
    field
}

/// The gradient of the centre pixel of the output of a stack of 3x3 convolutions (one
/// channel, every weight 1, no bias, `dilations` from input to output), with respect to a
/// `size` x `size` input. Each layer pads to keep the size, so the centre's field lies
/// inside the input when `size >= stack_field(dilations)`.
///
/// # Panics
///
/// On a dilation other than 1, 2 or 4.
pub fn gradient_map(dilations: &[usize], size: usize) -> Result<Array2<f32>, ConvError> {
    let mut gradient = Array4::<f32>::zeros((1, 1, size, size));
    gradient[[0, 0, size / 2, size / 2]] = 1.0;
    // Back from the output: each layer's input gradient is the next one's output gradient.
    for &dilation in dilations.iter().rev() {
        gradient = match dilation {
            1 => input_gradient(Dilation1, &gradient)?,
            2 => input_gradient(Dilation2, &gradient)?,
            4 => input_gradient(Dilation4, &gradient)?,
            other => panic!("no geometry for dilation {other}; have {DILATIONS:?}"),
        };
    }
    Ok(gradient.slice(s![0, 0, .., ..]).to_owned())
}

/// The gradient with respect to the input of a one-channel all-ones layer of `geometry`,
/// for `grad_output`. The input gradient does not depend on the input, so zeros stand in.
fn input_gradient<G: Geometry>(
    geometry: G,
    grad_output: &Array4<f32>,
) -> Result<Array4<f32>, ConvError> {
    let weight = Array4::ones((1, 1, 3, 3));
    let layer = Conv2d::from_weights(geometry, weight, None, 1)?;
    let x = Array4::zeros(grad_output.raw_dim());
    Ok(layer.backward(&x, grad_output)?.input)
}

/// The rows and columns where `map` is non-zero: `(height, width)` of its bounding box, and
/// how many of the box's pixels are non-zero.
pub fn support(map: &Array2<f32>) -> ((usize, usize), usize) {
    let nonzero: Vec<(usize, usize)> = map
        .indexed_iter()
        .filter(|(_, value)| **value != 0.0)
        .map(|(index, _)| index)
        .collect();
    let extent = |axis: fn(&(usize, usize)) -> usize| {
        let low = nonzero.iter().map(axis).min();
        let high = nonzero.iter().map(axis).max();
        low.zip(high).map_or(0, |(low, high)| high - low + 1)
    };
    ((extent(|p| p.0), extent(|p| p.1)), nonzero.len())
}
