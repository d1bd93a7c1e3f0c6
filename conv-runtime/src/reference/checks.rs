//! The reference's own argument checks and shape arithmetic, written from PyTorch's rules
//! and formulas, sharing nothing with the layers' checks (see the [module](super) docs).
//!
//! Per axis, with `span = dilation * (kernel_size - 1)` and `pad_total` the zeros added on
//! both sides (PyTorch's `2 * padding`, or for `padding = same` the total `span`, split with
//! the extra zero at the bottom or right):
//!
//! * convolution: `out = floor((in + pad_total - span - 1) / stride) + 1`, defined (at least
//!   1) from `in = max(1, span + 1 - pad_total)`;
//! * transposed convolution: `out = (in - 1) * stride - pad_total + span + output_padding + 1`,
//!   at least 1 from `in = 1 + ceil((pad_total - span - output_padding) / stride)`; its
//!   `output_size` argument may pick any size from `out` at `output_padding = 0` (but at
//!   least 1) to `out` at `output_padding = stride - 1`.
//!
//! The refusals are the layers' [`ConvError`]s, in the layers' order: the parameters (channel
//! counts, groups, kernel, bias), then the input (channels, too small, too large), then the
//! requested output size or the output gradient.

use ndarray::{Array1, Array4};

use crate::shape::error::{ConvError, Operation};
use crate::shape::geometry::{GeometrySpec, Padding, PaddingMode};

/// One spatial axis of a geometry, with its padding resolved to zeros before and after.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Axis {
    /// Taps of the kernel.
    pub kernel: usize,
    /// Step between the grid side's positions.
    pub stride: usize,
    /// Spacing between taps.
    pub dilation: usize,
    /// Zeros before the first element (top or left).
    pub pad_before: usize,
    /// Zeros after the last element (bottom or right).
    pub pad_after: usize,
    /// Extra elements at the end of the transposed convolution's output.
    pub output_padding: usize,
}

/// How one axis is padded, as written.
#[derive(Clone, Copy, Debug)]
enum AxisPadding {
    /// This many zeros on both sides.
    Both(usize),
    /// `span` zeros in all, half before (rounded down) and the rest after, as PyTorch pads.
    Same,
    /// `span` zeros, all before (Keras' `causal`).
    Causal,
}

/// The two axes of `spec`, `(rows, columns)`.
///
/// # Panics
///
/// If a kernel size, stride or dilation is 0, or the geometry's own constants (the span of
/// the kernel, the total padding) do not fit in `usize`: no `conv!` geometry is like that.
pub(super) fn axes(spec: &GeometrySpec) -> (Axis, Axis) {
    let (pad_h, pad_w) = match spec.padding {
        Padding::Explicit(h, w) => (AxisPadding::Both(h), AxisPadding::Both(w)),
        Padding::Same => (AxisPadding::Same, AxisPadding::Same),
        Padding::Causal => (AxisPadding::Causal, AxisPadding::Causal),
    };
    let axis = |kernel, stride, dilation, padding, output_padding| {
        Axis::new(kernel, stride, dilation, padding, output_padding)
    };
    (
        axis(
            spec.kernel_size.0,
            spec.stride.0,
            spec.dilation.0,
            pad_h,
            spec.output_padding.0,
        ),
        axis(
            spec.kernel_size.1,
            spec.stride.1,
            spec.dilation.1,
            pad_w,
            spec.output_padding.1,
        ),
    )
}

impl Axis {
    /// An axis padded as `padding` says.
    fn new(
        kernel: usize,
        stride: usize,
        dilation: usize,
        padding: AxisPadding,
        output_padding: usize,
    ) -> Axis {
        assert!(
            kernel >= 1 && stride >= 1 && dilation >= 1,
            "reference: kernel size, stride and dilation must be at least 1, got {kernel}, \
             {stride}, {dilation}"
        );
        let span = dilation.checked_mul(kernel - 1);
        let (pad_before, pad_after) = match (padding, span) {
            (AxisPadding::Both(p), _) => (p, p),
            (AxisPadding::Same, Some(total)) => (total / 2, total - total / 2),
            (AxisPadding::Causal, Some(total)) => (total, 0),
            (_, None) => (0, 0), // Refused below.
        };
        let axis = Axis {
            kernel,
            stride,
            dilation,
            pad_before,
            pad_after,
            output_padding,
        };
        let constants = span
            .and_then(|span| span.checked_add(output_padding))
            .and_then(|reach| reach.checked_add(1))
            .and(pad_before.checked_add(pad_after))
            .and_then(|total| total.checked_add(1));
        assert!(
            constants.is_some(),
            "reference: the geometry's span and padding overflow usize: {axis:?}"
        );
        axis
    }

    /// `dilation * (kernel - 1)`: from the first tap to the last.
    fn span(&self) -> usize {
        self.dilation * (self.kernel - 1)
    }

    /// Zeros on both sides together.
    fn pad_total(&self) -> usize {
        self.pad_before + self.pad_after
    }

    /// The smallest input the convolution has an output for: `in + pad_total` must cover
    /// `span + 1`, and an empty axis has no output whatever the padding.
    fn conv_min_input(&self) -> usize {
        (self.span() + 1).saturating_sub(self.pad_total()).max(1)
    }

    /// `floor((input + pad_total - span - 1) / stride) + 1` for an input of at least
    /// [`conv_min_input`](Self::conv_min_input); `None` when `input + pad_total` overflows.
    fn conv_output(&self, input: usize) -> Option<usize> {
        let padded = input.checked_add(self.pad_total())?;
        let numerator = padded
            .checked_sub(self.span() + 1)
            .expect("reference: conv_output below the minimum input");
        Some(numerator / self.stride + 1)
    }

    /// The smallest input whose transposed convolution keeps an output element once the
    /// padding is cropped: `(in - 1) * stride` must reach `pad_total - span - output_padding`.
    fn transposed_min_input(&self) -> usize {
        let missing = self
            .pad_total()
            .saturating_sub(self.span() + self.output_padding);
        1 + missing.div_ceil(self.stride)
    }

    /// `(input - 1) * stride - pad_total + span + output_padding + 1` for an input of at
    /// least 1, or 0 when the padding crops everything; `None` when it overflows `usize`.
    fn transposed_output(&self, input: usize, output_padding: usize) -> Option<usize> {
        let steps = input
            .checked_sub(1)
            .expect("reference: transposed_output of an empty input");
        let full = steps
            .checked_mul(self.stride)?
            .checked_add(self.span() + output_padding + 1)?;
        Some(full.saturating_sub(self.pad_total()))
    }

    /// The sizes PyTorch's `output_size` may ask for, `(min, max)`: the output at
    /// `output_padding = 0` (at least 1) to the output at `output_padding = stride - 1`.
    /// Empty (`min > max`) when even the largest is cropped away; `None` when the largest
    /// overflows `usize`.
    fn transposed_range(&self, input: usize) -> Option<(usize, usize)> {
        let max = self.transposed_output(input, self.stride - 1)?;
        let min = max.saturating_sub(self.stride - 1).max(1);
        Some((min, max))
    }
}

/// A layer's channel counts, as its weight and `groups` give them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Channels {
    /// PyTorch's `in_channels`.
    pub input: usize,
    /// PyTorch's `out_channels`.
    pub output: usize,
}

/// Checks the parameters of the layer `operation` that has `weight` (PyTorch's layout:
/// `[out, in / groups, kh, kw]` for a convolution, `[in, out / groups, kh, kw]` for a
/// transposed one), `bias` and `groups` on `spec`, and gives its channel counts.
///
/// The rules, in order: both channel counts at least 1; `groups` at least 1 and dividing
/// both; the weight's kernel axes the geometry's kernel size; one bias value per output
/// channel.
pub(super) fn parameters(
    operation: Operation,
    spec: &GeometrySpec,
    weight: &Array4<f32>,
    bias: Option<&Array1<f32>>,
    groups: usize,
) -> Result<Channels, ConvError> {
    let shape: [usize; 4] = weight.dim().into();
    let [first, per_group, kh, kw] = shape;
    // PyTorch refuses `groups = 0` outright; the weight's layout then gives the counts of
    // one group, which the error names. A count past `usize::MAX` saturates (and then fails
    // the checks below).
    let grouped = per_group.saturating_mul(groups.max(1));
    let channels = match operation {
        Operation::Convolution => Channels {
            input: grouped,
            output: first,
        },
        Operation::TransposedConvolution => Channels {
            input: first,
            output: grouped,
        },
    };
    let (in_channels, out_channels) = (channels.input, channels.output);
    if in_channels < 1 || out_channels < 1 {
        return Err(ConvError::ZeroChannels {
            in_channels,
            out_channels,
        });
    }
    if groups < 1 || in_channels % groups != 0 || out_channels % groups != 0 {
        return Err(ConvError::Groups {
            groups,
            in_channels,
            out_channels,
        });
    }
    if (kh, kw) != spec.kernel_size {
        return Err(ConvError::KernelSize {
            expected: spec.kernel_size,
            got: shape,
        });
    }
    if let Some(bias) = bias
        && bias.len() != out_channels
    {
        return Err(ConvError::BiasShape {
            expected: out_channels,
            got: bias.len(),
        });
    }
    Ok(channels)
}

/// The output shape of `operation` for an input of `shape` (NCHW), the transposed
/// convolution's with the geometry's `output_padding`, after checking the input's channels
/// and size.
pub(super) fn output_shape(
    operation: Operation,
    spec: &GeometrySpec,
    shape: [usize; 4],
    channels: Channels,
) -> Result<[usize; 4], ConvError> {
    let [batch, got_channels, h, w] = shape;
    if got_channels != channels.input {
        return Err(ConvError::InputChannels {
            expected: channels.input,
            got: got_channels,
        });
    }
    let (rows, cols) = axes(spec);
    let min = match operation {
        Operation::Convolution => (rows.conv_min_input(), cols.conv_min_input()),
        Operation::TransposedConvolution => {
            (rows.transposed_min_input(), cols.transposed_min_input())
        }
    };
    if h < min.0 || w < min.1 {
        return Err(ConvError::InputTooSmall {
            operation,
            min,
            got: (h, w),
        });
    }
    let size = match operation {
        Operation::Convolution => rows.conv_output(h).zip(cols.conv_output(w)),
        Operation::TransposedConvolution => rows
            .transposed_output(h, rows.output_padding)
            .zip(cols.transposed_output(w, cols.output_padding)),
    };
    let (out_h, out_w) = size.ok_or(ConvError::TooLarge { got: (h, w) })?;
    if operation == Operation::Convolution {
        check_padding_mode(spec.padding_mode, (rows, cols), (h, w))?;
    }
    let output = [batch, channels.output, out_h, out_w];
    representable(output, (h, w))?;
    Ok(output)
}

/// PyTorch's `F.pad` rules for the non-zero modes, per axis: reflect needs the input longer
/// than each pad, circular at least as long; replicate and zeros pad any input.
fn check_padding_mode(
    mode: PaddingMode,
    (rows, cols): (Axis, Axis),
    (h, w): (usize, usize),
) -> Result<(), ConvError> {
    let widest = |axis: Axis| axis.pad_before.max(axis.pad_after);
    let padding = (widest(rows), widest(cols));
    let needs = |pad: usize| match mode {
        PaddingMode::Reflect => pad + 1,
        PaddingMode::Circular => pad,
        PaddingMode::Replicate | PaddingMode::Zeros => 0,
    };
    let min = (needs(padding.0), needs(padding.1));
    if h < min.0 || w < min.1 {
        return Err(ConvError::PaddingTooLarge {
            mode,
            padding,
            min,
            got: (h, w),
        });
    }
    Ok(())
}

/// An `ndarray` of `shape` can exist: the product of its non-empty axes, and its bytes,
/// at most `isize::MAX`. Else the input of `size` is too large.
pub(super) fn representable(shape: [usize; 4], size: (usize, usize)) -> Result<(), ConvError> {
    let mut axes = 1usize;
    let mut bytes = size_of::<f32>();
    for &axis in &shape {
        axes = axes.saturating_mul(axis.max(1));
        bytes = bytes.saturating_mul(axis);
    }
    if axes > isize::MAX as usize || bytes > isize::MAX as usize {
        return Err(ConvError::TooLarge { got: size });
    }
    Ok(())
}

/// Sizes `(h, w)` from the first to the second, both included.
type SizeRange = ((usize, usize), (usize, usize));

/// The `(min, max)` output sizes `(h, w)` the transposed convolution of an input of `size`
/// (one [`output_shape`] accepts) can produce through `output_size`.
fn transposed_range(spec: &GeometrySpec, size: (usize, usize)) -> Result<SizeRange, ConvError> {
    let (rows, cols) = axes(spec);
    match (rows.transposed_range(size.0), cols.transposed_range(size.1)) {
        (Some((min_h, max_h)), Some((min_w, max_w))) => Ok(((min_h, min_w), (max_h, max_w))),
        _ => Err(ConvError::TooLarge { got: size }),
    }
}

/// Whether each of `size`'s axes lies in its `(min, max)` range.
fn within(size: (usize, usize), (min, max): SizeRange) -> bool {
    (min.0..=max.0).contains(&size.0) && (min.1..=max.1).contains(&size.1)
}

/// `requested` is an output size the transposed convolution of an input of `size` (one
/// [`output_shape`] accepts) can produce.
pub(super) fn check_output_size(
    spec: &GeometrySpec,
    size: (usize, usize),
    requested: (usize, usize),
) -> Result<(), ConvError> {
    let range = transposed_range(spec, size)?;
    if !within(requested, range) {
        let (min, max) = range;
        return Err(ConvError::OutputSize {
            requested,
            min,
            max,
        });
    }
    Ok(())
}

/// A convolution's output gradient has exactly the output's shape, `expected`.
pub(super) fn check_grad_output(got: [usize; 4], expected: [usize; 4]) -> Result<(), ConvError> {
    if got != expected {
        return Err(ConvError::GradOutputShape {
            expected: expected.to_vec(),
            got: got.to_vec(),
        });
    }
    Ok(())
}

/// A transposed convolution's output gradient has the shape of an output it can produce for
/// an input of `size`: `default`, its output shape with the geometry's `output_padding`, or
/// `default`'s batch and channels at any size `output_size` may choose. When the size is one
/// of those but the batch or channels are wrong, the error expects that size.
pub(super) fn check_transposed_grad_output(
    spec: &GeometrySpec,
    size: (usize, usize),
    got: [usize; 4],
    default: [usize; 4],
) -> Result<(), ConvError> {
    let [batch, channels, ..] = default;
    let [_, _, h, w] = got;
    let expected = if within((h, w), transposed_range(spec, size)?) {
        [batch, channels, h, w]
    } else {
        default
    };
    check_grad_output(got, expected)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A square geometry (the same parameters on both axes).
    fn spec(
        k: usize,
        stride: usize,
        padding: Padding,
        dilation: usize,
        output_padding: usize,
    ) -> GeometrySpec {
        GeometrySpec {
            kernel_size: (k, k),
            stride: (stride, stride),
            padding,
            padding_mode: PaddingMode::Zeros,
            dilation: (dilation, dilation),
            output_padding: (output_padding, output_padding),
        }
    }

    fn conv_shape(spec: &GeometrySpec, (h, w): (usize, usize)) -> Result<[usize; 4], ConvError> {
        let channels = Channels {
            input: 1,
            output: 1,
        };
        output_shape(Operation::Convolution, spec, [1, 1, h, w], channels)
    }

    fn transposed_shape(
        spec: &GeometrySpec,
        (h, w): (usize, usize),
    ) -> Result<[usize; 4], ConvError> {
        let channels = Channels {
            input: 1,
            output: 1,
        };
        output_shape(
            Operation::TransposedConvolution,
            spec,
            [1, 1, h, w],
            channels,
        )
    }

    #[test]
    fn dilated_convolution_on_7x5() {
        // k = 3, d = 2, p = 2: span = 2 * (3 - 1) = 4, pad_total = 2 + 2 = 4.
        let dilated = spec(3, 1, Padding::Explicit(2, 2), 2, 0);
        // h: floor((7 + 4 - 4 - 1) / 1) + 1 = 7; w: floor((5 + 4 - 4 - 1) / 1) + 1 = 5.
        assert_eq!(conv_shape(&dilated, (7, 5)), Ok([1, 1, 7, 5]));
        // The smallest input: max(1, 4 + 1 - 4) = 1, and floor((1 + 4 - 4 - 1) / 1) + 1 = 1.
        assert_eq!(conv_shape(&dilated, (1, 1)), Ok([1, 1, 1, 1]));
        // Transposed: (7 - 1) * 1 - 4 + 4 + 0 + 1 = 7 and (5 - 1) * 1 - 4 + 4 + 0 + 1 = 5.
        assert_eq!(transposed_shape(&dilated, (7, 5)), Ok([1, 1, 7, 5]));
    }

    #[test]
    fn strided_convolution_rounds_down() {
        // k = 3, s = 2, p = 1: span = 2, pad_total = 2.
        let strided = spec(3, 2, Padding::Explicit(1, 1), 1, 0);
        // floor((16 + 2 - 2 - 1) / 2) + 1 = floor(15 / 2) + 1 = 8;
        // floor((15 + 2 - 2 - 1) / 2) + 1 = 7 + 1 = 8.
        assert_eq!(conv_shape(&strided, (16, 15)), Ok([1, 1, 8, 8]));
        // k = 3, s = 2, p = 0 on 9x8: floor((9 - 3) / 2) + 1 = 4, floor((8 - 3) / 2) + 1 = 3.
        let unpadded = spec(3, 2, Padding::Explicit(0, 0), 1, 0);
        assert_eq!(conv_shape(&unpadded, (9, 8)), Ok([1, 1, 4, 3]));
    }

    #[test]
    fn stride_2_with_output_padding() {
        // k = 3, s = 2, p = 1, output_padding = 1: (8 - 1) * 2 - 2 + 2 + 1 + 1 = 16.
        let up = spec(3, 2, Padding::Explicit(1, 1), 1, 1);
        assert_eq!(transposed_shape(&up, (8, 8)), Ok([1, 1, 16, 16]));
        // output_size may choose output_padding 0 or 1 (= stride - 1): 15 or 16.
        assert_eq!(check_output_size(&up, (8, 8), (15, 16)), Ok(()));
        assert_eq!(
            check_output_size(&up, (8, 8), (17, 15)),
            Err(ConvError::OutputSize {
                requested: (17, 15),
                min: (15, 15),
                max: (16, 16)
            })
        );
        // k = 2, s = 2, p = 0 (the upsampling 2x): (64 - 1) * 2 - 0 + 1 + 0 + 1 = 128.
        let double = spec(2, 2, Padding::Explicit(0, 0), 1, 0);
        assert_eq!(transposed_shape(&double, (64, 64)), Ok([1, 1, 128, 128]));
    }

    #[test]
    fn same_padding_with_an_even_kernel_puts_the_extra_zero_after() {
        // k = 4, d = 1: span = 3 zeros in all, 3 / 2 = 1 before and 2 after.
        let even = spec(4, 1, Padding::Same, 1, 0);
        let (rows, cols) = axes(&even);
        assert_eq!((rows.pad_before, rows.pad_after), (1, 2));
        assert_eq!(rows, cols);
        // floor((7 + 3 - 3 - 1) / 1) + 1 = 7, and the same for 9.
        assert_eq!(conv_shape(&even, (7, 9)), Ok([1, 1, 7, 9]));
        // k = 4, d = 2: span = 2 * 3 = 6, 3 before and 3 after.
        let dilated = axes(&spec(4, 1, Padding::Same, 2, 0)).0;
        assert_eq!((dilated.pad_before, dilated.pad_after), (3, 3));
        // k = 2: span = 1, 0 before and 1 after.
        let two = axes(&spec(2, 1, Padding::Same, 1, 0)).0;
        assert_eq!((two.pad_before, two.pad_after), (0, 1));
        // An input of 1 keeps its size: floor((1 + 1 - 1 - 1) / 1) + 1 = 1.
        assert_eq!(
            conv_shape(&spec(2, 1, Padding::Same, 1, 0), (1, 1)),
            Ok([1, 1, 1, 1])
        );
    }

    #[test]
    fn convolution_input_too_small() {
        // k = 3, p = 0: in + 0 - 2 - 1 >= 0 needs in >= 3.
        let k3 = spec(3, 1, Padding::Explicit(0, 0), 1, 0);
        assert_eq!(
            conv_shape(&k3, (2, 9)),
            Err(ConvError::InputTooSmall {
                operation: Operation::Convolution,
                min: (3, 3),
                got: (2, 9)
            })
        );
        // k = 1, p = 2: any input of at least 1; an empty axis is refused all the same.
        let padded = spec(1, 1, Padding::Explicit(2, 2), 1, 0);
        assert_eq!(
            conv_shape(&padded, (0, 4)),
            Err(ConvError::InputTooSmall {
                operation: Operation::Convolution,
                min: (1, 1),
                got: (0, 4)
            })
        );
        // k = 5, d = 2, p = 1: span = 8, so in >= 8 + 1 - 2 = 7.
        let wide = spec(5, 1, Padding::Explicit(1, 1), 2, 0);
        assert_eq!(
            conv_shape(&wide, (7, 6)),
            Err(ConvError::InputTooSmall {
                operation: Operation::Convolution,
                min: (7, 7),
                got: (7, 6)
            })
        );
        assert_eq!(conv_shape(&wide, (7, 7)), Ok([1, 1, 1, 1]));
    }

    #[test]
    fn transposed_input_whose_output_is_cropped_away() {
        // k = 2, s = 1, p = 4: (in - 1) - 8 + 1 + 0 + 1 >= 1 needs in >= 8.
        let cropping = spec(2, 1, Padding::Explicit(4, 4), 1, 0);
        assert_eq!(
            transposed_shape(&cropping, (7, 8)),
            Err(ConvError::InputTooSmall {
                operation: Operation::TransposedConvolution,
                min: (8, 8),
                got: (7, 8)
            })
        );
        assert_eq!(transposed_shape(&cropping, (8, 8)), Ok([1, 1, 1, 1]));
        // k = 3, s = 2, p = 4: (in - 1) * 2 - 8 + 2 + 1 >= 1 needs (in - 1) * 2 >= 6, in >= 4,
        // which gives 3 * 2 - 8 + 3 = 1.
        let strided = spec(3, 2, Padding::Explicit(4, 4), 1, 0);
        assert_eq!(axes(&strided).0.transposed_min_input(), 4);
        assert_eq!(transposed_shape(&strided, (4, 5)), Ok([1, 1, 1, 3]));
        // With output_padding 1 (< stride 2): (in - 1) * 2 >= 5 still needs in >= 4.
        let padded = spec(3, 2, Padding::Explicit(4, 4), 1, 1);
        assert_eq!(axes(&padded).0.transposed_min_input(), 4);
        assert_eq!(transposed_shape(&padded, (4, 4)), Ok([1, 1, 2, 2]));
    }

    #[test]
    fn sizes_that_overflow_usize_are_too_large() {
        // k = 3, s = 4: (in - 1) * 4 overflows for in = usize::MAX / 2.
        let big = spec(3, 4, Padding::Explicit(0, 0), 1, 0);
        let got = (usize::MAX / 2, 1);
        assert_eq!(
            transposed_shape(&big, got),
            Err(ConvError::TooLarge { got })
        );
        // k = 3, p = 1: in + 2 overflows for in = usize::MAX.
        let padded = spec(3, 1, Padding::Explicit(1, 1), 1, 0);
        let got = (usize::MAX, 3);
        assert_eq!(conv_shape(&padded, got), Err(ConvError::TooLarge { got }));
        // k = 2, s = 2, in = 2^63 - 1: the default output (in - 1) * 2 + 1 + 0 + 1 is
        // 2^64 - 2 = usize::MAX - 1, and output_padding 1 gives at most usize::MAX: sizes
        // that fit in usize, but no array of them can exist (more than isize::MAX elements).
        let double = spec(2, 2, Padding::Explicit(0, 0), 1, 0);
        let got = (usize::MAX / 2, 1);
        assert_eq!(
            axes(&double).0.transposed_range(got.0),
            Some((usize::MAX - 1, usize::MAX))
        );
        assert_eq!(
            transposed_shape(&double, got),
            Err(ConvError::TooLarge { got })
        );
        // k = 1, s = 2, in = 2^63: the default (in - 1) * 2 + 0 + 0 + 1 = 2^64 - 1 fits in
        // usize, but the largest output_size, 2^64, does not.
        let sparse = spec(1, 2, Padding::Explicit(0, 0), 1, 0);
        let got = (usize::MAX / 2 + 1, 1);
        assert_eq!(
            axes(&sparse).0.transposed_output(got.0, 0),
            Some(usize::MAX)
        );
        assert_eq!(
            check_output_size(&sparse, got, (1, 1)),
            Err(ConvError::TooLarge { got })
        );
        // The largest array ndarray holds: isize::MAX elements over the non-empty axes, and
        // as many bytes; an empty batch does not make a longer axis representable.
        let half = isize::MAX as usize / 4;
        assert_eq!(representable([1, 1, half, 1], got), Ok(()));
        assert_eq!(
            representable([1, 1, half + 1, 1], got),
            Err(ConvError::TooLarge { got })
        );
        assert_eq!(
            representable([0, 1, isize::MAX as usize, 2], got),
            Err(ConvError::TooLarge { got })
        );
    }

    #[test]
    fn output_size_range_starts_at_1() {
        // k = 1, s = 3, p = 1: (2 - 1) * 3 - 2 + 0 + op + 1 = 2 + op for op in 0..=2, so 2..=4.
        let sparse = spec(1, 3, Padding::Explicit(1, 1), 1, 0);
        assert_eq!(axes(&sparse).0.transposed_range(2), Some((2, 4)));
        // For in = 1: 0 * 3 - 2 + 0 + op + 1 = op - 1, so only op = 2 gives an output: 1..=1.
        assert_eq!(axes(&sparse).0.transposed_range(1), Some((1, 1)));
        // k = 2, d = 2, p = 2, output_padding = 1 (< dilation 2): in = 2 gives
        // 1 * 1 - 4 + 2 + 1 + 1 = 1 by default, but output_size has only op = 0 (stride 1),
        // 1 - 4 + 2 + 0 + 1 = 0: an empty range.
        let dilated = spec(2, 1, Padding::Explicit(2, 2), 2, 1);
        assert_eq!(transposed_shape(&dilated, (2, 2)), Ok([1, 1, 1, 1]));
        assert_eq!(axes(&dilated).0.transposed_range(2), Some((1, 0)));
    }

    #[test]
    fn transposed_grad_output_names_the_size_it_was_given() {
        // k = 3, s = 2, p = 1 on 8x8: default 15x15, output_size 15..=16.
        let up = spec(3, 2, Padding::Explicit(1, 1), 1, 0);
        let default = [1, 3, 15, 15];
        for size in [(15, 15), (16, 15), (16, 16)] {
            let got = [1, 3, size.0, size.1];
            assert_eq!(
                check_transposed_grad_output(&up, (8, 8), got, default),
                Ok(())
            );
        }
        let got = [1, 3, 17, 15];
        assert_eq!(
            check_transposed_grad_output(&up, (8, 8), got, default),
            Err(ConvError::GradOutputShape {
                expected: default.to_vec(),
                got: got.to_vec()
            })
        );
        let got = [1, 2, 16, 15];
        assert_eq!(
            check_transposed_grad_output(&up, (8, 8), got, default),
            Err(ConvError::GradOutputShape {
                expected: vec![1, 3, 16, 15],
                got: got.to_vec()
            })
        );
        // The default size is accepted even outside output_size's (empty) range.
        let dilated = spec(2, 1, Padding::Explicit(2, 2), 2, 1);
        let default = [1, 1, 1, 1];
        assert_eq!(
            check_transposed_grad_output(&dilated, (2, 2), default, default),
            Ok(())
        );
    }

    #[test]
    fn parameters_follow_pytorchs_weight_layouts() {
        let k3 = spec(3, 1, Padding::Explicit(0, 0), 1, 0);
        let conv = |shape: (usize, usize, usize, usize), bias: Option<usize>, groups| {
            let bias = bias.map(Array1::zeros);
            let weight = Array4::zeros(shape);
            parameters(Operation::Convolution, &k3, &weight, bias.as_ref(), groups)
        };
        let transposed = |shape: (usize, usize, usize, usize), bias: Option<usize>, groups| {
            let bias = bias.map(Array1::zeros);
            let weight = Array4::zeros(shape);
            parameters(
                Operation::TransposedConvolution,
                &k3,
                &weight,
                bias.as_ref(),
                groups,
            )
        };
        // [out, in / groups, kh, kw]: 2 groups of 3 inputs, 4 outputs.
        assert_eq!(
            conv((4, 3, 3, 3), Some(4), 2),
            Ok(Channels {
                input: 6,
                output: 4
            })
        );
        // [in, out / groups, kh, kw]: 4 inputs, 2 groups of 3 outputs.
        assert_eq!(
            transposed((4, 3, 3, 3), Some(6), 2),
            Ok(Channels {
                input: 4,
                output: 6
            })
        );
        assert_eq!(
            conv((0, 2, 3, 3), None, 1),
            Err(ConvError::ZeroChannels {
                in_channels: 2,
                out_channels: 0
            })
        );
        // groups = 0 is refused, naming the counts of one group.
        assert_eq!(
            conv((4, 2, 3, 3), None, 0),
            Err(ConvError::Groups {
                groups: 0,
                in_channels: 2,
                out_channels: 4
            })
        );
        assert_eq!(
            transposed((4, 2, 3, 3), None, 0),
            Err(ConvError::Groups {
                groups: 0,
                in_channels: 4,
                out_channels: 2
            })
        );
        // 2 does not divide 5 outputs; 2 does not divide 5 inputs.
        assert_eq!(
            conv((5, 2, 3, 3), None, 2),
            Err(ConvError::Groups {
                groups: 2,
                in_channels: 4,
                out_channels: 5
            })
        );
        assert_eq!(
            transposed((5, 2, 3, 3), None, 2),
            Err(ConvError::Groups {
                groups: 2,
                in_channels: 5,
                out_channels: 4
            })
        );
        assert_eq!(
            conv((4, 2, 3, 5), None, 1),
            Err(ConvError::KernelSize {
                expected: (3, 3),
                got: [4, 2, 3, 5]
            })
        );
        assert_eq!(
            transposed((4, 3, 3, 3), Some(3), 2),
            Err(ConvError::BiasShape {
                expected: 6,
                got: 3
            })
        );
    }

    #[test]
    fn input_channels_are_checked_first() {
        let k3 = spec(3, 1, Padding::Explicit(0, 0), 1, 0);
        let channels = Channels {
            input: 3,
            output: 8,
        };
        assert_eq!(
            output_shape(Operation::Convolution, &k3, [2, 4, 1, 1], channels),
            Err(ConvError::InputChannels {
                expected: 3,
                got: 4
            })
        );
        assert_eq!(
            output_shape(Operation::Convolution, &k3, [2, 3, 10, 12], channels),
            Ok([2, 8, 8, 10])
        );
    }
}
