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

use crate::{Geometry, Isa};
use kernel::{GradLayout, InputLayout, Job, Operands};

/// Below this many multiply-adds the gradient is computed on the calling thread.
const PARALLEL_THRESHOLD: usize = 1 << 22;

/// The widest vector of any instruction set, in floats.
const MAX_LANES: usize = 16;

/// The bytes of operand rows one band should keep in the L1 cache.
const BAND_BYTES: usize = 96 * 1024;

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
    debug_assert!(lanes <= MAX_LANES);
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
    let (prepared_input, finite) =
        prepare_input(input, input_layout, (pad_top, pad_left), parallel);
    let prepared_grad = prepare_grad(grad, grad_layout, parallel);

    // Rows per band: the band's grad rows and the input rows its taps read fit the budget.
    let floats = BAND_BYTES / size_of::<f32>();
    let row_stride = input_layout.row_stride();
    let per_row = mr * grad_layout.width + nr * stride_h * row_stride;
    let band = floats.saturating_sub(nr * lowest_tap * row_stride) / per_row;
    let operands = Operands {
        images,
        input: &prepared_input,
        input_layout,
        grad: &prepared_grad,
        grad_layout,
        width,
        vector_end: if finite {
            grad_layout.width
        } else {
            width / lanes * lanes
        },
        band: band.clamp(1, rows),
    };

    let (out_blocks, in_blocks) = (out_per_group.div_ceil(mr), in_per_group.div_ceil(nr));
    // One block of filters: its sums in `[m][n][tap]` order.
    let task = |index: usize| -> Vec<f32> {
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
        let mut job = Job {
            operands: &operands,
            out_channels: &outs,
            in_channels: &ins,
            sums: &mut sums,
            tails: &mut tails,
        };
        // SAFETY: `kernel` was instantiated for `isa`, which is available (asserted above).
        unsafe { (kernel.run)(&mut job) };
        let reduce = match lanes {
            4 => reduce_filters::<4>,
            8 => reduce_filters::<8>,
            16 => reduce_filters::<16>,
            _ => unreachable!("vectors are 4, 8 or 16 floats wide"),
        };
        reduce(&sums, &tails, (taps, mr, nr))
    };
    let tasks = groups * out_blocks * in_blocks;
    let blocks: Vec<Vec<f32>> = if parallel {
        (0..tasks).into_par_iter().map(task).collect()
    } else {
        (0..tasks).map(task).collect()
    };

    for (index, block) in blocks.iter().enumerate() {
        let group = index / (out_blocks * in_blocks);
        let (out_block, in_block) = (index / in_blocks % out_blocks, index % in_blocks);
        for m in 0..mr {
            for n in 0..nr {
                let (o, i) = (out_block * mr + m, in_block * nr + n);
                if o >= out_per_group || i >= in_per_group {
                    continue;
                }
                let filter = &block[(m * nr + n) * taps..(m * nr + n + 1) * taps];
                for (tap, &value) in filter.iter().enumerate() {
                    result[[group * out_per_group + o, i, tap / kw, tap % kw]] = value;
                }
            }
        }
    }
    result
}

/// One block's sums, `[m][n][tap]`, from the kernel's vector sums (`[tap][m][n]`, each a
/// run of `LANES`-wide vectors) and column tails. A fixed order: the vectors added lane by
/// lane, then the lanes folded in halves, then the tail. `LANES` is a constant so that the
/// additions are vector additions: on small grids this reduction would otherwise cost more
/// than the multiply-adds themselves.
fn reduce_filters<const LANES: usize>(
    sums: &[f32],
    tails: &[f32],
    (taps, mr, nr): (usize, usize, usize),
) -> Vec<f32> {
    let vector_len = sums.len() / tails.len();
    let mut block = Vec::with_capacity(mr * nr * taps);
    for m in 0..mr {
        for n in 0..nr {
            for tap in 0..taps {
                let filter = (tap * mr + m) * nr + n;
                let vectors = &sums[filter * vector_len..(filter + 1) * vector_len];
                let mut lane_sums = [0.0f32; LANES];
                for vector in vectors.chunks_exact(LANES) {
                    for (sum, &value) in lane_sums.iter_mut().zip(vector) {
                        *sum += value;
                    }
                }
                let mut width = LANES;
                while width > 1 {
                    width /= 2;
                    for i in 0..width {
                        lane_sums[i] += lane_sums[i + width];
                    }
                }
                block.push(lane_sums[0] + tails[filter]);
            }
        }
    }
    block
}

/// The input laid out for the kernel, and whether every value in it is finite. Zeros
/// around the data and in the extra channel; columns split into `col_phases` phases, prepared
/// column `c` (input column `c - pad_left`) in phase `c % col_phases` at `c / col_phases`.
fn prepare_input(
    input: &ArrayView4<f32>,
    layout: InputLayout,
    (pad_top, pad_left): (usize, usize),
    parallel: bool,
) -> (Vec<f32>, bool) {
    let (images, channels, ..) = input.dim();
    let mut buffer = vec![0.0f32; images * layout.image_stride()];
    let one_channel = |(index, target): (usize, &mut [f32])| -> bool {
        let (image, channel) = (index / layout.channels, index % layout.channels);
        if channel == channels {
            return true; // The zero channel.
        }
        let plane = input.index_axis(Axis(0), image);
        let plane = plane.index_axis(Axis(0), channel);
        prepare_plane(&plane, layout, (pad_top, pad_left), target)
    };
    let stride = layout.channel_stride();
    // Every plane is copied, whatever the earlier ones hold: no short-circuiting `all`.
    let finite = if parallel {
        let planes = buffer.par_chunks_mut(stride).enumerate().map(one_channel);
        planes.reduce(|| true, std::ops::BitAnd::bitand)
    } else {
        let planes = buffer.chunks_mut(stride).enumerate().map(one_channel);
        planes.fold(true, std::ops::BitAnd::bitand)
    };
    (buffer, finite)
}

/// One channel of [`prepare_input`]; whether its values are all finite.
fn prepare_plane(
    source: &ArrayView2<f32>,
    layout: InputLayout,
    (pad_top, pad_left): (usize, usize),
    target: &mut [f32],
) -> bool {
    let phases = layout.col_phases;
    let mut finite = true;
    for (y, source) in source.axis_iter(Axis(0)).enumerate() {
        let row = &mut target[(pad_top + y) * layout.row_stride()..][..layout.row_stride()];
        for phase in 0..phases {
            // The first input column whose prepared column falls in this phase.
            let first = (phase + phases - pad_left % phases) % phases;
            if first >= source.len() {
                continue;
            }
            let start = phase * layout.phase_len + (first + pad_left) / phases;
            let run = &mut row[start..(phase + 1) * layout.phase_len];
            if let (1, Some(source)) = (phases, source.as_slice()) {
                // The common case, a contiguous row copied whole: a plain copy, then one pass
                // for finiteness, both vectorised.
                let len = source.len().min(run.len());
                run[..len].copy_from_slice(&source[..len]);
                finite &= source[..len].iter().all(|value| value.is_finite());
                continue;
            }
            for (target, &value) in run.iter_mut().zip(source.slice(s![first..;phases])) {
                *target = value;
                finite &= value.is_finite();
            }
        }
    }
    finite
}

/// The grad operand laid out for the kernel: rows padded with zeros to whole vectors, and a
/// zero channel after the real ones.
fn prepare_grad(grad: &ArrayView4<f32>, layout: GradLayout, parallel: bool) -> Vec<f32> {
    let (images, channels, ..) = grad.dim();
    let mut buffer = vec![0.0f32; images * layout.image_stride()];
    let one_channel = |(index, target): (usize, &mut [f32])| {
        let (image, channel) = (index / layout.channels, index % layout.channels);
        if channel == channels {
            return;
        }
        let plane = grad.slice(s![image, channel, .., ..]);
        for (source, target) in plane.outer_iter().zip(target.chunks_mut(layout.width)) {
            for (target, &value) in target.iter_mut().zip(&source) {
                *target = value;
            }
        }
    };
    let stride = layout.channel_stride();
    if parallel {
        buffer
            .par_chunks_mut(stride)
            .enumerate()
            .for_each(one_channel);
    } else {
        buffer.chunks_mut(stride).enumerate().for_each(one_channel);
    }
    buffer
}
