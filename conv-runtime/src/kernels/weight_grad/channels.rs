//! The weight-gradient kernel for layers with many channels on both sides: vectors across
//! the grad operand's channels, written once for every instruction set.
//!
//! One call computes an `MV * LANES x NR` block of filters (`MV` vectors of grad channels by
//! `NR` input channels) over every image. As in the column kernel (`columns.rs`), the taps
//! are the outer loop and each tap sweeps a band of rows with its accumulators in registers;
//! but here the inner loop walks the grid one *pixel* at a time: it loads the pixel's `MV`
//! vectors of grad channels and multiplies them by each of the `NR` input values the tap
//! reads there, broadcast. That is the forward kernels' register blocking turned around, and
//! it has what the column kernel lacks on narrow grids: a row of `w` pixels is `w` steps of
//! `MV x NR` multiply-adds, not `w / LANES` steps, so the per-row work (moving the row
//! pointers, reloading accumulators between bands) is small beside it; and each accumulator
//! lane is one filter's whole sum, so nothing is reduced across lanes at the end.
//!
//! The grad operand is laid out for it channels-last, one block of channels at a time
//! (see [`ChannelLayout`]); the input as for the column kernel
//! ([`PlaneLayout`](crate::memory::layout::PlaneLayout), `input.rs`).

use std::ops::Range;

use ndarray::ArrayView4;

use super::{Blocking, Filters, Problem, Tap, all_finite, fill_chunks};
use crate::isa::{Compiled, Family, Kernel, Simd};
use crate::memory::scratch::with_scratch;
use crate::memory::transpose::{Transpose, TransposeFamily, TransposeJob};

/// Pixels of each channel's plane [`prepare_grad`] stages at a time: runs of 4 KB, long
/// enough for the hardware to prefetch them (runs of 1 KB left twice the time in copying).
const STAGE_RUN: usize = 1024;

/// Floats from one channel's run to the next in the staging buffer: a cache line more than a
/// run, so that the channels' runs fall in different cache sets.
const STAGE_STRIDE: usize = STAGE_RUN + 16;

/// Grid pixels a tap's sweep of a band must at least cover: each tap loads and stores its
/// block's accumulators once per band, which should stay a small part of the multiply-adds.
const MIN_BAND_PIXELS: usize = 64;

/// Every block of filters of `problem` by `kernel`, each `[out][in][tap]` within the block,
/// into `filters`.
pub(crate) fn filter_blocks(
    kernel: ChannelKernel,
    problem: &Problem<'_>,
    grad: &ArrayView4<f32>,
    filters: &Filters,
) {
    let Blocking {
        out_block: block,
        in_block: nr,
    } = kernel.blocking();
    let images = problem.images();
    let blocks_per_group = (problem.out_channels / problem.groups).div_ceil(block);
    let layout = ChannelLayout {
        blocks: problem.groups * blocks_per_group,
        blocks_per_group,
        rows: problem.rows,
        width: problem.width,
        block,
    };
    let least = MIN_BAND_PIXELS.div_ceil(problem.width);
    let band = problem.band(layout.row_stride(), nr, least);
    let taps = problem.spec.kernel_size.0 * problem.spec.kernel_size.1;
    with_scratch(images * layout.image_stride(), |buffer| {
        let grad_finite = prepare_grad(grad, layout, kernel.transpose, problem.parallel, buffer);
        let operands = problem.operands(buffer, layout, grad_finite, band);
        problem.run_tasks(
            kernel.blocking(),
            filters,
            |group, out_block, in_block, block_filters| {
                let ins: Vec<usize> = (0..nr)
                    .map(|n| problem.input_channel(group, in_block * nr, n))
                    .collect();
                let result_lines = filters.lines((group, out_block, in_block));
                with_scratch(taps * nr * block, |sums| {
                    sums.fill(0.0);
                    let mut job = Job {
                        operands: &operands,
                        block: group * blocks_per_group + out_block,
                        in_channels: &ins,
                        sums,
                        result_lines: &result_lines,
                    };
                    kernel.run.run(&mut job);
                    // `[n][tap][j]` to the filter order `[j][n][tap]`: the `nr * taps` runs
                    // of `block` sums transposed as the grad operand's runs are. One value
                    // at a time, the reads striding through `sums`, this was 8% of
                    // dcgan-up's backward (Zen 4, one thread, 5.42 ms against 5.00 without
                    // it).
                    kernel.transpose.run(&mut TransposeJob {
                        stage: sums,
                        stride: block,
                        channels: nr * taps,
                        block: nr * taps,
                        offset: 0,
                        target: block_filters,
                    });
                });
            },
        )
    })
}

/// The shape of the prepared grad operand: `[image][block][row][col][channel in block]`,
/// each group's channels in blocks of `block`, the last padded with zero channels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ChannelLayout {
    /// Blocks of every group, `groups * blocks_per_group`.
    pub blocks: usize,
    pub blocks_per_group: usize,
    /// Grid rows.
    pub rows: usize,
    /// Grid columns.
    pub width: usize,
    /// Channels per block: `MV * LANES`.
    pub block: usize,
}

impl ChannelLayout {
    pub fn row_stride(&self) -> usize {
        self.width * self.block
    }

    pub fn block_stride(&self) -> usize {
        self.rows * self.row_stride()
    }

    pub fn image_stride(&self) -> usize {
        self.blocks * self.block_stride()
    }
}

/// The operands as the channel kernel reads them.
pub(crate) type Operands<'a> = super::Operands<'a, ChannelLayout>;

/// One block of filters: everything a kernel call needs.
pub(crate) struct Job<'a> {
    pub operands: &'a Operands<'a>,
    /// The grad operand's block (`group * blocks_per_group + block`).
    pub block: usize,
    /// The input channel of each of the `NR` block columns (or the zero channel).
    pub in_channels: &'a [usize],
    /// The result, `[NR][tap][block channel]`: zeros on entry, each filter's sum on return.
    pub sums: &'a mut [f32],
    /// Cache lines to prefetch along the way: where the block's filters will be written.
    pub result_lines: &'a [*const f32],
}

/// The channel kernels' family: every kernel computes one [`Job`].
pub(crate) struct ChannelFamily;

impl Family for ChannelFamily {
    type Job<'a> = Job<'a>;
}

/// The channel kernel blocked `MV` vectors of grad channels by `NR` input channels.
pub(crate) struct Channels<const MV: usize, const NR: usize>;

impl<const MV: usize, const NR: usize> Kernel<ChannelFamily> for Channels<MV, NR> {
    #[inline(always)]
    fn run<S: Simd>(simd: S, job: &mut Job<'_>) {
        correlate::<S, MV, NR>(simd, job);
    }
}

/// A channel kernel compiled for an instruction set, and the blocking it was compiled with.
#[derive(Clone, Copy)]
pub(crate) struct ChannelKernel {
    pub run: Compiled<ChannelFamily>,
    /// Vectors of grad channels per block: `MV`.
    pub vectors: usize,
    /// Input channels per block: `NR`.
    pub in_block: usize,
    /// Floats per vector.
    pub lanes: usize,
    /// The transposition that lays the grad operand out for it, compiled for the same set.
    pub transpose: Compiled<TransposeFamily>,
}

impl ChannelKernel {
    /// `Channels<MV, NR>` compiled for `S`.
    pub fn new<S: Simd, const MV: usize, const NR: usize>(simd: S) -> Self {
        ChannelKernel {
            run: Compiled::new::<Channels<MV, NR>, S>(simd),
            transpose: Compiled::new::<Transpose, S>(simd),
            vectors: MV,
            in_block: NR,
            lanes: S::LANES,
        }
    }

    pub fn blocking(&self) -> Blocking {
        Blocking {
            out_block: self.vectors * self.lanes,
            in_block: self.in_block,
        }
    }
}

/// The filter block's sums over every image and grid row. See the module documentation.
#[inline(always)]
fn correlate<S: Simd, const MV: usize, const NR: usize>(simd: S, job: &mut Job<'_>) {
    let operands = job.operands;
    let (input, grad) = (operands.input_layout, operands.grad_layout);
    let spec = operands.spec;
    let taps = spec.kernel_size.0 * spec.kernel_size.1;
    // What every unchecked load below relies on.
    assert!(job.in_channels.len() == NR && job.block < grad.blocks);
    assert!(job.in_channels.iter().all(|&c| c < input.channels));
    assert_eq!(grad.block, MV * S::LANES);
    assert!(operands.grad.len() >= operands.images * grad.image_stride());
    operands.check_input_reads(&spec, grad.rows, grad.width);
    assert_eq!(job.sums.len(), taps * NR * grad.block);

    // The result's lines a few at a time, spread over every tap's sweep of every band: all
    // at once, the prefetches waited on each other's misses.
    let sweeps = operands.images * operands.bands(grad.rows).count() * taps;
    let per_sweep = job.result_lines.len().div_ceil(sweeps.max(1));
    let mut result_lines = job.result_lines.iter();
    for image in 0..operands.images {
        for rows in operands.bands(grad.rows) {
            let mut pass = TapPass::<S, MV, NR> {
                operands,
                input_base: std::array::from_fn(|n| {
                    image * input.image_stride() + job.in_channels[n] * input.channel_stride()
                }),
                grad_base: image * grad.image_stride() + job.block * grad.block_stride(),
                rows,
                sums: job.sums,
                simd,
            };
            for tap in super::taps(&spec) {
                for &line in result_lines.by_ref().take(per_sweep) {
                    simd.prefetch(line);
                }
                pass.tap(tap);
            }
        }
    }
}

/// One band of rows of one image, seen as the visitor of every tap.
struct TapPass<'j, 'a, S, const MV: usize, const NR: usize> {
    operands: &'a Operands<'a>,
    /// Where each block column's input channel of this image starts.
    input_base: [usize; NR],
    /// Where the block of grad channels of this image starts.
    grad_base: usize,
    rows: Range<usize>,
    sums: &'j mut [f32],
    simd: S,
}

impl<S: Simd, const MV: usize, const NR: usize> TapPass<'_, '_, S, MV, NR> {
    /// Adds tap `weight`'s products over the band to its sums. `row` and `col` are the tap's
    /// offsets from the window origin, `(th * dh, tw * dw)`, never negative.
    #[inline(always)]
    fn tap(&mut self, Tap { weight, row, col }: Tap) {
        let (stride_h, stride_w) = self.operands.spec.stride;
        let (operands, simd) = (self.operands, self.simd);
        let (input_layout, grad_layout) = (operands.input_layout, operands.grad_layout);
        let rows = operands.tap_rows(&self.rows, row, stride_h);
        // Only the pixels whose input is real: aspp-d12 (dilation and padding 12, 32
        // columns) reads padding with a quarter of its column taps' pixels.
        let columns = operands.tap_columns(grad_layout.width, col, stride_w);
        if rows.is_empty() || columns.is_empty() {
            return;
        }
        // Input channel `n`'s sums of this tap, `[NR][tap][block channel]`.
        let block = MV * S::LANES;
        let taps = self.sums.len() / (NR * block);
        assert!(weight < taps);
        // (Loops, not `array::from_fn`: a closure is compiled without the set's features,
        // and its intrinsics can be calls.)
        let mut acc = [[simd.splat(0.0); MV]; NR];
        for (n, acc) in acc.iter_mut().enumerate() {
            let sums = &self.sums[(n * taps + weight) * block..][..block];
            for (v, acc) in acc.iter_mut().enumerate() {
                // SAFETY: `sums` holds `MV * LANES` floats.
                *acc = unsafe { simd.load(sums.as_ptr().add(v * S::LANES)) };
            }
        }
        // Grid column `ox` reads prepared column `ox * stride_w + col`: column phase
        // `col % stride_w`, at `ox + col / stride_w` within it.
        let column = col % stride_w * input_layout.phase_len + col / stride_w;
        let first_input = (rows.start * stride_h + row) * input_layout.row_stride();
        let (input, grad) = (operands.input.as_ptr(), operands.grad.as_ptr());
        // Row pointers, moved one row on per row: `wrapping_add` keeps that defined even
        // after the last row, whose successors are never read.
        let mut x_rows: [*const f32; NR] =
            std::array::from_fn(|n| input.wrapping_add(self.input_base[n] + first_input + column));
        let mut g_row = grad.wrapping_add(self.grad_base + rows.start * grad_layout.row_stride());
        let x_step = stride_h * input_layout.row_stride();
        for _ in rows {
            let mut g = g_row.wrapping_add(columns.start * MV * S::LANES);
            for ox in columns.clone() {
                // SAFETY: `correlate` asserted that the channels and the block are the
                // buffers' and the images in them, that every grid row's tap rows are inside
                // the prepared rows (`(rows - 1) * stride_h + row < input.rows`), and that
                // `width + col / stride_w <= phase_len`: so pixel `ox` of a band row, its
                // `MV` vectors of grad channels and the input value each channel's tap reads
                // there, are inside the buffers.
                let grads: [S::Vector; MV] =
                    std::array::from_fn(|v| unsafe { simd.load(g.add(v * S::LANES)) });
                for (acc, &x_row) in acc.iter_mut().zip(&x_rows) {
                    // SAFETY: as above.
                    let x = simd.splat(unsafe { *x_row.add(ox) });
                    for (acc, &grad) in acc.iter_mut().zip(&grads) {
                        *acc = simd.mul_add(grad, x, *acc);
                    }
                }
                g = g.wrapping_add(MV * S::LANES);
            }
            for row in &mut x_rows {
                *row = row.wrapping_add(x_step);
            }
            g_row = g_row.wrapping_add(grad_layout.row_stride());
        }
        for (n, acc) in acc.iter().enumerate() {
            let sums = &mut self.sums[(n * taps + weight) * block..][..block];
            for (v, &acc) in acc.iter().enumerate() {
                simd.store(&mut sums[v * S::LANES..], acc);
            }
        }
    }
}

/// Lays the grad operand out for the kernel in `buffer`, and says whether every value is
/// finite: each group's channels in blocks of `layout.block`, channels-last within a block,
/// zeros in the channels past the group's end.
pub(crate) fn prepare_grad(
    grad: &ArrayView4<f32>,
    layout: ChannelLayout,
    transpose: Compiled<TransposeFamily>,
    parallel: bool,
    buffer: &mut [f32],
) -> bool {
    let (images, channels) = (grad.dim().0, grad.dim().1);
    let pixels = layout.rows * layout.width;
    let per_group = channels / (layout.blocks / layout.blocks_per_group);
    // Channel planes as slices: a grad not in standard layout is copied once.
    let grad = grad.as_standard_layout();
    let grad = grad.as_slice().expect("standard layout");
    let one_block = |(index, target): (usize, &mut [f32])| -> bool {
        let (image, block) = (index / layout.blocks, index % layout.blocks);
        let (group, b) = (
            block / layout.blocks_per_group,
            block % layout.blocks_per_group,
        );
        let first = b * layout.block;
        let count = layout.block.min(per_group - first);
        let plane = |j: usize| {
            let channel = image * channels + group * per_group + first + j;
            &grad[channel * pixels..][..pixels]
        };
        // A block is the transpose of its channels' planes (pixels in row-major order). It
        // goes through a staging buffer, in two passes that each run along memory: a run of
        // each channel's plane, then pixel after pixel, each pixel's channels from the runs.
        // Storing channel after channel into every `block`-th float instead, a cache miss
        // per store for planes larger than the cache, was 15% of unet-up's backward (Zen 4,
        // one thread, `perf record`; 7.6% now): unet-up's backward 1.07x faster (eight
        // alternated rounds, median 6.53 -> 6.09 ms), dcgan-up's 1.04x (5.68 -> 5.46 ms).
        // A small plane is staged whole, a cache line apart too.
        let stride = STAGE_STRIDE.min(pixels + 16);
        let mut stage = vec![0.0f32; count * stride];
        let mut finite = true;
        for start in (0..pixels).step_by(STAGE_RUN) {
            let run = STAGE_RUN.min(pixels - start);
            for (j, staged) in stage.chunks_exact_mut(stride).enumerate() {
                staged[..run].copy_from_slice(&plane(j)[start..start + run]);
            }
            let target = &mut target[start * layout.block..(start + run) * layout.block];
            transpose.run(&mut TransposeJob {
                stage: &stage,
                stride,
                channels: count,
                block: layout.block,
                offset: 0,
                target: &mut *target,
            });
            finite &= all_finite(target);
        }
        finite
    };
    let buffer = &mut buffer[..images * layout.image_stride()];
    fill_chunks(buffer, layout.block_stride(), parallel, one_block)
}
