//! The row kernel turned around for layers with many output channels and short rows:
//! vectors run along the output channels, not along the row.
//!
//! One call computes one output row of a block of output channels (a [`RowJob`]), or on a
//! convolution several consecutive rows, but a tile is `PX` consecutive output pixels by `CV`
//! vectors of output channels. For each input channel and tap, the kernel loads the `CV`
//! weight vectors once and broadcasts each pixel's input value once: `CV + PX` loads feed
//! `CV * PX` multiply-adds. The pixels of a tile are single floats, not vectors along the
//! row, so a row of any length fills the registers: the phase rows of a stride-2 transposed
//! convolution of a 16x16 input are 16 columns long, half a tile of the paired row kernel.
//! This is the blocking of oneDNN's and MLAS's direct convolutions (output channels in the
//! vector, a few pixels unrolled), here over the planar (NCHW) input the row kernels share,
//! with the taps as constants.
//!
//! Chosen where it measured faster (see `select`): stride-2 transposed convolutions whose
//! phases have several taps, and on AVX-512 layers whose padding is wide. Its pixels are
//! separate multiply-adds, so the tiles at a row's ends, and where the padding is wider than
//! a tile the tiles next to them, leave out each pixel whose tap reads padding (see
//! `edges`), where the row kernel can only leave out whole vectors.
//!
//! On AVX2 it is 4 pixels by 2 vectors (16 channels): 8 accumulators, as the row kernel.
//! More spill: LLVM schedules the broadcasts of the next taps early. 5 pixels by 2 vectors
//! ran dcgan-up in 7.06 ms against 3.80 ms for 4 (Zen 3, each measured beside the paired
//! row kernel's 5.8-6.2 ms), and 6 pixels spilled as badly. On AVX-512 it is 8 pixels by 2
//! vectors (16 accumulators, 10 loads per 16 multiply-adds) for short rows and for wide
//! padding from 16 channels (one instance a geometry: 16 pixels by 1 vector for 16 to 31
//! channels cost each wide-padding geometry a second one in every build).
//!
//! Three things keep the data coming. The input channels are walked in chunks whose weights
//! fit in L1 (16 KB), every tile of a strip reading a chunk before the next chunk, the
//! strip's running sums in a buffer in between; a strip is as many whole tiles as the buffer
//! holds, over as many rows as the call has, so that each chunk loaded from L2 feeds a
//! dozen tiles rather than the two of one 32-column row (aspp-d12). Each tile asks for the
//! rows its taps will read a few channels ahead: one channel's rows are a plane apart from
//! the next's, a pattern the hardware prefetchers do not follow, and the first taps of every
//! channel waited on L2. And the accumulators hold the tile channel-major where the output
//! is pixel-major per channel, so the strip reaches the output rows through that buffer,
//! turned around in registers a square of vectors at a time where the output columns are
//! consecutive (`sums_out`, compiled once per instruction set).

use std::marker::PhantomData;
use std::mem::MaybeUninit;

use std::ops::Range;

use super::edges::{self, INTERIOR, LEFT_END, LEFT_NEXT, RIGHT_END, RIGHT_NEXT};
use super::sums_out::{SumsJob, SumsOut};
use super::{RowFamily, RowJob, TapList, rows_in};
use crate::isa::{Compiled, Kernel, Simd};
use crate::shape::contract::{NO_PHASE, PhaseFn, TapVisitor};

/// The largest output-channel block (`CV * LANES`) any instantiation uses.
pub(crate) const MAX_CHANNELS: usize = 32;

/// Floats of running sums a strip keeps (14 KB): a strip is as many whole tiles as fit,
/// 224 pixels of a 16-channel block, 112 of a 32-channel one.
const STRIP_FLOATS: usize = 3584;

/// Weights per chunk of input channels (16 KB), so that a chunk's weights stay in L1 while
/// every tile of the strip reads them.
const CHUNK_WEIGHTS: usize = 4096;

/// How many channels ahead a tile prefetches the input rows its taps will read: a tile's
/// rows of each channel are a few lines a plane apart, a pattern the hardware prefetchers do
/// not follow, and L2's latency then stalls every channel's first taps.
const PREFETCH_CHANNELS: usize = 6;

/// Floats per cache line.
const LINE_FLOATS: usize = 16;

/// Cache lines a tile of `px` pixels reads per tap row: the widest phase's column span, one
/// more for a start anywhere in a line.
const fn prefetch_lines<T: TapList>(px: usize) -> usize {
    let (mut index, mut widest) = (0, 0);
    while index < T::PHASES.len() {
        if let Some(extent) = T::PHASES[index].extent {
            let span = (extent.cols.1 - extent.cols.0) as usize;
            if span > widest {
                widest = span;
            }
        }
        index += 1;
    }
    (px + widest).div_ceil(LINE_FLOATS) + 1
}

/// Output pixels of one strip, for a block of `block` channels and tiles of `tile` pixels:
/// the driver gives a call as many whole rows as one strip holds, so that every chunk of
/// weights, loaded from L2 once per strip, feeds as many tiles as fit.
pub(crate) const fn strip_pixels(block: usize, tile: usize) -> usize {
    STRIP_FLOATS / block / tile * tile
}

/// The kernel for tap list `T`: tiles of `PX` output pixels by `CV` vectors of output
/// channels, one column phase per call.
pub(crate) struct ChannelVectors<T, const CV: usize, const PX: usize>(PhantomData<T>);

impl<T: TapList, const CV: usize, const PX: usize> Kernel<RowFamily> for ChannelVectors<T, CV, PX> {
    #[inline(always)]
    fn run<S: Simd>(simd: S, job: &mut RowJob<'_>) {
        row::<T, S, CV, PX>(simd, job);
    }
}

/// Computes the job's output rows (one, or several of a convolution) for up to `CV * LANES`
/// output channels.
#[inline(always)]
fn row<T: TapList, S: Simd, const CV: usize, const PX: usize>(simd: S, job: &mut RowJob<'_>) {
    const { assert!(CV * S::LANES <= MAX_CHANNELS && strip_pixels(MAX_CHANNELS, PX) > 0) };
    let layout = job.input.layout;
    let block = CV * S::LANES;
    // Several rows only where every row is of the one phase (a convolution's).
    assert!(job.rows == 1 || T::PHASES.len() == 1, "one row per call");
    assert!(job.bias.len() <= block);
    job.check_out();
    assert!(job.channels.end <= layout.channels);
    assert!(job.weights.len() >= job.channels.len() * T::FILTER_LEN * block);
    assert!(job.phase < T::PHASES.len());
    let tiles_end = job.cols.start + job.cols.len().div_ceil(PX) * PX;
    if let Some(extent) = T::PHASES[job.phase].extent {
        // Every pixel of every tile, the last rounded up to a whole tile, is inside the
        // phase row.
        let last_column = (extent.cols.1 + T::COL_SHIFT) as usize / T::COL_STRIDE;
        assert!(extent.cols.0 + T::COL_SHIFT >= 0 && tiles_end + last_column <= layout.phase_len);
    }
    T::with_phase(
        job.phase,
        Pixels::<T, S, CV, PX> {
            simd,
            job,
            types: PhantomData,
        },
    );
}

/// The tile loop of [`row`], for one (constant) phase.
struct Pixels<'j, 'a, T, S, const CV: usize, const PX: usize> {
    simd: S,
    job: &'j mut RowJob<'a>,
    types: PhantomData<T>,
}

impl<T: TapList, S: Simd, const CV: usize, const PX: usize> PhaseFn
    for Pixels<'_, '_, T, S, CV, PX>
{
    #[inline(always)]
    fn call<const PHASE: usize>(self) {
        let Pixels { simd, job, .. } = self;
        let block = CV * S::LANES;
        let chunk = (CHUNK_WEIGHTS / (T::FILTER_LEN * block)).max(1);
        // The job's rows one after another, each rounded up to whole tiles: tiles never
        // straddle two rows, and strips are whole tiles.
        let width = job.cols.len().div_ceil(PX) * PX;
        let pixels = job.rows * width;
        let strip = strip_pixels(block, PX);
        let mut sums = [0.0f32; STRIP_FLOATS];
        let mut strip_start = 0;
        while strip_start < pixels {
            let strip_end = (strip_start + strip).min(pixels);
            let sums = &mut sums[..(strip_end - strip_start) * block];
            // Every pixel of the strip starts from the bias.
            for pixel in sums.chunks_exact_mut(block) {
                pixel[..job.bias.len()].copy_from_slice(job.bias);
            }
            let mut first = 0;
            while PHASE != NO_PHASE && first < job.channels.len() {
                let channels = first..(first + chunk).min(job.channels.len());
                for at in (strip_start..strip_end).step_by(PX) {
                    let (row, start) = (at / width, job.cols.start + at % width);
                    let origin_row = job.origin_row + row as isize * job.origin_step;
                    let sums = &mut sums[(at - strip_start) * block..][..PX * block];
                    let at = (start, origin_row, channels.clone());
                    // Constants: where one is false, its instances are not compiled.
                    let data = &job.input.data_columns;
                    if const { edges::any_next::<T>(1, PX) } {
                        match edges::of_with_next::<T>(start, PX, data) {
                            LEFT_END => {
                                one_tile::<T, S, CV, PX, LEFT_END, PHASE>(simd, job, sums, at)
                            }
                            RIGHT_END => {
                                one_tile::<T, S, CV, PX, RIGHT_END, PHASE>(simd, job, sums, at)
                            }
                            LEFT_NEXT => {
                                one_tile::<T, S, CV, PX, LEFT_NEXT, PHASE>(simd, job, sums, at)
                            }
                            RIGHT_NEXT => {
                                one_tile::<T, S, CV, PX, RIGHT_NEXT, PHASE>(simd, job, sums, at)
                            }
                            _ => one_tile::<T, S, CV, PX, INTERIOR, PHASE>(simd, job, sums, at),
                        }
                    } else if const { edges::any::<T>(1, PX) } {
                        match edges::of::<T>(start, PX, data) {
                            LEFT_END => {
                                one_tile::<T, S, CV, PX, LEFT_END, PHASE>(simd, job, sums, at)
                            }
                            RIGHT_END => {
                                one_tile::<T, S, CV, PX, RIGHT_END, PHASE>(simd, job, sums, at)
                            }
                            _ => one_tile::<T, S, CV, PX, INTERIOR, PHASE>(simd, job, sums, at),
                        }
                    } else {
                        one_tile::<T, S, CV, PX, INTERIOR, PHASE>(simd, job, sums, at);
                    }
                }
                first = channels.end;
            }
            store(simd, sums, block, job, strip_start..strip_end, width);
            strip_start = strip_end;
        }
    }
}

/// Adds the chunk `channels` (indices into the job's input channels) of the tile starting
/// at tile column `start` of the output row whose windows start at input row `origin_row`
/// to its running sums, `PX` pixels of `CV * LANES` floats.
#[inline(always)]
fn one_tile<
    T: TapList,
    S: Simd,
    const CV: usize,
    const PX: usize,
    const EDGE: u8,
    const PHASE: usize,
>(
    simd: S,
    job: &RowJob<'_>,
    sums: &mut [f32],
    (start, origin_row, channels): (usize, isize, Range<usize>),
) {
    let layout = job.input.layout;
    let block = CV * S::LANES;
    assert_eq!(sums.len(), PX * block);
    let mut tile = Tile::<T, S, CV, PX, EDGE> {
        simd,
        acc: std::array::from_fn(|p| {
            std::array::from_fn(|v| {
                // SAFETY: `sums` holds `PX` pixels of `CV * LANES` floats (asserted above).
                unsafe { simd.load(sums.as_ptr().add(p * block + v * S::LANES)) }
            })
        }),
        input: job.input.data,
        base: 0,
        origin_row,
        rows: layout.rows,
        row_stride: layout.row_stride(),
        phase_len: layout.phase_len,
        weights: job.weights,
        weight_base: 0,
        ahead: PREFETCH_CHANNELS * layout.channel_stride(),
        first_column: T::PHASES[PHASE]
            .extent
            .map_or(0, |extent| (extent.cols.0 + T::COL_SHIFT) as usize),
        taps: PhantomData,
    };
    for index in channels {
        let channel = job.channels.start + index;
        tile.base = channel * layout.channel_stride() + start;
        tile.weight_base = index * T::FILTER_LEN * block;
        T::visit(PHASE, &mut tile);
    }
    for (pixel, vectors) in sums.chunks_exact_mut(block).zip(&tile.acc) {
        for (v, &vector) in vectors.iter().enumerate() {
            simd.store(&mut pixel[v * S::LANES..], vector);
        }
    }
}

/// The accumulators of one tile, `[pixel][channel vector]`, and where the current input
/// channel's data and weights are.
struct Tile<'a, T, S: Simd, const CV: usize, const PX: usize, const EDGE: u8> {
    simd: S,
    acc: [[S::Vector; CV]; PX],
    input: &'a [f32],
    /// Index of (current channel, row 0, phase 0, first pixel of the tile).
    base: usize,
    origin_row: isize,
    rows: usize,
    row_stride: usize,
    phase_len: usize,
    weights: &'a [f32],
    /// Index of the current channel's first weight.
    weight_base: usize,
    /// Floats from the current channel to the one whose rows are prefetched.
    ahead: usize,
    /// The phase's leftmost tap column, from the tile's first pixel.
    first_column: usize,
    taps: PhantomData<T>,
}

impl<T: TapList, S: Simd, const CV: usize, const PX: usize, const EDGE: u8>
    Tile<'_, T, S, CV, PX, EDGE>
{
    /// Whether the input row `row` rows from the window origin is inside the input.
    #[inline(always)]
    fn reads_row(&self, row: isize) -> bool {
        usize::try_from(self.origin_row + row).is_ok_and(|row| row < self.rows)
    }
}

impl<T: TapList, S: Simd, const CV: usize, const PX: usize, const EDGE: u8> TapVisitor
    for Tile<'_, T, S, CV, PX, EDGE>
{
    #[inline(always)]
    fn row(&mut self, row: isize) -> bool {
        let reads = self.reads_row(row);
        if reads && T::COL_STRIDE == 1 && PREFETCH_CHANNELS > 0 {
            // The lines this tap row will read `PREFETCH_CHANNELS` channels on.
            let at = self.base
                + self.ahead
                + (self.origin_row + row) as usize * self.row_stride
                + self.first_column;
            for line in 0..prefetch_lines::<T>(PX) {
                self.simd
                    .prefetch(self.input.as_ptr().wrapping_add(at + line * LINE_FLOATS));
            }
        }
        reads
    }

    /// One tap into every accumulator: the `CV` weight vectors of tap `WEIGHT` times each
    /// pixel's input at `(ROW, COL)` from its window origin.
    #[inline(always)]
    fn tap<const WEIGHT: usize, const ROW: isize, const COL: isize>(&mut self) {
        debug_assert!(self.reads_row(ROW), "the visitor tested the tap's row");
        let simd = self.simd;
        let row = (self.origin_row + ROW) as usize;
        let column = (COL + T::COL_SHIFT) as usize;
        // Constants once inlined: in an edge instance, the pixels whose reads are zeros.
        let live = |p: usize| {
            EDGE == INTERIOR || !edges::dead::<T>(EDGE, p as isize + column as isize, 1, PX)
        };
        if EDGE != INTERIOR && !(0..PX).any(live) {
            return;
        }
        let at = self.base
            + row * self.row_stride
            + column % T::COL_STRIDE * self.phase_len
            + column / T::COL_STRIDE;
        debug_assert!(at + PX <= self.input.len());
        // A constant, so the check costs nothing; it keeps the weight reads below inside
        // the channel's filter.
        const { assert!(WEIGHT < T::FILTER_LEN) };
        let weight_at = self.weight_base + WEIGHT * CV * S::LANES;
        debug_assert!(weight_at + CV * S::LANES <= self.weights.len());
        // SAFETY: `row` asserts `weights` holds `FILTER_LEN * CV * LANES` weights per input
        // channel of the job, `weight_base` starts the current channel's, and
        // `WEIGHT < FILTER_LEN`.
        let weights: [S::Vector; CV] = std::array::from_fn(|v| unsafe {
            simd.load(self.weights.as_ptr().add(weight_at + v * S::LANES))
        });
        for (p, acc) in self.acc.iter_mut().enumerate() {
            if !live(p) {
                continue;
            }
            // SAFETY: the tap's row is inside the buffer (`Kernels` implementations call
            // `tap` only after `row` said so), the tile's pixels plus the tap's column are
            // inside the phase row (`row` asserts the tiles against `phase_len`), and the
            // channel is one of the buffer's.
            let x = simd.splat(unsafe { *self.input.get_unchecked(at + p) });
            for (acc, &weight) in acc.iter_mut().zip(&weights) {
                *acc = simd.mul_add(weight, x, *acc);
            }
        }
    }
}

/// Writes the sums of the job's pixels `pixels` (its rows one after another, `width` tile
/// columns each) into its output rows, a row at a time, by [`SumsOut`]: compiled once per
/// instruction set in this crate, not inlined into every geometry's kernel (inlined, its
/// transposition cost each wide-padding geometry 0.1 s of a user's release build).
#[inline(always)]
fn store<S: Simd>(
    simd: S,
    sums: &[f32],
    block: usize,
    job: &mut RowJob<'_>,
    pixels: Range<usize>,
    width: usize,
) {
    let sums_out = Compiled::new::<SumsOut, S>(simd);
    let (first_column, out_step, out_offset) = (job.cols.start, job.out_step, job.out_offset);
    let mut at = pixels.start;
    while at < pixels.end {
        let row = at / width;
        let row_end = pixels.end.min((row + 1) * width);
        // The row's output slices, reborrowed for this call (the job's own are of the
        // job's lifetime).
        let mut storage = [const { MaybeUninit::uninit() }; MAX_CHANNELS];
        let out = rows_in(&mut storage, job.out_rows(row));
        sums_out.run(&mut SumsJob {
            sums: &sums[(at - pixels.start) * block..(row_end - pixels.start) * block],
            block,
            first_column: first_column + at % width,
            out_step,
            out_offset,
            out,
        });
        at = row_end;
    }
}
