//! The weight-gradient kernel for layers with few channels: vectors of grid columns, written
//! once for every instruction set.
//!
//! One call computes the partial sums of an `MR x NR` block of filters (`MR` output
//! channels, the *grad* operand, by `NR` input channels, the *input* operand) over every
//! image. The taps are the outer loop: [`TapPass::tap`] runs once per tap, and each tap
//! sweeps a band of rows with its
//! `MR x NR x WV` vector accumulators in registers, one multiply-add per (output channel,
//! input channel) pair per vector of grid columns. Holding one tap's accumulators at a time
//! (rather than every tap's) keeps them in registers whatever the kernel size; the band is
//! sized so that the rows it reads stay in the L1 cache while every tap sweeps them.
//!
//! Both operands are read from buffers laid out for this kernel (see [`Operands`]), never from
//! the user's arrays: the input zero-padded on every side and split into column-stride phases,
//! so that a tap's input columns for consecutive grid columns are one contiguous load; the
//! grad rows zero-padded to whole vectors.

use std::ops::Range;

use ndarray::{ArrayView4, s};

use super::{Blocking, Filters, Problem, Tap, all_finite, fill_chunks};
use crate::isa::{Compiled, Family, Kernel, Simd};
use crate::memory::aligned::floats_to_line;
use crate::memory::scratch::with_scratch;

/// The widest vector of any instruction set, in floats.
const MAX_LANES: usize = 16;

/// Vector steps (of one row) a tap's sweep of a band must at least take: each tap loads and
/// stores its block's accumulators once per band, which should stay a small part of the
/// multiply-adds.
const MIN_BAND_STEPS: usize = 24;

/// Every block of filters of `problem` by `kernel`, each `[MR][NR][tap]`, into `filters`.
pub(crate) fn filter_blocks(
    kernel: ColumnKernel,
    problem: &Problem<'_>,
    grad: &ArrayView4<f32>,
    filters: &Filters,
) {
    let (mr, nr, lanes) = (kernel.out_block, kernel.in_block, kernel.lanes);
    let images = problem.images();
    let width = kernel.row_width(problem.width);
    // The grad read where it is, not copied, where its rows are whole vectors already,
    // every block is full (no zero channel) and it starts on a cache line (as a layer's
    // output does): sr-x3's backward, whose grad operand is the layer's 512 KB input, 1.054
    // -> 1.011 ms with its input so placed (Intel Xeon, one thread, fastest of five
    // alternated `suite --only sr-x3 --backward --quick` runs). Not otherwise: loads that
    // straddle two cache lines cost more than the copy saves (1.119 against 1.066 ms).
    let full_blocks = (problem.out_channels / problem.groups).is_multiple_of(mr);
    let in_place = grad
        .as_slice()
        .filter(|grad| width == problem.width && full_blocks && floats_to_line(grad.as_ptr()) == 0);
    let grad_layout = GradLayout {
        channels: problem.out_channels + usize::from(in_place.is_none()),
        rows: problem.rows,
        width,
        columns: problem.width,
        vector_end: if problem.input_finite {
            width
        } else {
            problem.width / lanes * lanes
        },
    };
    let least = MIN_BAND_STEPS.div_ceil(grad_layout.width / lanes);
    let band = problem.band(mr * grad_layout.width, nr, least);
    let taps = problem.spec.kernel_size.0 * problem.spec.kernel_size.1;
    let run = |grad: &[f32], grad_finite: bool| {
        let operands = problem.operands(grad, grad_layout, grad_finite, band);
        problem.run_tasks(
            kernel.blocking(),
            filters,
            |group, out_block, in_block, block| {
                let outs: Vec<usize> = (0..mr)
                    .map(|m| problem.grad_channel(group, out_block * mr, m))
                    .collect();
                let ins: Vec<usize> = (0..nr)
                    .map(|n| problem.input_channel(group, in_block * nr, n))
                    .collect();
                // A buffer of the thread's, not zeroed (the first band writes the sums): a
                // zeroed vector per block was 2.2% of sr-x3's backward (`perf record`).
                let sums_len = taps * mr * nr * kernel.vectors * lanes;
                with_scratch(sums_len + taps * mr * nr, |sums| {
                    let (sums, tails) = sums.split_at_mut(sums_len);
                    tails.fill(0.0);
                    let mut job = Job {
                        operands: &operands,
                        out_channels: &outs,
                        in_channels: &ins,
                        sums,
                        tails,
                        filters: block,
                    };
                    kernel.run.run(&mut job);
                });
            },
        )
    };
    match in_place {
        Some(grad) => run(grad, all_finite(grad)),
        None => with_scratch(images * grad_layout.image_stride(), |buffer| {
            let grad_finite = prepare_grad(grad, grad_layout, problem.parallel, buffer);
            run(buffer, grad_finite)
        }),
    }
}

/// The shape of the prepared grad operand: `[image][channel][row][width]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct GradLayout {
    /// Channels, the zero channel included.
    pub channels: usize,
    /// Grid rows.
    pub rows: usize,
    /// Floats per row: the grid width rounded up to whole vectors, zeros after it.
    pub width: usize,
    /// Grid columns (the grad's real width).
    pub columns: usize,
    /// Grid columns the kernel reads as vectors, a multiple of the lane count. Past
    /// `columns` the grad is zero, which adds nothing when the input there is finite; when it
    /// is not, `vector_end` stops before `columns` and the rest is summed one column at a
    /// time, so a zero never meets an infinity the correlation does not reach.
    pub vector_end: usize,
}

impl GradLayout {
    pub fn channel_stride(&self) -> usize {
        self.rows * self.width
    }

    pub fn image_stride(&self) -> usize {
        self.channels * self.channel_stride()
    }
}

/// The operands as the column kernel reads them.
pub(crate) type Operands<'a> = super::Operands<'a, GradLayout>;

/// One block of filters: everything a kernel call needs.
pub(crate) struct Job<'a> {
    pub operands: &'a Operands<'a>,
    /// The grad channel of each of the `MR` block rows (the zero channel where the block is
    /// short of output channels).
    pub out_channels: &'a [usize],
    /// The input channel of each of the `NR` block columns (or the zero channel).
    pub in_channels: &'a [usize],
    /// The vector partial sums, `[tap][MR][NR][WV][LANES]`, any values on entry: the first
    /// band's pass writes them rather than adds to them.
    pub sums: &'a mut [f32],
    /// The sums of the columns past `vector_end`, `[tap][MR][NR]`, zeros on entry.
    pub tails: &'a mut [f32],
    /// The result: each filter's sum, `[MR][NR][tap]`.
    pub filters: &'a mut [f32],
}

/// The column kernels' family: every kernel computes one [`Job`].
pub(crate) struct ColumnFamily;

impl Family for ColumnFamily {
    type Job<'a> = Job<'a>;
}

/// The column kernel blocked `MR` grad channels by `NR` input channels by `WV` vectors.
pub(crate) struct Columns<const MR: usize, const NR: usize, const WV: usize>;

impl<const MR: usize, const NR: usize, const WV: usize> Kernel<ColumnFamily>
    for Columns<MR, NR, WV>
{
    #[inline(always)]
    fn run<S: Simd>(simd: S, job: &mut Job<'_>) {
        correlate::<S, MR, NR, WV>(simd, job);
    }
}

/// A column kernel compiled for an instruction set, and the blocking it was compiled with.
#[derive(Clone, Copy)]
pub(crate) struct ColumnKernel {
    pub run: Compiled<ColumnFamily>,
    /// Output channels (grad rows) per block: `MR`.
    pub out_block: usize,
    /// Input channels per block: `NR`.
    pub in_block: usize,
    /// Vector accumulators per filter: `WV`.
    pub vectors: usize,
    /// Floats per vector.
    pub lanes: usize,
}

impl ColumnKernel {
    /// `Columns<MR, NR, WV>` compiled for `S`.
    pub fn new<S: Simd, const MR: usize, const NR: usize, const WV: usize>(simd: S) -> Self {
        ColumnKernel {
            run: Compiled::new::<Columns<MR, NR, WV>, S>(simd),
            out_block: MR,
            in_block: NR,
            vectors: WV,
            lanes: S::LANES,
        }
    }

    pub fn blocking(&self) -> Blocking {
        Blocking {
            out_block: self.out_block,
            in_block: self.in_block,
        }
    }

    /// The floats of each prepared grad row for a grid `width` columns wide: whole vectors.
    pub fn row_width(&self, width: usize) -> usize {
        width.next_multiple_of(self.lanes)
    }
}

/// The filter block's partial sums over every image and grid row. See the module
/// documentation.
#[inline(always)]
fn correlate<S: Simd, const MR: usize, const NR: usize, const WV: usize>(
    simd: S,
    job: &mut Job<'_>,
) {
    let operands = job.operands;
    let (input, grad) = (operands.input_layout, operands.grad_layout);
    let spec = operands.spec;
    let taps = spec.kernel_size.0 * spec.kernel_size.1;
    // What every unchecked load below relies on.
    assert!(job.out_channels.len() == MR && job.in_channels.len() == NR);
    assert!(job.out_channels.iter().all(|&c| c < grad.channels));
    assert!(job.in_channels.iter().all(|&c| c < input.channels));
    assert!(operands.grad.len() >= operands.images * grad.image_stride());
    assert!(grad.vector_end.is_multiple_of(S::LANES) && grad.vector_end <= grad.width);
    assert!(grad.columns <= grad.width);
    operands.check_input_reads(&spec, grad.rows, grad.vector_end.max(grad.columns));
    assert_eq!(job.sums.len(), taps * MR * NR * WV * S::LANES);
    assert_eq!(job.tails.len(), taps * MR * NR);
    assert_eq!(job.filters.len(), taps * MR * NR);

    for image in 0..operands.images {
        for (band, rows) in operands.bands(grad.rows).enumerate() {
            let mut pass = TapPass::<S, MR, NR, WV> {
                operands,
                input_base: std::array::from_fn(|n| {
                    image * input.image_stride() + job.in_channels[n] * input.channel_stride()
                }),
                grad_base: std::array::from_fn(|m| {
                    image * grad.image_stride() + job.out_channels[m] * grad.channel_stride()
                }),
                rows,
                fresh: image == 0 && band == 0,
                sums: job.sums,
                tails: job.tails,
                simd,
            };
            for tap in super::taps(&spec) {
                pass.tap(tap);
            }
        }
    }
    reduce_filters::<S, WV>(simd, job.sums, job.tails, job.filters, (taps, MR, NR));
}

/// Each filter's sum from its vector sums (`sums`, `[tap][MR][NR][WV][LANES]`) and column
/// tails, into `filters` (`[MR][NR][tap]`), in a fixed order whatever the thread count.
///
/// A filter's `WV` vectors are added first; then `LANES` filters at a time are summed lane
/// by lane together: interleaving two vectors and adding the halves leaves each filter's
/// partial sums in alternate lanes, and `log2(LANES)` rounds of that leave one filter's whole
/// sum in each lane. That is about two vector operations per filter, where summing each
/// filter's lanes on its own would take a dozen: on small grids this reduction would
/// otherwise cost as much as the multiply-adds.
#[inline(always)]
fn reduce_filters<S: Simd, const WV: usize>(
    simd: S,
    sums: &[f32],
    tails: &[f32],
    filters: &mut [f32],
    (taps, mr, nr): (usize, usize, usize),
) {
    let lanes = S::LANES;
    let count = taps * mr * nr;
    // Which filter of a group each lane of its sum belongs to: the groups are reduced by the
    // same shuffles, so summing `LANES` copies of each filter's index finds out.
    let owners: Vec<usize> = {
        let mut tags = [simd.splat(0.0); MAX_LANES];
        for (filter, tag) in tags[..lanes].iter_mut().enumerate() {
            *tag = simd.splat(filter as f32);
        }
        let mut lane_values = [0.0f32; MAX_LANES];
        simd.store(
            &mut lane_values,
            sum_lanes_together::<S>(simd, &mut tags[..lanes]),
        );
        lane_values[..lanes]
            .iter()
            .map(|&value| value as usize / lanes)
            .collect()
    };
    let mut group = [simd.splat(0.0); MAX_LANES];
    let mut lane_values = [0.0f32; MAX_LANES];
    for first in (0..count).step_by(lanes) {
        for (filter, vector) in (first..).zip(&mut group[..lanes]) {
            *vector = simd.splat(0.0);
            if filter < count {
                for v in 0..WV {
                    let at = (filter * WV + v) * lanes;
                    let partial = &sums[at..at + lanes];
                    // SAFETY: `partial` holds `LANES` floats.
                    *vector = simd.add(*vector, unsafe { simd.load(partial.as_ptr()) });
                }
            }
        }
        simd.store(
            &mut lane_values,
            sum_lanes_together::<S>(simd, &mut group[..lanes]),
        );
        for (&owner, &value) in owners.iter().zip(&lane_values) {
            let filter = first + owner;
            if filter < count {
                let (tap, m, n) = (filter / (mr * nr), filter / nr % mr, filter % nr);
                filters[(m * nr + n) * taps + tap] = value + tails[filter];
            }
        }
    }
}

/// One vector whose lanes are the lane sums of `vectors` (`LANES` of them), in the order
/// the interleaving leaves them.
#[inline(always)]
fn sum_lanes_together<S: Simd>(simd: S, vectors: &mut [S::Vector]) -> S::Vector {
    let mut len = vectors.len();
    while len > 1 {
        len /= 2;
        for i in 0..len {
            let (low, high) = simd.interleave(vectors[2 * i], vectors[2 * i + 1]);
            vectors[i] = simd.add(low, high);
        }
    }
    vectors[0]
}

/// One band of rows of one image, seen as the visitor of every tap.
struct TapPass<'j, 'a, S, const MR: usize, const NR: usize, const WV: usize> {
    operands: &'a Operands<'a>,
    /// Where each block column's input channel of this image starts.
    input_base: [usize; NR],
    /// Where each block row's grad channel of this image starts.
    grad_base: [usize; MR],
    rows: Range<usize>,
    /// Whether this is the first pass over the sums, which starts them from zero.
    fresh: bool,
    sums: &'j mut [f32],
    tails: &'j mut [f32],
    simd: S,
}

impl<S: Simd, const MR: usize, const NR: usize, const WV: usize> TapPass<'_, '_, S, MR, NR, WV> {
    /// Adds tap `weight`'s products over the band to its sums. `row` and `col` are the tap's
    /// offsets from the window origin, `(th * dh, tw * dw)`, never negative.
    #[inline(always)]
    fn tap(&mut self, Tap { weight, row, col }: Tap) {
        let (stride_h, stride_w) = self.operands.spec.stride;
        let (operands, simd) = (self.operands, self.simd);
        let (input_layout, grad_layout) = (operands.input_layout, operands.grad_layout);
        // Grid column `ox` reads prepared column `ox * stride_w + col`: column phase
        // `col % stride_w`, at `ox + col / stride_w` within it.
        let column = col % stride_w * input_layout.phase_len + col / stride_w;
        let rows = operands.tap_rows(&self.rows, row, stride_h);
        if rows.is_empty() && !self.fresh {
            return;
        }
        let fresh = self.fresh;
        let block = MR * NR * WV * S::LANES;
        let sums = &mut self.sums[weight * block..(weight + 1) * block];
        let mut acc: [[[S::Vector; WV]; NR]; MR] = std::array::from_fn(|m| {
            std::array::from_fn(|n| {
                std::array::from_fn(|v| {
                    let at = ((m * NR + n) * WV + v) * S::LANES;
                    if fresh {
                        return simd.splat(0.0);
                    }
                    // SAFETY: `sums` holds `MR * NR * WV * LANES` floats (sliced above).
                    unsafe { simd.load(sums.as_ptr().add(at)) }
                })
            })
        });
        // Each row's operands are a fixed step on from the previous row's, so the row loop
        // only moves `MR + NR` pointers.
        let (x_step, g_step) = (stride_h * input_layout.row_stride(), grad_layout.width);
        let (input, grad) = (operands.input.as_ptr(), operands.grad.as_ptr());
        let first_input = (rows.start * stride_h + row) * input_layout.row_stride();
        let mut x_rows: [*const f32; NR] = std::array::from_fn(|n| {
            // SAFETY: inside the input buffer: see `load` below.
            unsafe { input.add(self.input_base[n] + first_input + column) }
        });
        let mut g_rows: [*const f32; MR] = std::array::from_fn(|m| {
            // SAFETY: inside the grad buffer: see `load` below.
            unsafe { grad.add(self.grad_base[m] + rows.start * g_step) }
        });
        // SAFETY: this closure is called only inside this function, at the loads below:
        // `correlate` asserted that the channels are the buffers'
        // and the images in them, that every grid row's tap rows are inside the prepared rows
        // (`(rows - 1) * stride_h + row < input.rows`, `row` being at most the largest tap row),
        // and that `vector_end + col / stride_w <= phase_len` and `vector_end <= grad width`:
        // so each vector of `LANES` floats read at a column below `vector_end` of a row of
        // the band is inside its channel's row.
        let load = |row: *const f32, at: usize| unsafe { simd.load(row.add(at)) };
        for _ in rows {
            let mut col = 0;
            while col + WV * S::LANES <= grad_layout.vector_end {
                for v in 0..WV {
                    let at = col + v * S::LANES;
                    let g: [S::Vector; MR] = std::array::from_fn(|m| load(g_rows[m], at));
                    let x: [S::Vector; NR] = std::array::from_fn(|n| load(x_rows[n], at));
                    for (acc, &g) in acc.iter_mut().zip(&g) {
                        for (acc, &x) in acc.iter_mut().zip(&x) {
                            acc[v] = simd.mul_add(g, x, acc[v]);
                        }
                    }
                }
                col += WV * S::LANES;
            }
            // Whole vectors left over from the last `WV`-wide step.
            while col < grad_layout.vector_end {
                let g: [S::Vector; MR] = std::array::from_fn(|m| load(g_rows[m], col));
                let x: [S::Vector; NR] = std::array::from_fn(|n| load(x_rows[n], col));
                for (acc, &g) in acc.iter_mut().zip(&g) {
                    for (acc, &x) in acc.iter_mut().zip(&x) {
                        acc[0] = simd.mul_add(g, x, acc[0]);
                    }
                }
                col += S::LANES;
            }
            if grad_layout.vector_end < grad_layout.columns {
                let tails = &mut self.tails[weight * MR * NR..(weight + 1) * MR * NR];
                // SAFETY: the columns up to `columns` of the row are inside both buffers, as
                // `correlate` asserted.
                unsafe { scalar_tail(operands, &g_rows, &x_rows, tails) };
            }
            // One row on. After the last row the pointers may point past the buffers, but are
            // never read (`wrapping_add` keeps computing them defined).
            for row in &mut x_rows {
                *row = row.wrapping_add(x_step);
            }
            for row in &mut g_rows {
                *row = row.wrapping_add(g_step);
            }
        }
        for (m, acc) in acc.iter().enumerate() {
            for (n, acc) in acc.iter().enumerate() {
                for (v, &acc) in acc.iter().enumerate() {
                    let at = ((m * NR + n) * WV + v) * S::LANES;
                    simd.store(&mut sums[at..], acc);
                }
            }
        }
    }
}

/// The grid columns past `vector_end` of one row and tap, one at a time: `tails[m][n]` gets
/// the products of grad row `g_rows[m]` and input row `x_rows[n]`. Not generic, so that
/// this rarely taken path is compiled once rather than once per tap.
///
/// # Safety
///
/// Every row must be readable up to column `columns` of the grad layout.
#[inline(never)]
unsafe fn scalar_tail(
    operands: &Operands<'_>,
    g_rows: &[*const f32],
    x_rows: &[*const f32],
    tails: &mut [f32],
) {
    let layout = operands.grad_layout;
    for ox in layout.vector_end..layout.columns {
        for (m, &g_row) in g_rows.iter().enumerate() {
            // SAFETY: guaranteed by the caller.
            let g = unsafe { *g_row.add(ox) };
            for (n, &x_row) in x_rows.iter().enumerate() {
                // SAFETY: guaranteed by the caller.
                tails[m * x_rows.len() + n] += g * unsafe { *x_row.add(ox) };
            }
        }
    }
}

/// Lays the grad operand out for the kernel in `buffer`, and says whether every value is
/// finite: rows padded with zeros to whole vectors, and a zero channel after the real ones.
pub(crate) fn prepare_grad(
    grad: &ArrayView4<f32>,
    layout: GradLayout,
    parallel: bool,
    buffer: &mut [f32],
) -> bool {
    let channels = grad.dim().1;
    let one_channel = |(index, target): (usize, &mut [f32])| -> bool {
        let (image, channel) = (index / layout.channels, index % layout.channels);
        if channel == channels {
            target.fill(0.0);
            return true;
        }
        let plane = grad.slice(s![image, channel, .., ..]);
        let mut finite = true;
        for (source, target) in plane.outer_iter().zip(target.chunks_mut(layout.width)) {
            // Only the row's padding zeroed: zeroing the whole plane first made the copy 5.6%
            // of sr-x3's backward rather than 4.4% (Intel Xeon, one thread, `perf record`).
            let (target, padding) = target.split_at_mut(source.len());
            padding.fill(0.0);
            match source.as_slice() {
                Some(source) => target.copy_from_slice(source),
                None => target.iter_mut().zip(&source).for_each(|(t, &v)| *t = v),
            }
            finite &= all_finite(target);
        }
        finite
    };
    fill_chunks(buffer, layout.channel_stride(), parallel, one_channel)
}
