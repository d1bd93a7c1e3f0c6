//! The weight gradient: a correlation of a layer's input with its output gradient, tap by
//! tap.
//!
//! For a convolution of geometry `spec` with input `x` and output gradient `gy`,
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
//! `ConvTranspose2d::backward`).
//!
//! Reads of the padding multiply by zero, as PyTorch's kernels do (so an infinity in the
//! grad operand that meets the padding gives NaN there, as in PyTorch); input columns the
//! correlation never reaches are never multiplied.
//!
//! The work is split into blocks of filters (a few output channels by a few input channels
//! of one group); each block's sums are computed by one task, over every image and row in a
//! fixed order, so the result does not depend on the thread count. Two kernels compute a
//! block (`select` chooses): the *column* kernel (`columns.rs`) holds vectors of grid
//! columns, for layers with few channels; the *channel* kernel (`channels.rs`) vectors of
//! grad channels, for layers with many, whatever the grid's width. Both read the input
//! operand laid out the same way (`input.rs`). Before either, 3x3 layers of stride 1 with
//! many channels take Winograd's transforms (`winograd.rs`): 16 products per 2x2 tile and
//! pair of channels instead of 36.
//!
//! Unlike the forward kernels, these are not specialised per geometry: the taps are run-time
//! values and every kernel is compiled once, in this crate. A tap here is not a few
//! multiply-adds in an inner loop but the outer loop around a sweep of a whole band of rows,
//! so a constant offset would save a few instructions per band: specialising would cost
//! each geometry's users the sweep's code once per tap, for nothing the benchmarks can see.

mod channels;
mod columns;
mod input;
mod select;
mod winograd;
mod winograd_kernel;

use std::ops::Range;

use ndarray::{Array4, ArrayView4};
use rayon::prelude::*;

use crate::isa::{Detected, Isa};
use crate::kernels::pool;
use crate::memory::layout::PlaneLayout;
use crate::memory::scratch::with_scratch;
use crate::memory::shared_output::SharedOutput;
use crate::shape::geometry::GeometrySpec;
use select::Kernel;

/// Below this many multiply-adds the gradient is computed on the calling thread.
const PARALLEL_THRESHOLD: usize = 1 << 22;

/// Floats per cache line (64 bytes on every machine the crate targets).
const FLOATS_PER_LINE: usize = 16;

/// The bytes of operand rows one band should keep in the L1 cache.
const BAND_BYTES: usize = 32 * 1024;

/// The correlation above: `input` is `[n, in_channels, h, w]`, `grad` is
/// `[n, out_channels, rows, cols]` (the grid the correlation sums over), and the result is
/// `[out_channels, in_channels / groups, kh, kw]`. Any layouts.
///
/// Runs on `isa`, or on the portable set where `isa` is not available. The caller
/// guarantees that both batches are equal, that `groups` divides both channel counts, and
/// that the grid is no larger than the convolution of `input` would produce plus the
/// transposed convolution's extra rows (which read zeros).
pub(crate) fn correlate(
    spec: GeometrySpec,
    isa: Isa,
    input: &ArrayView4<f32>,
    grad: &ArrayView4<f32>,
    groups: usize,
) -> Array4<f32> {
    pool::layer_call(|| correlate_here(spec, isa, input, grad, groups))
}

/// [`correlate`], as one layer call.
fn correlate_here(
    spec: GeometrySpec,
    isa: Isa,
    input: &ArrayView4<f32>,
    grad: &ArrayView4<f32>,
    groups: usize,
) -> Array4<f32> {
    let (kh, kw) = spec.kernel_size;
    let (images, in_channels, in_h, in_w) = input.dim();
    let (_, out_channels, rows, width) = grad.dim();
    debug_assert_eq!(images, grad.dim().0);
    let (in_per_group, out_per_group) = (in_channels / groups, out_channels / groups);
    let shape = (out_channels, in_per_group, kh, kw);
    if images == 0 || rows == 0 || width == 0 {
        return Array4::zeros(shape);
    }
    let work = images * rows * width * out_channels * in_per_group * kh * kw;
    let parallel = work >= PARALLEL_THRESHOLD && rayon::current_num_threads() > 1;
    if parallel {
        pool::mark_parallel();
    }
    if winograd::fits(&spec, groups, in_channels, out_channels)
        && let Some(result) = winograd::correlate(spec, isa, input, grad, parallel)
    {
        return result;
    }
    // Not zeroed: the tasks write every filter (see the end). Zeroing it first was 1.3% of
    // aspp-d12's backward (Intel Xeon, one thread, `perf record`): a pass over 2.4 MB, more
    // than L2 holds, that left the cache before the tasks wrote.
    let mut result = Array4::uninit(shape);

    let kernel = select::kernel(Detected::or_portable(isa), out_per_group, in_per_group);
    let (pad_top, pad_left) = spec.pad_before();
    let (stride_h, stride_w) = spec.stride;
    let lowest_tap = (kh - 1) * spec.dilation.0;
    let input_layout = PlaneLayout {
        channels: in_channels + 1,
        rows: (pad_top + in_h).max((rows - 1) * stride_h + lowest_tap + 1),
        col_phases: stride_w,
        phase_len: (in_w + pad_left)
            .div_ceil(stride_w)
            .max(kernel.columns_read(width) + (kw - 1) * spec.dilation.1 / stride_w),
    };
    let blocking = kernel.blocking();
    let filters = Filters {
        // `result` is fresh, so in standard layout.
        result: SharedOutput(result.as_mut_ptr()),
        len: result.len(),
        out_per_group,
        in_per_group,
        taps: kh * kw,
        blocking,
    };
    with_scratch(images * input_layout.image_stride(), |buffer| {
        let pads = (pad_top, pad_left);
        let finite = input::prepare_input(input, input_layout, pads, parallel, buffer);
        let problem = Problem {
            spec,
            groups,
            in_channels,
            out_channels,
            rows,
            width,
            input: buffer,
            input_layout,
            input_finite: finite,
            data_rows: pad_top..pad_top + in_h,
            data_columns: pad_left..pad_left + in_w,
            parallel,
        };
        match kernel {
            Kernel::Columns(kernel) => columns::filter_blocks(kernel, &problem, grad, &filters),
            Kernel::Channels(kernel) => channels::filter_blocks(kernel, &problem, grad, &filters),
        }
    });
    // SAFETY: both kernels' `filter_blocks` run every block of every group through
    // `Problem::run_tasks`, and `Filters::write` writes each block's filters, every pair of an
    // output channel and an input channel of the group inside the block: the blocks tile
    // the result, so every element is written.
    unsafe { result.assume_init() }
}

/// The result array, uninitialised until every task has written its block of filters into
/// it, at once.
pub(crate) struct Filters {
    /// `[out_channels][in_per_group][tap]`, `len` floats.
    result: SharedOutput,
    len: usize,
    out_per_group: usize,
    in_per_group: usize,
    taps: usize,
    blocking: Blocking,
}

impl Filters {
    /// Writes block `(group, out_block, in_block)`'s filters, `[out][in][tap]` within the
    /// block, into the result; the block's channels past the group's are padding, left out.
    /// The filters of one output channel and consecutive input channels are one run in both,
    /// copied as one, by the task that computed them while they are in its cache (one
    /// serial copy of every block after the tasks, a few filters at a time, was 2% of
    /// dcgan-up's backward, Zen 4).
    fn write(&self, at: (usize, usize, usize), block: &[f32]) {
        let run = self.blocking.in_block * self.taps;
        assert_eq!(block.len(), self.blocking.out_block * run);
        for (sums, (start, len)) in block.chunks_exact(run).zip(self.runs(at)) {
            assert!(start + len <= self.len);
            // SAFETY: inside the result (asserted); blocks are disjoint sets of
            // (output channel, input channel) pairs, and each task writes only its
            // block's, so no other task's range overlaps this one.
            let target = unsafe { self.result.slice(start, len) };
            for (slot, &value) in target.iter_mut().zip(&sums[..len]) {
                slot.write(value);
            }
        }
    }

    /// The cache lines block `at`'s filters go to, for its kernel to prefetch while it
    /// computes them: the result is written a few hundred bytes per output channel per task,
    /// and where it is larger than L2 (2.4 MB in aspp-d12) each of those lines was a miss
    /// when written, 3% of aspp-d12's backward (Intel Xeon, one thread, `perf record`).
    /// Pointers that are never read, only prefetched.
    pub fn lines(&self, at: (usize, usize, usize)) -> Vec<*const f32> {
        let result = self.result.0.cast::<f32>().cast_const();
        let per_run = (self.blocking.in_block * self.taps).div_ceil(FLOATS_PER_LINE) + 1;
        let mut lines = Vec::with_capacity(self.blocking.out_block * per_run);
        // Plain loops: as a chain of iterator adapters, building the list was 2% of
        // aspp-d12's backward.
        for (start, len) in self.runs(at) {
            let mut index = start;
            while index < start + len {
                lines.push(result.wrapping_add(index));
                index += FLOATS_PER_LINE;
            }
            lines.push(result.wrapping_add(start + len - 1));
        }
        lines
    }

    /// Where block `(group, out_block, in_block)`'s filters go in the result: for each output
    /// channel of the group inside the block, in order, the start and length of its run of
    /// `ins * taps` floats (its filters of the block's input channels).
    fn runs(
        &self,
        (group, out_block, in_block): (usize, usize, usize),
    ) -> impl Iterator<Item = (usize, usize)> + use<> {
        let (blocking, taps) = (self.blocking, self.taps);
        let (in_per_group, out_per_group) = (self.in_per_group, self.out_per_group);
        let first_in = in_block * blocking.in_block;
        let ins = blocking.in_block.min(in_per_group - first_in);
        let first_out = out_block * blocking.out_block;
        let outs = blocking.out_block.min(out_per_group - first_out);
        (first_out..first_out + outs).map(move |o| {
            let filter = (group * out_per_group + o) * in_per_group + first_in;
            (filter * taps, ins * taps)
        })
    }
}

/// How a kernel blocks the filters: `out_block` output (grad) channels by `in_block` input
/// channels of one group per task.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Blocking {
    pub out_block: usize,
    pub in_block: usize,
}

impl Blocking {
    /// Blocks per group, of output and of input channels.
    fn counts(&self, out_per_group: usize, in_per_group: usize) -> (usize, usize) {
        (
            out_per_group.div_ceil(self.out_block),
            in_per_group.div_ceil(self.in_block),
        )
    }

    /// Block `index` in block order (groups, then output blocks, then input blocks), as
    /// `(group, out_block, in_block)`.
    fn block_at(
        &self,
        index: usize,
        out_per_group: usize,
        in_per_group: usize,
    ) -> (usize, usize, usize) {
        let (out_blocks, in_blocks) = self.counts(out_per_group, in_per_group);
        (
            index / (out_blocks * in_blocks),
            index / in_blocks % out_blocks,
            index % in_blocks,
        )
    }
}

/// What both kernels' drivers share: the sizes, and the input operand, prepared.
pub(crate) struct Problem<'a> {
    pub spec: GeometrySpec,
    pub groups: usize,
    pub in_channels: usize,
    pub out_channels: usize,
    /// The grid: the grad operand's rows and columns.
    pub rows: usize,
    pub width: usize,
    pub input: &'a [f32],
    pub input_layout: PlaneLayout,
    /// Whether every input value is finite.
    pub input_finite: bool,
    /// The prepared input rows that hold the input's rows (the rest are padding).
    pub data_rows: Range<usize>,
    /// The prepared input columns (before the split into column phases) that hold the
    /// input's columns.
    pub data_columns: Range<usize>,
    pub parallel: bool,
}

impl<'a> Problem<'a> {
    /// Both operands as a kernel reads them: the prepared input, and the grad operand
    /// `grad` laid out by the kernel's `grad_layout` (all finite if `grad_finite`), swept
    /// in bands of `band` rows.
    pub fn operands<'g, L>(
        &self,
        grad: &'g [f32],
        grad_layout: L,
        grad_finite: bool,
        band: usize,
    ) -> Operands<'g, L>
    where
        'a: 'g,
    {
        Operands {
            spec: self.spec,
            images: self.images(),
            input: self.input,
            input_layout: self.input_layout,
            grad,
            grad_layout,
            band,
            real_rows: self.real_rows(grad_finite),
            real_columns: self.real_columns(grad_finite),
        }
    }

    pub fn images(&self) -> usize {
        self.input.len() / self.input_layout.image_stride()
    }

    /// The prepared rows a kernel must read. Products with the padding rows are zeros
    /// unless the grad operand holds an infinity or NaN, which must meet the padding to give
    /// NaN, as in PyTorch.
    pub fn real_rows(&self, grad_finite: bool) -> Range<usize> {
        if grad_finite {
            self.data_rows.clone()
        } else {
            0..self.input_layout.rows
        }
    }

    /// The prepared columns (before the split into column phases) the channel kernel must
    /// read, as [`Problem::real_rows`]: all of them where the grad operand is not finite.
    pub fn real_columns(&self, grad_finite: bool) -> Range<usize> {
        if grad_finite {
            self.data_columns.clone()
        } else {
            0..usize::MAX
        }
    }

    /// Input channel `first + n` of `group` (counted within the group), or the zero channel
    /// past the group's end.
    pub fn input_channel(&self, group: usize, first: usize, n: usize) -> usize {
        channel_or_zero(
            group,
            first + n,
            self.in_channels / self.groups,
            self.in_channels,
        )
    }

    /// Grad channel `first + m` of `group`, or the zero channel past the group's end.
    pub fn grad_channel(&self, group: usize, first: usize, m: usize) -> usize {
        channel_or_zero(
            group,
            first + m,
            self.out_channels / self.groups,
            self.out_channels,
        )
    }

    /// Grid rows per band: as many as keep the band's operand rows (`grad_row` floats of
    /// the block's grad operand per grid row, and the rows of `in_block` input channels its
    /// taps read) within [`BAND_BYTES`], but at least `least`, and at most every row.
    pub fn band(&self, grad_row: usize, in_block: usize, least: usize) -> usize {
        let spec = &self.spec;
        let (kh, stride_h, dilation_h) = (spec.kernel_size.0, spec.stride.0, spec.dilation.0);
        // A band of `b` rows reads, per tap row, `(b - 1) * stride_h + 1` input rows,
        // starting `dilation_h` apart: disjoint runs when the dilation is the larger, else
        // one span.
        let input_rows = |b: usize| {
            let run = (b - 1) * stride_h + 1;
            if dilation_h >= run {
                kh * run
            } else {
                (kh - 1) * dilation_h + run
            }
        };
        let row_stride = self.input_layout.row_stride();
        let floats = |b: usize| b * grad_row + in_block * input_rows(b) * row_stride;
        let budget = BAND_BYTES / size_of::<f32>();
        let fits = (1..=self.rows)
            .take_while(|&b| floats(b) <= budget)
            .last()
            .unwrap_or(1);
        fits.max(least).min(self.rows)
    }

    /// Runs `task(group, out_block, in_block, block)` for every block of `blocking`, in
    /// parallel when the problem is large; each task fills `block` with its block's
    /// filters, `[out][in][tap]`, which go into `filters` from the task that computed them.
    /// `block` is a buffer of the thread's (unspecified contents), reused from task to task:
    /// a fresh zeroed vector per task, and another per kernel's sums, were 2% of aspp-d12's
    /// backward in allocating and zeroing (Intel Xeon, one thread, `perf record`).
    pub fn run_tasks(
        &self,
        blocking: Blocking,
        filters: &Filters,
        task: impl Fn(usize, usize, usize, &mut [f32]) + Sync,
    ) {
        let (out_per_group, in_per_group) = (
            self.out_channels / self.groups,
            self.in_channels / self.groups,
        );
        let (out_blocks, in_blocks) = blocking.counts(out_per_group, in_per_group);
        let block_len = blocking.out_block * blocking.in_block * filters.taps;
        let one = |index: usize| {
            let at = blocking.block_at(index, out_per_group, in_per_group);
            with_scratch(block_len, |block| {
                task(at.0, at.1, at.2, block);
                filters.write(at, block);
            });
        };
        let tasks = self.groups * out_blocks * in_blocks;
        if self.parallel {
            (0..tasks).into_par_iter().for_each(one);
        } else {
            (0..tasks).for_each(one);
        }
    }
}

/// One tap of the convolution: the filter's weight `weight` (`th * kw + tw`) multiplies the
/// input `(row, col) = (th * dh, tw * dw)` from the window origin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Tap {
    pub weight: usize,
    pub row: usize,
    pub col: usize,
}

/// The convolution's taps, in filter order.
pub(crate) fn taps(spec: &GeometrySpec) -> impl Iterator<Item = Tap> {
    let ((kh, kw), (dh, dw)) = (spec.kernel_size, spec.dilation);
    (0..kh * kw).map(move |weight| Tap {
        weight,
        row: weight / kw * dh,
        col: weight % kw * dw,
    })
}

/// Both operands of the correlation, for every image, as a kernel reads them: the input
/// laid out by `input.rs`, the grad operand by the kernel's own layout `L`.
pub(crate) struct Operands<'a, L> {
    pub spec: GeometrySpec,
    pub images: usize,
    pub input: &'a [f32],
    pub input_layout: PlaneLayout,
    pub grad: &'a [f32],
    pub grad_layout: L,
    /// Grid rows per band.
    pub band: usize,
    /// The prepared input rows the kernel must read: a tap skips the grid rows that would
    /// read only rows outside this range (padding whose products are known to be zero).
    pub real_rows: Range<usize>,
    /// Likewise the prepared columns (before the split into column phases), which the
    /// channel kernel skips pixel by pixel; the column kernel reads whole vectors of them.
    pub real_columns: Range<usize>,
}

impl<L> Operands<'_, L> {
    /// Asserts what a kernel's unchecked input reads rely on, for a grid of `rows` rows of
    /// which it reads `columns` columns: every image inside the buffer, and every tap's rows
    /// and columns inside the prepared ones.
    pub fn check_input_reads(&self, spec: &GeometrySpec, rows: usize, columns: usize) {
        let input = self.input_layout;
        assert!(self.input.len() >= self.images * input.image_stride());
        assert_eq!(input.col_phases, spec.stride.1);
        if rows > 0 {
            // The last grid row's lowest tap row.
            let lowest = (rows - 1) * spec.stride.0 + (spec.kernel_size.0 - 1) * spec.dilation.0;
            assert!(lowest < input.rows);
        }
        let max_shift = (spec.kernel_size.1 - 1) * spec.dilation.1 / spec.stride.1;
        assert!(columns + max_shift <= input.phase_len);
        assert!(self.band > 0);
    }

    /// The bands of a grid of `rows` rows, top to bottom.
    pub fn bands(&self, rows: usize) -> impl Iterator<Item = Range<usize>> {
        let band = self.band;
        (0..rows)
            .step_by(band)
            .map(move |start| start..(start + band).min(rows))
    }

    /// The grid rows of `band` whose row of a tap `tap_row` rows below the window origin is
    /// one the kernel must read.
    pub fn tap_rows(&self, band: &Range<usize>, tap_row: usize, stride_h: usize) -> Range<usize> {
        let real = &self.real_rows;
        let first = real.start.saturating_sub(tap_row).div_ceil(stride_h);
        let end = real.end.saturating_sub(tap_row).div_ceil(stride_h);
        band.start.max(first)..band.end.min(end)
    }

    /// The grid columns, of `width`, whose column of a tap `tap_col` columns right of the
    /// window origin is one the kernel must read.
    pub fn tap_columns(&self, width: usize, tap_col: usize, stride_w: usize) -> Range<usize> {
        let real = &self.real_columns;
        let first = real.start.saturating_sub(tap_col).div_ceil(stride_w);
        let end = real.end.saturating_sub(tap_col).div_ceil(stride_w);
        first.min(width)..end.min(width)
    }
}

/// Fills `buffer` a chunk of `stride` floats at a time, `fill((index, chunk))` each, in
/// parallel when asked; whether every call returned true. Every chunk is filled, whatever
/// the earlier ones returned: no short-circuiting `all`.
pub(crate) fn fill_chunks(
    buffer: &mut [f32],
    stride: usize,
    parallel: bool,
    fill: impl Fn((usize, &mut [f32])) -> bool + Sync + Send,
) -> bool {
    if parallel {
        let chunks = buffer.par_chunks_mut(stride).enumerate().map(fill);
        chunks.reduce(|| true, std::ops::BitAnd::bitand)
    } else {
        let chunks = buffer.chunks_mut(stride).enumerate().map(fill);
        chunks.fold(true, std::ops::BitAnd::bitand)
    }
}

/// Whether every value of `values` is finite. Folded with `&`, not `all`, so that the check
/// vectorises.
pub(crate) fn all_finite(values: &[f32]) -> bool {
    values
        .iter()
        .fold(true, |all, value| all & value.is_finite())
}

/// Channel `j` of `group` (of `per_group` channels), or the zero channel `zero` (the one after
/// the real ones) when `j` is past the group's end.
fn channel_or_zero(group: usize, j: usize, per_group: usize, zero: usize) -> usize {
    if j < per_group {
        group * per_group + j
    } else {
        zero
    }
}
