//! Runs a layer: lays the input out for the kernels, splits the output into independent
//! pieces of work, and calls the row kernel on each.
//!
//! Nothing here depends on the geometry type: the geometry arrives as the instantiated row
//! kernel and plain values in the [`Engine`], so this code is compiled once, not per `conv!`.

use std::mem::MaybeUninit;
use std::ops::Range;

use ndarray::{ArrayView4, ArrayViewMut4};
use rayon::prelude::*;

use super::engine::Blocked;
use super::prepare::{PARALLEL_PREPARE, prepare};
use super::{Engine, Prepared, RowJob, rows_in};
use crate::kernels::{TASKS_PER_THREAD, forward_threads};
use crate::memory::layout::PlaneLayout;
use crate::memory::scratch::{new_token, with_scratch, with_thread_copy};
use crate::memory::shared_output::SharedOutput;
use crate::shape::geometry::GeometrySpec;

/// Convolution of `input` into `output` (standard layout, of the right shape).
pub(super) fn convolve(
    engine: &Engine,
    input: &ArrayView4<f32>,
    output: &mut ArrayViewMut4<MaybeUninit<f32>>,
) {
    let (_, channels, in_h, in_w) = input.dim();
    let out_w = output.dim().3;
    let pad_left = engine.spec.pad_before().1;
    let extent = engine.taps.phases[0]
        .extent
        .expect("a convolution has taps");
    // Output column `ow`'s window starts at prepared column `ow * stride_w`: the last tile,
    // rounded up to a whole tile, reads up to its last tap's column. No more: every float
    // beyond is read again by every channel block (dcgan-up's input gradient, 16-column
    // rows, had rows twice as long as that, 1.1 MB against 0.5, more than L2 holds).
    let last_column = extent.cols.1 as usize / engine.taps.col_stride;
    let layout = PlaneLayout {
        channels,
        rows: in_h,
        col_phases: engine.taps.col_stride,
        phase_len: (out_w.next_multiple_of(engine.rows.kernel.tile) + last_column)
            .max((in_w + pad_left).div_ceil(engine.taps.col_stride)),
    };
    let rows = RowMap {
        transposed: false,
        paired: false,
        spec: engine.spec,
        out_w,
        zero_rows_above: 0,
    };
    run(engine, &engine.rows, input, output, layout, &rows);
}

/// Transposed convolution of `input` into `output` (standard layout, of the right shape).
pub(super) fn convolve_transposed(
    engine: &Engine,
    input: &ArrayView4<f32>,
    output: &mut ArrayViewMut4<MaybeUninit<f32>>,
) {
    let (_, channels, in_h, in_w) = input.dim();
    let (out_h, out_w) = (output.dim().2, output.dim().3);
    let mut rows = RowMap {
        transposed: true,
        paired: false,
        spec: engine.spec,
        out_w,
        zero_rows_above: 0,
    };
    // The longest phase row decides which kernel runs.
    let widest = (0..engine.spec.stride.1)
        .map(|col_phase| rows.phase_cols(col_phase).len())
        .max()
        .unwrap_or(0);
    let blocked = match &engine.short_rows {
        Some(short) if !engine.rows.kernel.fills(widest) => short,
        _ => &engine.rows,
    };
    let paired = blocked.kernel.column_phases == 2;
    // The paired kernels read the rows above and below the input as zeros instead of
    // testing each tap row (see `kernel`): lay out as many as their taps reach.
    let (above, below) = if paired {
        zero_rows(engine, in_h, out_h)
    } else {
        (0, 0)
    };
    rows.paired = paired;
    rows.zero_rows_above = above;
    // Each piece's last tile, rounded up to a whole tile, reads up to the rightmost tap's
    // column (at most 0 from the tile column; prepared columns are shifted by
    // `input_shift`). No more, as for the convolution: dcgan-up's prepared input was 608 KB
    // with a tile's slack, 313 KB without, which L2 holds while every block reads it.
    let tiles_end = (0..rows.pieces_per_row())
        .map(|index| rows.piece(0, index).cols)
        .filter(|cols| !cols.is_empty())
        .map(|cols| cols.start + cols.len().next_multiple_of(blocked.kernel.tile))
        .max()
        .unwrap_or(0);
    let rightmost_tap = (engine.taps.phases.iter())
        .filter_map(|phase| phase.extent)
        .map(|extent| extent.cols.1)
        .max()
        .unwrap_or(0);
    let reach = (tiles_end + engine.input_shift).saturating_add_signed(rightmost_tap);
    let layout = PlaneLayout {
        channels,
        rows: above + in_h + below,
        col_phases: 1,
        phase_len: reach.max(in_w + engine.input_shift),
    };
    run(engine, blocked, input, output, layout, &rows);
}

/// The zero rows a transposed convolution's taps read above and below an input of `in_h`
/// rows, for an output of `out_h` rows.
fn zero_rows(engine: &Engine, in_h: usize, out_h: usize) -> (usize, usize) {
    let extents = || engine.taps.phases.iter().filter_map(|phase| phase.extent);
    // Phase rows `q` read input rows `q + row` for the phases' row offsets, all at most 0.
    let highest = extents().map(|extent| extent.rows.0).min().unwrap_or(0);
    let lowest = extents().map(|extent| extent.rows.1).max().unwrap_or(0);
    let (pad_top, stride_h) = (engine.spec.pad_before().0, engine.spec.stride.0);
    let last_origin = (out_h.saturating_sub(1) + pad_top) / stride_h;
    let below = (last_origin as isize + lowest + 1 - in_h as isize).max(0);
    (highest.unsigned_abs(), below as usize)
}

/// Where each output row's windows start and which pieces of the row each phase computes.
struct RowMap {
    transposed: bool,
    /// The kernels compute the two column phases of a stride-2 transposed convolution in
    /// one call.
    paired: bool,
    spec: GeometrySpec,
    out_w: usize,
    /// Zero rows the prepared input has above the input's first row.
    zero_rows_above: usize,
}

/// A run of one output row computed by one kernel call.
struct Piece {
    /// The (first) tap-list phase.
    phase: usize,
    /// Tile columns: output columns, or phase columns `q` of a transposed convolution.
    cols: Range<usize>,
    /// Output column of tile column `c` (in column phase `p`): `c * step + p + offset`.
    step: usize,
    offset: isize,
}

impl RowMap {
    /// The prepared row at the origin of output row `y`'s windows.
    fn origin_row(&self, y: usize) -> isize {
        let (pad_top, _) = self.spec.pad_before();
        let input_row = if self.transposed {
            ((y + pad_top) / self.spec.stride.0) as isize
        } else {
            (y * self.spec.stride.0) as isize - pad_top as isize
        };
        input_row + self.zero_rows_above as isize
    }

    /// Pieces per row: one per column phase of a transposed convolution (unless the
    /// kernels pair them), else one.
    fn pieces_per_row(&self) -> usize {
        if self.transposed && !self.paired {
            self.spec.stride.1
        } else {
            1
        }
    }

    /// The piece `index` of output row `y`. Inlined: returned through memory from a call,
    /// its column range was read back as one 16-byte load of two 8-byte stores, a store
    /// forwarding stall on every row that was a twentieth of seed-dilated's time (Intel
    /// Xeon, `perf annotate`).
    #[inline(always)]
    fn piece(&self, y: usize, index: usize) -> Piece {
        if !self.transposed {
            return Piece {
                phase: 0,
                cols: 0..self.out_w,
                step: 1,
                offset: 0,
            };
        }
        let (pad_top, pad_left) = self.spec.pad_before();
        let (stride_h, stride_w) = self.spec.stride;
        let row_phase = (y + pad_top) % stride_h;
        if self.paired {
            let (even, odd) = (self.phase_cols(0), self.phase_cols(1));
            return Piece {
                phase: row_phase * stride_w,
                cols: even.start.min(odd.start)..even.end.max(odd.end),
                step: stride_w,
                offset: -(pad_left as isize),
            };
        }
        Piece {
            phase: row_phase * stride_w + index,
            cols: self.phase_cols(index),
            step: stride_w,
            offset: index as isize - pad_left as isize,
        }
    }

    /// The phase columns `q` of column phase `col_phase` that land inside the output:
    /// output column `x = q * stride_w + col_phase - pad_left`, `0 <= x < out_w`.
    fn phase_cols(&self, col_phase: usize) -> Range<usize> {
        let (_, pad_left) = self.spec.pad_before();
        let stride_w = self.spec.stride.1;
        let first = pad_left.saturating_sub(col_phase).div_ceil(stride_w);
        let end = (self.out_w + pad_left)
            .saturating_sub(col_phase)
            .div_ceil(stride_w);
        first..end.max(first)
    }
}

/// The shared loop of both directions: per image, prepare the input, then compute every
/// (group, channel block, row range) piece, in parallel when the layer is large enough.
fn run(
    engine: &Engine,
    blocked: &Blocked,
    input: &ArrayView4<f32>,
    output: &mut ArrayViewMut4<MaybeUninit<f32>>,
    layout: PlaneLayout,
    rows: &RowMap,
) {
    let packed = &blocked.packed;
    let (_, out_channels, out_h, out_w) = output.dim();
    let work_per_image = out_channels
        * out_h
        * out_w
        * packed.in_per_group
        * engine
            .taps
            .phases
            .iter()
            .map(|p| p.taps.len())
            .sum::<usize>()
            .max(1)
        / engine.taps.phases.len();
    let threads = forward_threads(work_per_image * input.dim().0);
    // Groups share no input, so they are taken one after another. Within a group, the loop
    // order keeps the larger operand in cache and streams the smaller one:
    //
    // - Where the input is larger (most layers), tasks are runs of output rows, each
    //   computing every channel block of its rows before the next row: the input rows under
    //   a row's windows are read by every block while they are in cache. (Blocks outermost,
    //   each sweeping the whole image, read a 128x128x64 input sixteen times from L3 or
    //   memory, and ran unet-enc at half speed when another tenant held the L3.) Only when a
    //   group has fewer rows than tasks wanted are its blocks split among tasks too.
    // - Where the weights are larger (dcgan-up: 2 MB of weights, 0.3 MB of input), rows
    //   outermost streamed half of every block's weights (its row phase's taps) once per
    //   output row, 32 MB per call; so there tasks are sets of blocks, each computing all
    //   its rows before the next block, whose weights stay in L2 while the input is read
    //   once per block.
    let per_group = packed.blocks_per_group;
    let group_weights = packed.group_len();
    let group_input = packed.in_per_group * layout.channel_stride();
    let blocks_outer = group_weights > group_input;
    // Where the calling thread would lay a small input out alone, each thread lays out a
    // copy of its own instead, once per call, rather than every thread reading the one copy
    // the calling thread wrote: seed-dilated's forward pass (1.8M multiply-adds, 12K floats
    // of input) at two threads 0.0262 -> 0.0177 ms (Intel Xeon, fastest of eight alternated
    // `suite --only seed-dilated --quick` runs; medians 0.028 -> 0.020), where a second
    // thread had gained it nothing: the other core's reads of the fresh copy, not the work,
    // had cost the time. (Each task laying out its own, a copy per task rather than per
    // thread, cost its backward pass at two threads the balance of four tasks a thread.)
    let own_copies = threads > 1 && layout.image_stride() < PARALLEL_PREPARE;
    let wanted = (threads * TASKS_PER_THREAD).div_ceil(engine.groups);
    let (row_chunks, block_parts) = if blocks_outer {
        let block_parts = wanted.clamp(1, per_group.max(1));
        (
            wanted.div_ceil(block_parts).clamp(1, out_h.max(1)),
            block_parts,
        )
    } else {
        let row_chunks = wanted.clamp(1, out_h.max(1));
        (
            row_chunks,
            wanted.div_ceil(row_chunks).clamp(1, per_group.max(1)),
        )
    };
    let chunk_rows = out_h.div_ceil(row_chunks).max(1);
    let part_blocks = per_group.div_ceil(block_parts).max(1);
    let rows_per_job = if blocked.kernel.multi_row {
        let per_row = out_w * packed.in_per_group * engine.taps.phases[0].taps.len();
        let by_work = JOB_WORK.div_ceil(per_row.max(1));
        // As many whole rows as one of the kernel's strips holds.
        let by_strip = blocked.kernel.strip / out_w.next_multiple_of(blocked.kernel.tile);
        // At most `MAX_SLICES` output rows a job.
        by_work
            .max(by_strip)
            .clamp(1, chunk_rows.min(MAX_SLICES / packed.block))
    } else {
        1
    };

    let data_columns = engine.input_shift..engine.input_shift + input.dim().3;
    let shared_len = if own_copies { 0 } else { layout.image_stride() };
    with_scratch(shared_len, |scratch| {
        for (image, mut out_image) in input.outer_iter().zip(output.outer_iter_mut()) {
            let lay_out = |target: &mut [f32], threads: usize| {
                let above = rows.zero_rows_above;
                prepare(&image, engine.input_shift, layout, above, target, threads);
            };
            let token = new_token();
            let shared = (!own_copies).then(|| {
                lay_out(scratch, threads);
                Prepared::new(scratch, layout, data_columns.clone())
            });
            let plane = out_h * out_w;
            let out = SharedOutput::of(&mut out_image);
            // Output rows `y..y + job_rows` of block `b` of group `group` (one row unless the
            // kernel is multi-row).
            let rows_of_block = |prepared: &Prepared, (y, job_rows): (usize, usize), (group, b)| {
                let first_out = b * packed.block;
                let count = packed.block.min(packed.out_per_group - first_out);
                let channel0 = group * packed.out_per_group + first_out;
                let origin_row = rows.origin_row(y);
                for index in 0..rows.pieces_per_row() {
                    let Piece {
                        phase,
                        cols,
                        step,
                        offset,
                    } = rows.piece(y, index);
                    if cols.is_empty() {
                        continue;
                    }
                    assert!(
                        job_rows * count <= MAX_SLICES,
                        "jobs have at most MAX_SLICES rows"
                    );
                    // One slice per channel: its `job_rows` rows are consecutive in the
                    // output. Only the job's `count` entries are written: filling all 32
                    // entries per job (`Default::default()`) was 4% of depthwise-d2's time,
                    // which made 8192 jobs of one channel per image (Zen 3, `perf record`).
                    let first_row = y * out_w + channel0 * plane;
                    let mut storage = [const { MaybeUninit::uninit() }; MAX_SLICES];
                    let channel_rows = rows_in(
                        &mut storage,
                        (0..count).map(|j| {
                            // SAFETY: `out` points at this image's output, `plane *
                            // out_channels` floats in standard layout, so rows `y..y +
                            // job_rows` (`y + job_rows` stops at the row chunk's end, at most
                            // `out_h`) of channel `channel0 + j` are inside it. Every task
                            // writes only the rows of its row chunk in the channels of its
                            // group's blocks `part`, and the slices of one task live one
                            // kernel call at a time, so no two live slices overlap.
                            unsafe { out.slice(first_row + j * plane, job_rows * out_w) }
                        }),
                    );
                    let mut job = RowJob {
                        input: prepared,
                        channels: group * packed.in_per_group..(group + 1) * packed.in_per_group,
                        origin_row,
                        rows: job_rows,
                        origin_step: engine.spec.stride.0 as isize,
                        phase,
                        weights: packed.block(group, b),
                        bias: &engine.bias[channel0..channel0 + count],
                        cols,
                        out: channel_rows,
                        out_row_len: out_w,
                        out_step: step,
                        out_offset: offset,
                        taps: engine.taps,
                    };
                    blocked.kernel.kernel.run(&mut job);
                }
            };
            let task = |(group, chunk, part): (usize, usize, usize)| {
                let rows_here = chunk * chunk_rows..((chunk + 1) * chunk_rows).min(out_h);
                let blocks_here = part * part_blocks..((part + 1) * part_blocks).min(per_group);
                let jobs = rows_here.clone().step_by(rows_per_job);
                let jobs = jobs.map(|y| (y, rows_per_job.min(rows_here.end - y)));
                let compute = |prepared: &Prepared| {
                    if blocks_outer {
                        for b in blocks_here.clone() {
                            for job in jobs.clone() {
                                rows_of_block(prepared, job, (group, b));
                            }
                        }
                    } else {
                        for job in jobs.clone() {
                            for b in blocks_here.clone() {
                                rows_of_block(prepared, job, (group, b));
                            }
                        }
                    }
                };
                match &shared {
                    Some(prepared) => compute(prepared),
                    None => with_thread_copy(
                        token,
                        layout.image_stride(),
                        |copy| lay_out(copy, 1),
                        |copy| compute(&Prepared::new(copy, layout, data_columns.clone())),
                    ),
                }
            };
            let tasks = engine.groups * row_chunks * block_parts;
            let split = |index: usize| {
                let (group, rest) = (
                    index / (row_chunks * block_parts),
                    index % (row_chunks * block_parts),
                );
                (group, rest / block_parts, rest % block_parts)
            };
            if threads == 1 {
                (0..tasks).map(split).for_each(task);
            } else {
                (0..tasks).into_par_iter().map(split).for_each(task);
            }
        }
    });
}

/// Multiply-adds a kernel call should have at least: where a row of one output channel is
/// less work than this, a multi-row kernel gets several rows per call. One call per row cost
/// depthwise-d2 (64 columns by 9 taps per call) more in setting up calls than in its taps.
const JOB_WORK: usize = 1 << 16;

/// The most output rows (rows times channels) one kernel call writes, and the most channels
/// of a block.
const MAX_SLICES: usize = 128;
