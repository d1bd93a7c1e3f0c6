//! The weight gradient: a correlation of a layer's input with its output gradient, unrolled
//! over the taps of the geometry like the forward kernels.
//!
//! For a convolution of geometry `G` with input `x` and output gradient `gy`,
//!
//! ```text
//! dW[o][i][th][tw] = sum over n, oy, ox of
//!     gy[n][o][oy][ox] * x_padded[n][g * in_per_group + i][oy * sh + th * dh][ox * sw + tw * dw]
//! ```
//!
//! where `g` is output channel `o`'s group and `x_padded` is `x` with the geometry's zeros
//! around it (and as many more as reads past the bottom and right need). A transposed
//! convolution's weight gradient is the same correlation with the roles swapped: its output
//! gradient is the input operand and its input the grad operand (see
//! [`ConvTranspose2d::backward`](crate::ConvTranspose2d::backward)).
//!
//! Reads of the padding multiply by zero, as PyTorch's kernels do (so an infinity in the
//! grad operand that meets the padding gives NaN there, as in PyTorch); input columns the
//! correlation never reaches are never multiplied.
//!
//! The work is split into blocks of filters (a few output channels by a few input channels
//! of one group); each block's sums are computed by one task, over every image and row in a
//! fixed order, so the result does not depend on the thread count.

mod dispatch;
mod kernel;

use ndarray::{Array4, ArrayView2, ArrayView4, Axis, s};
use rayon::prelude::*;

use crate::phases::{contiguous, split_row};
use crate::scratch::with_scratch;
use crate::{Geometry, Isa};
use kernel::{GradLayout, InputLayout, Job, Operands};

/// Below this many multiply-adds the gradient is computed on the calling thread.
const PARALLEL_THRESHOLD: usize = 1 << 22;

/// The bytes of operand rows one band should keep in the L1 cache.
const BAND_BYTES: usize = 32 * 1024;

/// The correlation above: `input` is `[n, in_channels, h, w]`, `grad` is
/// `[n, out_channels, rows, cols]` (the grid the correlation sums over), and the result is
/// `[out_channels, in_channels / groups, kh, kw]`. Any layouts.
///
/// The caller guarantees that `isa` is available, that both batches are equal, that `groups`
/// divides both channel counts, and that the grid is no larger than the convolution of
/// `input` would produce plus the transposed convolution's extra rows (which read zeros).
pub(crate) fn correlate<G: Geometry>(
    isa: Isa,
    input: &ArrayView4<f32>,
    grad: &ArrayView4<f32>,
    groups: usize,
) -> Array4<f32> {
    assert!(
        isa.is_available(),
        "layers are built only on available sets"
    );
    let spec = G::SPEC;
    let (kh, kw) = spec.kernel_size;
    let taps = kh * kw;
    let (images, in_channels, in_h, in_w) = input.dim();
    let (_, out_channels, rows, width) = grad.dim();
    debug_assert_eq!(images, grad.dim().0);
    let (in_per_group, out_per_group) = (in_channels / groups, out_channels / groups);
    let mut result = Array4::zeros((out_channels, in_per_group, kh, kw));
    if images == 0 || rows == 0 || width == 0 {
        return result;
    }

    let kernel = dispatch::kernel::<G>(isa, out_per_group, in_per_group);
    let (mr, nr, lanes) = (kernel.out_block, kernel.in_block, kernel.lanes);
    let (pad_top, pad_left) = spec.pad_before();
    let (stride_h, stride_w) = spec.stride;
    let grad_layout = GradLayout {
        channels: out_channels + 1,
        rows,
        width: width.next_multiple_of(lanes),
    };
    let lowest_tap = (kh - 1) * spec.dilation.0;
    let input_layout = InputLayout {
        channels: in_channels + 1,
        rows: (pad_top + in_h).max((rows - 1) * stride_h + lowest_tap + 1),
        col_phases: stride_w,
        phase_len: (in_w + pad_left)
            .div_ceil(stride_w)
            .max(grad_layout.width + (kw - 1) * spec.dilation.1 / stride_w),
    };
    let work = images * rows * width * out_channels * in_per_group * taps;
    let parallel = work >= PARALLEL_THRESHOLD && rayon::current_num_threads() > 1;
    let band = band_rows(&spec, (mr, nr), lanes, grad_layout, input_layout);

    let (out_blocks, in_blocks) = (out_per_group.div_ceil(mr), in_per_group.div_ceil(nr));
    // One block of filters: its sums in `[m][n][tap]` order.
    let task = |operands: &Operands, index: usize| -> Vec<f32> {
        let group = index / (out_blocks * in_blocks);
        let (out_block, in_block) = (index / in_blocks % out_blocks, index % in_blocks);
        // Channels past the group's end read the zero channel; their sums are dropped.
        let channel = |first: usize, j: usize, per_group: usize, zero: usize| {
            let j = first + j;
            if j < per_group {
                group * per_group + j
            } else {
                zero
            }
        };
        let outs: Vec<usize> = (0..mr)
            .map(|m| channel(out_block * mr, m, out_per_group, out_channels))
            .collect();
        let ins: Vec<usize> = (0..nr)
            .map(|n| channel(in_block * nr, n, in_per_group, in_channels))
            .collect();
        let vector_len = kernel.vectors * lanes;
        let mut sums = vec![0.0f32; taps * mr * nr * vector_len];
        let mut tails = vec![0.0f32; taps * mr * nr];
        let mut filters = vec![0.0f32; taps * mr * nr];
        let mut job = Job {
            operands,
            out_channels: &outs,
            in_channels: &ins,
            sums: &mut sums,
            tails: &mut tails,
            filters: &mut filters,
        };
        // SAFETY: `kernel` was instantiated for `isa`, which is available (asserted above).
        unsafe { (kernel.run)(&mut job) };
        filters
    };
    let tasks = groups * out_blocks * in_blocks;
    let input_len = images * input_layout.image_stride();
    let grad_len = images * grad_layout.image_stride();
    let blocks: Vec<Vec<f32>> = with_scratch(input_len, |input_buffer| {
        with_scratch(grad_len, |grad_buffer| {
            let pads = (pad_top, pad_left);
            let finite = prepare_input(input, input_layout, pads, parallel, input_buffer);
            let grad_finite = prepare_grad(grad, grad_layout, parallel, grad_buffer);
            let operands = Operands {
                images,
                input: input_buffer,
                input_layout,
                grad: grad_buffer,
                grad_layout,
                width,
                vector_end: if finite {
                    grad_layout.width
                } else {
                    width / lanes * lanes
                },
                band,
                // Products with the padding rows are zeros unless the grad operand holds an
                // infinity or NaN, which must meet the padding to give NaN, as in PyTorch.
                real_rows: if grad_finite {
                    pad_top..pad_top + in_h
                } else {
                    0..input_layout.rows
                },
            };
            if parallel {
                (0..tasks)
                    .into_par_iter()
                    .map(|index| task(&operands, index))
                    .collect()
            } else {
                (0..tasks).map(|index| task(&operands, index)).collect()
            }
        })
    });

    // `result` is fresh, so in standard layout: each filter's taps are one run.
    let filters = result.as_slice_mut().expect("a new array is contiguous");
    for (index, block) in blocks.iter().enumerate() {
        let group = index / (out_blocks * in_blocks);
        let (out_block, in_block) = (index / in_blocks % out_blocks, index % in_blocks);
        for (block_filter, sums) in block.chunks_exact(taps).enumerate() {
            let (o, i) = (
                out_block * mr + block_filter / nr,
                in_block * nr + block_filter % nr,
            );
            if o < out_per_group && i < in_per_group {
                let filter = (group * out_per_group + o) * in_per_group + i;
                filters[filter * taps..(filter + 1) * taps].copy_from_slice(sums);
            }
        }
    }
    result
}

/// Vector steps (of one row) a tap's sweep of a band must at least take: each tap loads and
/// stores its block's accumulators once per band, which should stay a small part of the
/// multiply-adds.
const MIN_BAND_STEPS: usize = 24;

/// Grid rows per band: as many as keep the band's operand rows (the block's grad rows, and
/// the input rows its taps read) within [`BAND_BYTES`], but at least [`MIN_BAND_STEPS`]
/// vector steps, and at most every row.
fn band_rows(
    spec: &crate::GeometrySpec,
    (mr, nr): (usize, usize),
    lanes: usize,
    grad: GradLayout,
    input: InputLayout,
) -> usize {
    let (kh, stride_h, dilation_h) = (spec.kernel_size.0, spec.stride.0, spec.dilation.0);
    // A band of `b` rows reads, per tap row, `(b - 1) * stride_h + 1` input rows, starting
    // `dilation_h` apart: disjoint runs when the dilation is the larger, else one span.
    let input_rows = |b: usize| {
        let run = (b - 1) * stride_h + 1;
        if dilation_h >= run {
            kh * run
        } else {
            (kh - 1) * dilation_h + run
        }
    };
    let floats = |b: usize| mr * b * grad.width + nr * input_rows(b) * input.row_stride();
    let budget = BAND_BYTES / size_of::<f32>();
    let fits = (1..=grad.rows)
        .take_while(|&b| floats(b) <= budget)
        .last()
        .unwrap_or(1);
    let least = MIN_BAND_STEPS.div_ceil(grad.width / lanes);
    fits.max(least).min(grad.rows)
}

/// Lays the input out for the kernel in `buffer`, and says whether every value is finite. Zeros
/// around the data and in the extra channel; columns split into `col_phases` phases, prepared
/// column `c` (input column `c - pad_left`) in phase `c % col_phases` at `c / col_phases`.
fn prepare_input(
    input: &ArrayView4<f32>,
    layout: InputLayout,
    (pad_top, pad_left): (usize, usize),
    parallel: bool,
    buffer: &mut [f32],
) -> bool {
    let channels = input.dim().1;
    let one_channel = |(index, target): (usize, &mut [f32])| -> bool {
        let (image, channel) = (index / layout.channels, index % layout.channels);
        target.fill(0.0);
        if channel == channels {
            return true; // The zero channel.
        }
        let plane = input.index_axis(Axis(0), image);
        let plane = plane.index_axis(Axis(0), channel);
        prepare_plane(&plane, layout, (pad_top, pad_left), target)
    };
    let stride = layout.channel_stride();
    // Every plane is copied, whatever the earlier ones hold: no short-circuiting `all`.
    if parallel {
        let planes = buffer.par_chunks_mut(stride).enumerate().map(one_channel);
        planes.reduce(|| true, std::ops::BitAnd::bitand)
    } else {
        let planes = buffer.chunks_mut(stride).enumerate().map(one_channel);
        planes.fold(true, std::ops::BitAnd::bitand)
    }
}

/// One channel of [`prepare_input`]; whether its values are all finite.
fn prepare_plane(
    source: &ArrayView2<f32>,
    layout: InputLayout,
    (pad_top, pad_left): (usize, usize),
    target: &mut [f32],
) -> bool {
    let mut finite = true;
    // A non-contiguous row is gathered here first, one buffer for the plane.
    let mut gathered = Vec::new();
    for (y, source) in source.axis_iter(Axis(0)).enumerate() {
        let row = &mut target[(pad_top + y) * layout.row_stride()..][..layout.row_stride()];
        let source = contiguous(&source, &mut gathered);
        split_row(source, pad_left, layout.col_phases, row);
        // Folded with `&`, not `all`, so that the check vectorises.
        finite &= source
            .iter()
            .fold(true, |all, value| all & value.is_finite());
    }
    finite
}

/// Lays the grad operand out for the kernel in `buffer`, and says whether every value is
/// finite: rows padded with zeros to whole vectors, and a zero channel after the real ones.
fn prepare_grad(
    grad: &ArrayView4<f32>,
    layout: GradLayout,
    parallel: bool,
    buffer: &mut [f32],
) -> bool {
    let channels = grad.dim().1;
    let one_channel = |(index, target): (usize, &mut [f32])| -> bool {
        let (image, channel) = (index / layout.channels, index % layout.channels);
        target.fill(0.0);
        if channel == channels {
            return true;
        }
        let plane = grad.slice(s![image, channel, .., ..]);
        let mut finite = true;
        for (source, target) in plane.outer_iter().zip(target.chunks_mut(layout.width)) {
            let target = &mut target[..source.len()];
            match source.as_slice() {
                Some(source) => target.copy_from_slice(source),
                None => target.iter_mut().zip(&source).for_each(|(t, &v)| *t = v),
            }
            // Folded with `&`, not `all`, so that the check vectorises.
            finite &= target
                .iter()
                .fold(true, |all, value| all & value.is_finite());
        }
        finite
    };
    let stride = layout.channel_stride();
    if parallel {
        let planes = buffer.par_chunks_mut(stride).enumerate().map(one_channel);
        planes.reduce(|| true, std::ops::BitAnd::bitand)
    } else {
        let planes = buffer.chunks_mut(stride).enumerate().map(one_channel);
        planes.fold(true, std::ops::BitAnd::bitand)
    }
}
