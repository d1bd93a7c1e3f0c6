//! The checks a layer makes on what it is given: its parameters when built, and each input,
//! output buffer and output gradient when run. Each failure is a typed error naming what
//! was expected and what came.

use ndarray::{Array1, Array4, ArrayBase, Data, Ix4};

use crate::isa::Isa;
use crate::shape::error::{ConvError, Operation};
use crate::shape::geometry::GeometrySpec;

/// Both channel counts at least 1, and `groups` at least 1 and dividing both.
pub(super) fn check_channels(
    in_channels: usize,
    out_channels: usize,
    groups: usize,
) -> Result<(), ConvError> {
    if in_channels == 0 || out_channels == 0 {
        return Err(ConvError::ZeroChannels {
            in_channels,
            out_channels,
        });
    }
    if groups == 0 || !in_channels.is_multiple_of(groups) || !out_channels.is_multiple_of(groups) {
        return Err(ConvError::Groups {
            groups,
            in_channels,
            out_channels,
        });
    }
    Ok(())
}

/// The weight's kernel axes match the geometry's kernel size.
pub(super) fn check_kernel(spec: &GeometrySpec, weight: &Array4<f32>) -> Result<(), ConvError> {
    let got: [usize; 4] = weight.dim().into();
    if (got[2], got[3]) != spec.kernel_size {
        return Err(ConvError::KernelSize {
            expected: spec.kernel_size,
            got,
        });
    }
    Ok(())
}

/// The bias, if any, has one value per output channel.
pub(super) fn check_bias(bias: Option<&Array1<f32>>, out_channels: usize) -> Result<(), ConvError> {
    match bias {
        Some(bias) if bias.len() != out_channels => Err(ConvError::BiasShape {
            expected: out_channels,
            got: bias.len(),
        }),
        _ => Ok(()),
    }
}

/// The output shape for an input of `shape`, after checking its channels and size.
pub(crate) fn output_shape(
    shape: [usize; 4],
    in_channels: usize,
    out_channels: usize,
    spec: &GeometrySpec,
    operation: Operation,
) -> Result<[usize; 4], ConvError> {
    let [batch, channels, h, w] = shape;
    if channels != in_channels {
        return Err(ConvError::InputChannels {
            expected: in_channels,
            got: channels,
        });
    }
    let (min, size) = match operation {
        Operation::Convolution => (spec.min_input_size(), spec.output_size((h, w))),
        Operation::TransposedConvolution => (
            spec.transposed_min_input_size(),
            spec.transposed_output_size((h, w)),
        ),
    };
    if h < min.0 || w < min.1 {
        return Err(ConvError::InputTooSmall {
            operation,
            min,
            got: (h, w),
        });
    }
    let (out_h, out_w) = size.ok_or(ConvError::TooLarge { got: (h, w) })?;
    if operation == Operation::Convolution && spec.pads_by_copy() {
        check_padding_mode(spec, shape)?;
    }
    let output = [batch, out_channels, out_h, out_w];
    check_allocatable(output, (h, w))?;
    Ok(output)
}

/// The input is large enough for the padding mode, and its padded copy can exist.
fn check_padding_mode(
    spec: &GeometrySpec,
    [batch, channels, h, w]: [usize; 4],
) -> Result<(), ConvError> {
    let min = spec.padding_min_input();
    if h < min.0 || w < min.1 {
        let (before, after) = (spec.pad_before(), spec.pad_after());
        return Err(ConvError::PaddingTooLarge {
            mode: spec.padding_mode,
            padding: (before.0.max(after.0), before.1.max(after.1)),
            min,
            got: (h, w),
        });
    }
    // The output size exists, so the padded size does not overflow.
    let padded = spec.padded_size((h, w));
    check_allocatable([batch, channels, padded.0, padded.1], (h, w))
}

/// An array of `shape` can exist: `ndarray` needs the product of its non-zero axes, and the
/// allocator its bytes, within `isize::MAX`. `input` is the size the error names.
pub(crate) fn check_allocatable(shape: [usize; 4], input: (usize, usize)) -> Result<(), ConvError> {
    let limit = isize::MAX as usize;
    let axes = shape
        .iter()
        .try_fold(1usize, |product, &axis| product.checked_mul(axis.max(1)));
    let bytes = shape
        .iter()
        .try_fold(size_of::<f32>(), |product, &axis| product.checked_mul(axis));
    match (axes, bytes) {
        (Some(axes), Some(bytes)) if axes <= limit && bytes <= limit => Ok(()),
        _ => Err(ConvError::TooLarge { got: input }),
    }
}

/// The shape `forward_into` was given matches the output's.
pub(super) fn check_output<S: Data<Elem = f32>>(
    out: &ArrayBase<S, Ix4>,
    expected: [usize; 4],
) -> Result<(), ConvError> {
    let got: [usize; 4] = out.dim().into();
    if got != expected {
        return Err(ConvError::OutputShape {
            expected: expected.to_vec(),
            got: got.to_vec(),
        });
    }
    Ok(())
}

/// The output gradient has exactly the shape `expected`.
pub(crate) fn check_grad_output<S: Data<Elem = f32>>(
    grad_output: &ArrayBase<S, Ix4>,
    expected: [usize; 4],
) -> Result<(), ConvError> {
    let got: [usize; 4] = grad_output.dim().into();
    if got != expected {
        return Err(ConvError::GradOutputShape {
            expected: expected.to_vec(),
            got: got.to_vec(),
        });
    }
    Ok(())
}

/// The output gradient of a transposed convolution of an input of `size` has the shape of
/// an output it can produce: `default` (the size with the geometry's output padding), or
/// another size `output_size` can choose.
pub(crate) fn check_transposed_grad_output(
    grad_output: [usize; 4],
    default: [usize; 4],
    size: (usize, usize),
    spec: &GeometrySpec,
) -> Result<(), ConvError> {
    let (min, max) = spec
        .transposed_output_range(size)
        .ok_or(ConvError::TooLarge { got: size })?;
    let [_, _, h, w] = grad_output;
    let expected = if (min.0..=max.0).contains(&h) && (min.1..=max.1).contains(&w) {
        [default[0], default[1], h, w]
    } else {
        default
    };
    if grad_output != expected {
        return Err(ConvError::GradOutputShape {
            expected: expected.to_vec(),
            got: grad_output.to_vec(),
        });
    }
    Ok(())
}

/// The instruction set is available here.
pub(super) fn check_isa(isa: Isa) -> Result<(), ConvError> {
    if isa.is_available() {
        Ok(())
    } else {
        Err(ConvError::IsaUnavailable {
            requested: isa,
            available: Isa::available(),
        })
    }
}
