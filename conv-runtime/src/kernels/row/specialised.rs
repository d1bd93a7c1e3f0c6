//! The row kernel specialised to one geometry: the taps `conv!` generated are inlined into
//! straight-line code with constant offsets. See the [family documentation](super).

use std::marker::PhantomData;

use super::edges::{self, INTERIOR, LEFT_END, RIGHT_END};
use super::store::store_tile;
use super::{MAX_TILE, RowFamily, RowJob, TapList};
use crate::isa::{Kernel, Simd};
use crate::shape::contract::{NO_PHASE, PhaseFn, TapVisitor};

/// The kernel for tap list `T`, `OCB` output channels by `WV` vectors, `CP` column phases
/// per call.
pub(crate) struct Specialised<T, const OCB: usize, const WV: usize, const CP: usize>(
    PhantomData<T>,
);

impl<T: TapList, const OCB: usize, const WV: usize, const CP: usize> Specialised<T, OCB, WV, CP> {
    /// Whether a call may compute several consecutive output rows: the one-channel kernels
    /// of a convolution, and AVX-512's eight channels by two vectors. The first run strided
    /// depthwise layers (the plane kernel runs those of stride 1), whose row of one channel
    /// is too little work to pay for a call (one call per row cost depthwise-d2 more in
    /// setting up calls than in its taps). The second runs stride-1 layers of few input
    /// channels (seed-dilated: three, two 32-column tiles a row): a call per row and block
    /// cost the calls' setting up as much again, and sixteen rows a call ran seed-dilated
    /// 0.0263 -> 0.0251 ms at one thread (Intel Xeon, medians of twelve alternated
    /// `suite --only seed-dilated --quick --backward` runs; its backward and two threads
    /// level), for 1.1 KB more code in the suite's program. For every other kernel the row
    /// loop is a constant single pass: looping over rows made LLVM duplicate each kernel's
    /// tile loop, 43% more code.
    pub const MULTI_ROW: bool =
        (OCB == 1 || (OCB == 8 && WV == 2)) && CP == 1 && T::PHASES.len() == 1;

    /// Whether the kernel has edge instances where its geometry reads padding with whole
    /// vectors: only the blockings of four or more output channels, which run the layers
    /// where time goes. The narrow ones (an RGB output, a one-channel map) computing the
    /// padding cost less than two more instances of them cost every such geometry's build:
    /// without them, the build-cost script's wide-padding geometries (`--padded`) built in
    /// 1.21 s / 87 KB each against 1.64 s / 94 KB, 2.38 s / 147 KB with backward against
    /// 3.24 s / 159 KB (Zen 4, the same hour).
    pub const EDGES: bool = OCB >= 4;
}

impl<T: TapList, const OCB: usize, const WV: usize, const CP: usize> Kernel<RowFamily>
    for Specialised<T, OCB, WV, CP>
{
    #[inline(always)]
    fn run<S: Simd>(simd: S, job: &mut RowJob<'_>) {
        row::<T, S, OCB, WV, CP>(simd, job);
    }
}

/// The accumulators of one tile: `CP` column phases of `OCB x WV` vectors, and where the
/// current input channel's data and weights are. `EDGE` says which vectors are left out
/// (see [`edges`]).
struct Tile<'a, T, S: Simd, const OCB: usize, const WV: usize, const CP: usize, const EDGE: u8> {
    simd: S,
    acc: [[[S::Vector; WV]; OCB]; CP],
    input: &'a [f32],
    /// Index of (current channel, row 0, phase 0, first column of the tile).
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

impl<T: TapList, S: Simd, const OCB: usize, const WV: usize, const CP: usize, const EDGE: u8>
    Tile<'_, T, S, OCB, WV, CP, EDGE>
{
    /// Whether to apply the taps `row` rows from the window origin: the paired kernels
    /// apply every row (their prepared input has zero rows wherever a tap reaches past the
    /// input), the others only those that fall inside the input, not in the padding.
    #[inline(always)]
    fn reads_row(&self, row: isize) -> bool {
        CP == 2 || usize::try_from(self.origin_row + row).is_ok_and(|row| row < self.rows)
    }

    /// One tap into the accumulators of column phase `P`: weight `weight` of the filter, at
    /// `(row, col)` from the window origin.
    ///
    /// The tap's values are arguments, not constant generic parameters: this body is compiled
    /// once per kernel, not once per tap. Inlined into the kernel at each tap's visitor call,
    /// it sees them as constants all the same.
    #[inline(always)]
    fn tap<const P: usize>(&mut self, weight: usize, row: isize, col: isize) {
        debug_assert!(self.reads_row(row), "the visitor tested the tap's row");
        let simd = self.simd;
        let row = self.origin_row + row;
        let column = (col + T::COL_SHIFT) as usize;
        let at = self.base
            + row as usize * self.row_stride
            + column % T::COL_STRIDE * self.phase_len
            + column / T::COL_STRIDE;
        debug_assert!(at + WV * S::LANES <= self.input.len());
        // Constants once inlined: in an edge instance, the vectors that read only zeros. Tested
        // after `EDGE == INTERIOR`, so that the interior instance, every geometry's, is
        // compiled from the plain loops: with a filtered iterator here, the build-cost script
        // measured 1.58 s per geometry against 1.31 before the edge instances, and 1.38 with
        // this (Zen 3, inference, same half hour; single runs move 10-15%).
        let live = |v: usize| {
            let first = (v * S::LANES) as isize + column as isize;
            EDGE == INTERIOR || !edges::dead::<T>(EDGE, first, S::LANES, WV * S::LANES)
        };
        if EDGE != INTERIOR && !(0..WV).any(live) {
            return;
        }
        let mut x = [simd.splat(0.0); WV];
        for (v, x) in x.iter_mut().enumerate() {
            if live(v) {
                // SAFETY: `row` is inside the buffer (`Kernels` implementations call `tap`
                // only after `reads_row` said so for its row), `column / COL_STRIDE` plus
                // the tile is inside the phase row (`row` asserts the tile columns against
                // `phase_len`), and the channel is one of the buffer's; so the `WV * LANES`
                // floats from `at` are in `input`.
                *x = unsafe { simd.load(self.input.as_ptr().add(at + v * S::LANES)) };
            }
        }
        // A constant once inlined, so the check costs nothing; it keeps the unchecked weight
        // reads below inside the channel's filter.
        assert!(weight < T::FILTER_LEN);
        let weight_at = self.weight_base + weight * OCB;
        debug_assert!(weight_at + OCB <= self.weights.len());
        for (j, acc) in self.acc[P % CP].iter_mut().enumerate() {
            // SAFETY: `row` asserts `weights` holds `FILTER_LEN * OCB` weights per input
            // channel of the job, `weight_base` starts the current channel's, and
            // `weight < FILTER_LEN`, `j < OCB`.
            let weight = simd.splat(unsafe { *self.weights.get_unchecked(weight_at + j) });
            for (v, (acc, &x)) in acc.iter_mut().zip(&x).enumerate() {
                if live(v) {
                    *acc = simd.mul_add(weight, x, *acc);
                }
            }
        }
    }
}

/// A [`Tile`] seen as the visitor of column phase `P`'s taps.
struct Slot<
    't,
    'a,
    T,
    S: Simd,
    const OCB: usize,
    const WV: usize,
    const CP: usize,
    const EDGE: u8,
    const P: usize,
>(&'t mut Tile<'a, T, S, OCB, WV, CP, EDGE>);

impl<
    T: TapList,
    S: Simd,
    const OCB: usize,
    const WV: usize,
    const CP: usize,
    const EDGE: u8,
    const P: usize,
> TapVisitor for Slot<'_, '_, T, S, OCB, WV, CP, EDGE, P>
{
    #[inline(always)]
    fn row(&mut self, row: isize) -> bool {
        self.0.reads_row(row)
    }

    #[inline(always)]
    fn tap<const WEIGHT: usize, const ROW: isize, const COL: isize>(&mut self) {
        self.0.tap::<P>(WEIGHT, ROW, COL);
    }
}

/// Computes one output row for up to `OCB` output channels and `CP` (1 or 2) column
/// phases. See the [family documentation](super).
#[inline(always)]
fn row<T: TapList, S: Simd, const OCB: usize, const WV: usize, const CP: usize>(
    simd: S,
    job: &mut RowJob<'_>,
) {
    const { assert!(CP == 1 || CP == 2) };
    const { assert!(CP * WV * S::LANES <= MAX_TILE) };
    let layout = job.input.layout;
    let tile = WV * S::LANES;
    assert!(job.bias.len() <= OCB);
    job.check_out();
    assert!(job.channels.end <= layout.channels);
    assert!(job.weights.len() >= job.channels.len() * T::FILTER_LEN * OCB);
    // The phases this call computes exist; two at once only for column stride 2, from the
    // first column phase of a row phase (`Kernels::with_transposed_columns` pairs no other).
    assert!(job.phase + CP <= T::PHASES.len());
    assert!(CP == 1 || (T::SPEC.stride.1 == 2 && job.phase.is_multiple_of(2)));
    // The row checks below (and the paired kernels' proof of their tap rows) are of the
    // first row; later rows of a multi-row kernel test their tap rows as they go.
    assert!(job.rows == 1 || Specialised::<T, OCB, WV, CP>::MULTI_ROW);
    let tiles_end = job.cols.start + job.cols.len().div_ceil(tile) * tile;
    for plan in &T::PHASES[job.phase..job.phase + CP] {
        let Some(extent) = plan.extent else { continue };
        // The paired kernels read every tap row without a test: prove each is in the buffer.
        if CP == 2 {
            assert!(
                job.origin_row + extent.rows.0 >= 0
                    && job.origin_row + extent.rows.1 < layout.rows as isize
            );
        }
        // Every tile, the last rounded up to a whole tile, stays inside the phase row.
        let last_column = (extent.cols.1 + T::COL_SHIFT) as usize / T::COL_STRIDE;
        assert!(extent.cols.0 + T::COL_SHIFT >= 0 && tiles_end + last_column <= layout.phase_len);
    }

    T::with_phase(
        job.phase,
        Tiles::<T, S, OCB, WV, CP> {
            simd,
            job,
            types: PhantomData,
        },
    );
}

/// The tile loop of [`row`], for one (constant) phase.
struct Tiles<'j, 'a, T, S, const OCB: usize, const WV: usize, const CP: usize> {
    simd: S,
    job: &'j mut RowJob<'a>,
    types: PhantomData<T>,
}

impl<T: TapList, S: Simd, const OCB: usize, const WV: usize, const CP: usize> PhaseFn
    for Tiles<'_, '_, T, S, OCB, WV, CP>
{
    #[inline(always)]
    fn call<const PHASE: usize>(self) {
        let Tiles { simd, job, .. } = self;
        let tile = WV * S::LANES;
        // A constant 1 unless the kernel is `MULTI_ROW`, so that the others compile no row loop.
        let rows = if Specialised::<T, OCB, WV, CP>::MULTI_ROW {
            job.rows
        } else {
            1
        };
        for row in 0..rows {
            let origin_row = job.origin_row + row as isize * job.origin_step;
            let mut start = job.cols.start;
            while start < job.cols.end {
                let at = (row, origin_row, start);
                // A constant: where it is false, the edge instances are not compiled at all.
                if const {
                    Specialised::<T, OCB, WV, CP>::EDGES && edges::any::<T>(S::LANES, WV * S::LANES)
                } {
                    match edges::of::<T>(start, tile, &job.input.data_columns) {
                        LEFT_END => one_tile::<T, S, OCB, WV, CP, LEFT_END, PHASE>(simd, job, at),
                        RIGHT_END => one_tile::<T, S, OCB, WV, CP, RIGHT_END, PHASE>(simd, job, at),
                        _ => one_tile::<T, S, OCB, WV, CP, INTERIOR, PHASE>(simd, job, at),
                    }
                } else {
                    one_tile::<T, S, OCB, WV, CP, INTERIOR, PHASE>(simd, job, at);
                }
                start += tile;
            }
        }
    }
}

/// Computes and stores the tile starting at tile column `start` of the job's output row
/// `row`, whose windows start at input row `origin_row`.
#[inline(always)]
fn one_tile<
    T: TapList,
    S: Simd,
    const OCB: usize,
    const WV: usize,
    const CP: usize,
    const EDGE: u8,
    const PHASE: usize,
>(
    simd: S,
    job: &mut RowJob<'_>,
    (row, origin_row, start): (usize, isize, usize),
) {
    let layout = job.input.layout;
    let bias = |j: usize| simd.splat(job.bias.get(j).copied().unwrap_or(0.0));
    let mut state = Tile::<T, S, OCB, WV, CP, EDGE> {
        simd,
        acc: [std::array::from_fn(|j| [bias(j); WV]); CP],
        input: job.input.data,
        base: 0,
        origin_row,
        rows: layout.rows,
        row_stride: layout.row_stride(),
        phase_len: layout.phase_len,
        weights: job.weights,
        weight_base: 0,
        taps: PhantomData,
    };
    let taps_per_channel = T::FILTER_LEN * OCB;
    for (index, channel) in job.channels.clone().enumerate() {
        state.base = channel * layout.channel_stride() + start;
        state.weight_base = index * taps_per_channel;
        // A phase no tap reaches (`NO_PHASE`) leaves the bias alone.
        if PHASE != NO_PHASE {
            T::visit(PHASE, &mut Slot::<T, S, OCB, WV, CP, EDGE, 0>(&mut state));
            if CP == 2 {
                let second = PHASE.wrapping_add(1);
                T::visit(second, &mut Slot::<T, S, OCB, WV, CP, EDGE, 1>(&mut state));
            }
        }
    }
    let count = (job.cols.end - start).min(WV * S::LANES);
    // By value: the copy keeps the accumulators themselves out of memory.
    store_tile::<S, OCB, WV, CP>(simd, state.acc, job, row, start, count);
}
