//! The row kernel turned around for layers with many output channels and short rows:
//! vectors run along the output channels, not along the row.
//!
//! One call still computes one output row of a block of output channels (a [`RowJob`]), but
//! a tile is `PX` consecutive output pixels by `CV` vectors of output channels. For each
//! input channel and tap, the kernel loads the `CV` weight vectors once and broadcasts each
//! pixel's input value once: `CV + PX` loads feed `CV * PX` multiply-adds. The pixels of a
//! tile are single floats, not vectors along the row, so a row of any length fills the
//! registers: the phase rows of a stride-2 transposed convolution of a 16x16 input are 16
//! columns long, half a tile of the paired row kernel. This is the blocking of oneDNN's and
//! MLAS's direct convolutions (output channels in the vector, a few pixels unrolled), here
//! over the planar (NCHW) input the row kernels share, with the taps as constants.
//!
//! Chosen where it measured faster (see `select`): stride-2 transposed convolutions whose
//! phases have several taps, and on AVX-512 layers whose padding is wide. Its pixels are
//! separate multiply-adds, so the tiles at a row's ends leave out each pixel whose tap reads
//! padding (see `edges`), where the row kernel can only leave out whole vectors.
//!
//! On AVX2 it is 4 pixels by 2 vectors (16 channels): 8 accumulators, as the row kernel.
//! More spill: LLVM schedules the broadcasts of the next taps early. 5 pixels by 2 vectors
//! ran dcgan-up in 7.06 ms against 3.80 ms for 4 (Zen 3, each measured beside the paired
//! row kernel's 5.8-6.2 ms), and 6 pixels spilled as badly. On AVX-512 it is 8 pixels by 2
//! vectors for short rows and 16 pixels by 1 vector where the padding is wide: 16
//! accumulators either way, and a tile of 16 pixels leaves out aspp-d12's padded taps
//! exactly (12 pixels of the first tile, 12 of the last, on 32 columns).
//!
//! Two things keep the data in cache. The input channels are walked in chunks whose weights
//! fit in L1 (16 KB), every tile of a strip of the row reading a chunk before the next
//! chunk, the strip's running sums in a buffer in between. And the accumulators hold the
//! tile channel-major where the output is pixel-major per channel, so the strip reaches the
//! output rows through that buffer, one scalar store per output, which the `taps x input
//! channels` multiply-adds per output amortise.

use std::marker::PhantomData;

use std::ops::Range;

use super::edges::{self, INTERIOR, LEFT_END, RIGHT_END};
use super::{RowFamily, RowJob, TapList};
use crate::isa::{Kernel, Simd};
use crate::shape::contract::{NO_PHASE, PhaseFn, TapVisitor};

/// The largest output-channel block (`CV * LANES`) any instantiation uses.
pub(crate) const MAX_CHANNELS: usize = 32;

/// Pixels per strip: the running sums of a strip of the row stay in a buffer (14 KB) while
/// the kernel walks the input channels chunk by chunk. A whole number of tiles of 8 and of
/// 16 pixels.
const STRIP: usize = 112;

/// Weights per chunk of input channels (16 KB), so that a chunk's weights stay in L1 while
/// every tile of the strip reads them.
const CHUNK_WEIGHTS: usize = 4096;

/// The kernel for tap list `T`: tiles of `PX` output pixels by `CV` vectors of output
/// channels, one column phase per call.
pub(crate) struct ChannelVectors<T, const CV: usize, const PX: usize>(PhantomData<T>);

impl<T: TapList, const CV: usize, const PX: usize> Kernel<RowFamily> for ChannelVectors<T, CV, PX> {
    #[inline(always)]
    fn run<S: Simd>(simd: S, job: &mut RowJob<'_>) {
        row::<T, S, CV, PX>(simd, job);
    }
}

/// Computes one output row for up to `CV * LANES` output channels.
#[inline(always)]
fn row<T: TapList, S: Simd, const CV: usize, const PX: usize>(simd: S, job: &mut RowJob<'_>) {
    const { assert!(CV * S::LANES <= MAX_CHANNELS) };
    let layout = job.input.layout;
    let block = CV * S::LANES;
    assert!(job.out.len() <= block && job.bias.len() == job.out.len());
    assert_eq!(job.rows, 1, "one row per call");
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
        const { assert!(STRIP.is_multiple_of(PX)) };
        let Pixels { simd, job, .. } = self;
        let block = CV * S::LANES;
        let chunk = (CHUNK_WEIGHTS / (T::FILTER_LEN * block)).max(1);
        let mut sums = [[0.0f32; MAX_CHANNELS]; STRIP];
        let mut strip_start = job.cols.start;
        while strip_start < job.cols.end {
            let strip_end = (strip_start + STRIP).min(job.cols.end);
            // The strip's tiles, the last rounded up to whole tile, start from the bias.
            let tiles = (strip_end - strip_start).div_ceil(PX) * PX;
            for pixel in &mut sums[..tiles] {
                pixel[..job.bias.len()].copy_from_slice(job.bias);
            }
            let mut first = 0;
            while PHASE != NO_PHASE && first < job.channels.len() {
                let channels = first..(first + chunk).min(job.channels.len());
                let mut start = strip_start;
                while start < strip_end {
                    let sums = &mut sums[start - strip_start..][..PX];
                    let at = (start, channels.clone());
                    // A constant: where it is false, the edge instances are not compiled.
                    if const { edges::any::<T>(1, PX) } {
                        match edges::of::<T>(start, PX, &job.input.data_columns) {
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
                    start += PX;
                }
                first = channels.end;
            }
            store(&sums[..strip_end - strip_start], job, strip_start);
            strip_start = strip_end;
        }
    }
}

/// Adds the chunk `channels` (indices into the job's input channels) of the tile starting
/// at tile column `start` to its running sums.
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
    sums: &mut [[f32; MAX_CHANNELS]],
    (start, channels): (usize, Range<usize>),
) {
    let layout = job.input.layout;
    let block = CV * S::LANES;
    let mut tile = Tile::<T, S, CV, PX, EDGE> {
        simd,
        acc: std::array::from_fn(|p| {
            std::array::from_fn(|v| {
                // SAFETY: each of `sums`' pixels holds `MAX_CHANNELS >= CV * LANES` floats.
                unsafe { simd.load(sums[p].as_ptr().add(v * S::LANES)) }
            })
        }),
        input: job.input.data,
        base: 0,
        origin_row: job.origin_row,
        rows: layout.rows,
        row_stride: layout.row_stride(),
        phase_len: layout.phase_len,
        weights: job.weights,
        weight_base: 0,
        taps: PhantomData,
    };
    for index in channels {
        let channel = job.channels.start + index;
        tile.base = channel * layout.channel_stride() + start;
        tile.weight_base = index * T::FILTER_LEN * block;
        T::visit(PHASE, &mut tile);
    }
    for (pixel, vectors) in sums.iter_mut().zip(&tile.acc) {
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
        self.reads_row(row)
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

/// Writes the sums of the pixels from tile column `start` on into the job's output rows:
/// tile column `c` is output column `c * out_step + out_offset`.
#[inline(always)]
fn store(sums: &[[f32; MAX_CHANNELS]], job: &mut RowJob<'_>, start: usize) {
    let (step, offset) = (job.out_step, job.out_offset);
    for (channel, out) in job.out.iter_mut().enumerate() {
        for (i, pixel) in sums.iter().enumerate() {
            let x = ((start + i) * step) as isize + offset;
            if let Some(slot) = usize::try_from(x).ok().and_then(|x| out.get_mut(x)) {
                slot.write(pixel[channel]);
            }
        }
    }
}
