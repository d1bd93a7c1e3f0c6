//! The register-blocked row kernel, written once for both directions and every instruction
//! set, and unrolled over the taps `conv!` generated.
//!
//! One call computes one output row of `OCB` output channels: tile after tile of
//! `WV * LANES` consecutive outputs, each tile held in `OCB x WV` vector accumulators while
//! the kernel walks the group's input channels and, for each, every tap of the geometry.
//! A tap is one vector load per accumulator column and one broadcast weight per row,
//! at offsets that are constants once `G::forward_taps` is inlined.
//!
//! The input is read from a [`Prepared`] buffer, never from the user's array: padded with
//! zeros on the left and right and split into `col_stride` column phases, so that every tap
//! of every output tile is a contiguous, in-bounds load. Rows are not padded: the taps come
//! grouped by filter row, and a row of taps whose input row falls in the padding is skipped,
//! one test per filter row and input channel, never per element or tap. One kernel serves
//! every output row: a second, unchecked instantiation for the interior rows would double
//! the code each geometry compiles for a difference within the benchmarks' noise.
//!
//! The exception is the paired kernel (`CP = 2`) of a stride-2 transposed convolution, which
//! loads an input vector for every four to eight broadcast weights and so is bound by loads:
//! keeping a row test's state in registers spills the row pointers, an extra load per tap
//! row that cost dcgan-up 17% (AVX2, Zen 3). Its prepared input has zero rows above and below
//! instead, which its border rows multiply; those are a few rows of a transposed
//! convolution's output, where a dilated convolution's can be most of them.

use std::marker::PhantomData;
use std::ops::Range;

use crate::__private::{ColumnPairing, NO_PHASE, PhaseFn, PhasePlan, TapVisitor};
use crate::simd::Simd;
use crate::{Geometry, GeometrySpec};

/// Which tap lists a kernel walks, and where they read the prepared input.
pub(crate) trait TapList: Send + Sync + 'static {
    const SPEC: GeometrySpec;
    /// The phases of this direction (one for the convolution).
    const PHASES: &'static [PhasePlan];
    /// Zeros the prepared rows carry on their left, before input column 0.
    const INPUT_SHIFT: usize;
    /// Added to `tile column * COL_STRIDE + COL` to index the prepared row.
    const COL_SHIFT: isize;
    /// Column phases the prepared input is split into (the convolution's column stride).
    const COL_STRIDE: usize;
    /// Weights per filter, `kh * kw`: every phase indexes into the whole filter.
    const FILTER_LEN: usize;

    fn visit<V: TapVisitor>(phase: usize, visitor: &mut V);

    /// Calls `f` with `phase` as a constant, so that the phase's tap list is chosen once
    /// per kernel call instead of once per input channel.
    fn with_phase<F: PhaseFn>(phase: usize, f: F);

    /// Chooses between kernels computing one and two column phases per call.
    fn with_columns<F: ColumnPairing>(f: F) -> F::Output;
}

/// The convolution of geometry `G`: the prepared rows carry the left padding, so output
/// column `ow`, whose window starts at input column `ow * stride_w - pad_left`, starts at
/// prepared column `ow * stride_w`, and its tap `COL` is in column phase `COL % stride_w`.
pub(crate) struct Forward<G>(PhantomData<G>);

impl<G: Geometry> TapList for Forward<G> {
    const SPEC: GeometrySpec = G::SPEC;
    const PHASES: &'static [PhasePlan] = &[G::FORWARD];
    const INPUT_SHIFT: usize = G::SPEC.pad_before().1;
    const COL_SHIFT: isize = 0;
    const COL_STRIDE: usize = G::SPEC.stride.1;
    const FILTER_LEN: usize = G::SPEC.kernel_size.0 * G::SPEC.kernel_size.1;

    #[inline(always)]
    fn visit<V: TapVisitor>(_phase: usize, visitor: &mut V) {
        G::forward_taps(visitor);
    }

    #[inline(always)]
    fn with_phase<F: PhaseFn>(_phase: usize, f: F) {
        f.call::<0>()
    }

    fn with_columns<F: ColumnPairing>(f: F) -> F::Output {
        f.single()
    }
}

/// The transposed convolution of geometry `G`: phase column `q` reads input columns
/// `q + COL` with `COL <= 0`, so the prepared row carries the largest `-COL` in zeros on its
/// left.
pub(crate) struct Transposed<G>(PhantomData<G>);

impl<G: Geometry> TapList for Transposed<G> {
    const SPEC: GeometrySpec = G::SPEC;
    const PHASES: &'static [PhasePlan] = G::TRANSPOSED;
    const INPUT_SHIFT: usize = (G::SPEC.kernel_size.1 - 1) * G::SPEC.dilation.1 / G::SPEC.stride.1;
    const COL_SHIFT: isize = Self::INPUT_SHIFT as isize;
    const COL_STRIDE: usize = 1;
    const FILTER_LEN: usize = G::SPEC.kernel_size.0 * G::SPEC.kernel_size.1;

    #[inline(always)]
    fn visit<V: TapVisitor>(phase: usize, visitor: &mut V) {
        G::transposed_taps(phase, visitor);
    }

    #[inline(always)]
    fn with_phase<F: PhaseFn>(phase: usize, f: F) {
        G::with_transposed_phase(phase, f)
    }

    fn with_columns<F: ColumnPairing>(f: F) -> F::Output {
        G::with_transposed_columns(f)
    }
}

/// The input of one image, laid out for the kernels: `[channel][row][col_phase][col]`, with
/// zeros around the data so that every column a tile reads is inside its row.
pub(crate) struct Prepared<'a> {
    data: &'a [f32],
    layout: PreparedLayout,
}

/// The shape of a [`Prepared`] buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PreparedLayout {
    pub channels: usize,
    pub rows: usize,
    pub col_phases: usize,
    /// Floats per column phase of one row.
    pub phase_len: usize,
}

impl PreparedLayout {
    pub fn row_stride(&self) -> usize {
        self.col_phases * self.phase_len
    }

    pub fn channel_stride(&self) -> usize {
        self.rows * self.row_stride()
    }

    pub fn len(&self) -> usize {
        self.channels * self.channel_stride()
    }
}

impl<'a> Prepared<'a> {
    /// Wraps `data`, which must hold exactly `layout.len()` floats.
    pub fn new(data: &'a [f32], layout: PreparedLayout) -> Prepared<'a> {
        assert_eq!(
            data.len(),
            layout.len(),
            "prepared buffer matches its layout"
        );
        Prepared { data, layout }
    }
}

/// One output row of one block of output channels: everything but the geometry.
pub(crate) struct RowJob<'a> {
    pub input: &'a Prepared<'a>,
    /// The group's input channels within `input`.
    pub channels: Range<usize>,
    /// The input row of the windows' origin (may be negative, in the padding).
    pub origin_row: isize,
    /// The tap list's phase (always 0 for the convolution). A kernel that computes `CP`
    /// column phases at once computes phases `phase..phase + CP`.
    pub phase: usize,
    /// The block's packed weights: `[channel][tap][OCB]`.
    pub weights: &'a [f32],
    /// One bias per output channel of the block (zeros when the layer has none).
    pub bias: &'a [f32],
    /// The tile columns (output columns, or phase columns `q`) to compute.
    pub cols: Range<usize>,
    /// Whole output rows, one per channel of the block (at most `OCB`).
    pub out: &'a mut [&'a mut [f32]],
    /// Tile column `c` of the kernel's `p`-th column phase is output column
    /// `c * out_step + p + out_offset`; outputs that fall outside the row are dropped.
    pub out_step: usize,
    pub out_offset: isize,
    /// The direction's taps as data, for [`row_with_run_time_taps`]; the specialised kernels
    /// have the same as constants of their [`TapList`].
    pub taps: RunTimeTaps,
}

/// A direction's taps and where they read the prepared input, as values: what a [`TapList`]
/// holds as constants.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RunTimeTaps {
    pub phases: &'static [PhasePlan],
    pub col_shift: isize,
    pub col_stride: usize,
    pub filter_len: usize,
}

impl RunTimeTaps {
    pub fn of<T: TapList>() -> RunTimeTaps {
        RunTimeTaps {
            phases: T::PHASES,
            col_shift: T::COL_SHIFT,
            col_stride: T::COL_STRIDE,
            filter_len: T::FILTER_LEN,
        }
    }
}

/// The widest tile any instantiation uses, in floats, all column phases together.
const MAX_TILE: usize = 128;

/// A row kernel: one instantiation of [`row`] for a geometry, instruction set and blocking.
///
/// # Safety
///
/// The kernel may use instructions of its instruction set (`Plan::isa`): call it only on a
/// CPU that supports them.
pub(crate) type RowKernel = unsafe fn(&mut RowJob<'_>);

/// The accumulators of one tile: `CP` column phases of `OCB x WV` vectors, and where the
/// current input channel's data and weights are.
struct Tile<'a, T, S: Simd, const OCB: usize, const WV: usize, const CP: usize> {
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

impl<T: TapList, S: Simd, const OCB: usize, const WV: usize, const CP: usize>
    Tile<'_, T, S, OCB, WV, CP>
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
        let row = self.origin_row + row;
        let column = (col + T::COL_SHIFT) as usize;
        let at = self.base
            + row as usize * self.row_stride
            + column % T::COL_STRIDE * self.phase_len
            + column / T::COL_STRIDE;
        debug_assert!(at + WV * S::LANES <= self.input.len());
        let mut x = [S::splat(0.0); WV];
        for (v, x) in x.iter_mut().enumerate() {
            // SAFETY: `row` is inside the buffer (`Kernels` implementations call `tap` only
            // after `reads_row` said so for its row), `column / COL_STRIDE` plus the
            // tile is inside the phase row (`row` asserts the tile columns against
            // `phase_len`), and the channel is one of the buffer's; so the `WV * LANES`
            // floats from `at` are in `input`.
            *x = unsafe { S::load_unchecked(self.input.as_ptr().add(at + v * S::LANES)) };
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
            let weight = S::splat(unsafe { *self.weights.get_unchecked(weight_at + j) });
            for (acc, &x) in acc.iter_mut().zip(&x) {
                *acc = S::mul_add(weight, x, *acc);
            }
        }
    }
}

/// A [`Tile`] seen as the visitor of column phase `P`'s taps.
struct Slot<'t, 'a, T, S: Simd, const OCB: usize, const WV: usize, const CP: usize, const P: usize>(
    &'t mut Tile<'a, T, S, OCB, WV, CP>,
);

impl<T: TapList, S: Simd, const OCB: usize, const WV: usize, const CP: usize, const P: usize>
    TapVisitor for Slot<'_, '_, T, S, OCB, WV, CP, P>
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
/// phases. See the module documentation.
#[inline(always)]
pub(crate) fn row<T: TapList, S: Simd, const OCB: usize, const WV: usize, const CP: usize>(
    job: &mut RowJob<'_>,
) {
    const { assert!(CP == 1 || CP == 2) };
    const { assert!(CP * WV * S::LANES <= MAX_TILE) };
    let layout = job.input.layout;
    let tile = WV * S::LANES;
    assert!(job.out.len() <= OCB && job.bias.len() == job.out.len());
    assert!(job.channels.end <= layout.channels);
    assert!(job.weights.len() >= job.channels.len() * T::FILTER_LEN * OCB);
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
            job,
            types: PhantomData,
        },
    );
}

/// The tile loop of [`row`], for one (constant) phase.
struct Tiles<'j, 'a, T, S, const OCB: usize, const WV: usize, const CP: usize> {
    job: &'j mut RowJob<'a>,
    types: PhantomData<(T, S)>,
}

impl<T: TapList, S: Simd, const OCB: usize, const WV: usize, const CP: usize> PhaseFn
    for Tiles<'_, '_, T, S, OCB, WV, CP>
{
    #[inline(always)]
    fn call<const PHASE: usize>(self) {
        let job = self.job;

        let layout = job.input.layout;
        let tile = WV * S::LANES;
        let (input, weights) = (job.input.data, job.weights);
        let mut start = job.cols.start;
        while start < job.cols.end {
            let bias = |j: usize| S::splat(job.bias.get(j).copied().unwrap_or(0.0));
            let mut state = Tile::<T, S, OCB, WV, CP> {
                acc: [std::array::from_fn(|j| [bias(j); WV]); CP],
                input,
                base: 0,
                origin_row: job.origin_row,
                rows: layout.rows,
                row_stride: layout.row_stride(),
                phase_len: layout.phase_len,
                weights,
                weight_base: 0,
                taps: PhantomData,
            };
            let taps_per_channel = T::FILTER_LEN * OCB;
            for (index, channel) in job.channels.clone().enumerate() {
                state.base = channel * layout.channel_stride() + start;
                state.weight_base = index * taps_per_channel;
                // A phase no tap reaches (`NO_PHASE`) leaves the bias alone.
                if PHASE != NO_PHASE {
                    T::visit(PHASE, &mut Slot::<T, S, OCB, WV, CP, 0>(&mut state));
                    if CP == 2 {
                        let second = PHASE.wrapping_add(1);
                        T::visit(second, &mut Slot::<T, S, OCB, WV, CP, 1>(&mut state));
                    }
                }
            }
            let count = (job.cols.end - start).min(tile);
            // By value: the copy keeps the accumulators themselves out of memory.
            store_tile::<S, OCB, WV, CP>(state.acc, job, start, count);
            start += tile;
        }
    }
}

/// The row kernel with the taps as run-time values (`job.taps`): compiled once for every
/// geometry, with bounds-checked reads. The portable path runs it: that path is the fallback
/// for CPUs without the vector units the specialised kernels target, so its speed is not
/// worth the compile time of specialising it for every geometry.
#[inline(always)]
pub(crate) fn row_with_run_time_taps<
    S: Simd,
    const OCB: usize,
    const WV: usize,
    const CP: usize,
>(
    job: &mut RowJob<'_>,
) {
    const { assert!(CP == 1 || CP == 2) };
    const { assert!(CP * WV * S::LANES <= MAX_TILE) };
    let layout = job.input.layout;
    let taps = job.taps;
    let tile = WV * S::LANES;
    assert!(job.out.len() <= OCB && job.bias.len() == job.out.len());
    let (input, weights) = (job.input.data, job.weights);
    let filter = taps.filter_len * OCB;
    let phases = &taps.phases[job.phase..job.phase + CP];
    let mut start = job.cols.start;
    while start < job.cols.end {
        let bias = |j: usize| S::splat(job.bias.get(j).copied().unwrap_or(0.0));
        let mut acc: [[[S::Vector; WV]; OCB]; CP] = [std::array::from_fn(|j| [bias(j); WV]); CP];
        for (index, channel) in job.channels.clone().enumerate() {
            let channel = &input[channel * layout.channel_stride()..][..layout.channel_stride()];
            let weights = &weights[index * filter..][..filter];
            for (acc, phase) in acc.iter_mut().zip(phases) {
                for tap in phase.taps {
                    // Rows outside the prepared input are padding: their products are zeros.
                    let Ok(row) = usize::try_from(job.origin_row + tap.row) else {
                        continue;
                    };
                    if row >= layout.rows {
                        continue;
                    }
                    let column = usize::try_from(tap.col + taps.col_shift)
                        .expect("taps read the prepared row's columns");
                    let row = &channel[row * layout.row_stride()..][..layout.row_stride()];
                    let phase_row =
                        &row[column % taps.col_stride * layout.phase_len..][..layout.phase_len];
                    let x = &phase_row[column / taps.col_stride + start..][..tile];
                    let weights = &weights[tap.weight * OCB..][..OCB];
                    for (acc, &weight) in acc.iter_mut().zip(weights) {
                        let weight = S::splat(weight);
                        for (acc, x) in acc.iter_mut().zip(x.chunks_exact(S::LANES)) {
                            // SAFETY: `x` is a slice of `LANES` floats.
                            let x = unsafe { S::load_unchecked(x.as_ptr()) };
                            *acc = S::mul_add(weight, x, *acc);
                        }
                    }
                }
            }
        }
        let count = (job.cols.end - start).min(tile);
        store_tile::<S, OCB, WV, CP>(acc, job, start, count);
        start += tile;
    }
}

/// Writes `count` tile columns of every column phase of a tile starting at tile column
/// `start`.
#[inline(always)]
fn store_tile<S: Simd, const OCB: usize, const WV: usize, const CP: usize>(
    acc: [[[S::Vector; WV]; OCB]; CP],
    job: &mut RowJob<'_>,
    start: usize,
    count: usize,
) {
    let tile = WV * S::LANES;
    let (step, offset) = (job.out_step, job.out_offset);
    // Output column of the tile's first value, and whether the whole tile lands in the row
    // as one contiguous run: then it is written with vector stores.
    let first = (start * step) as isize + offset;
    let contiguous = step == CP && count == tile;
    for (j, out) in job.out.iter_mut().enumerate() {
        let run = usize::try_from(first)
            .ok()
            .filter(|&first| contiguous && first + CP * tile <= out.len());
        match run {
            Some(first) if CP == 1 => {
                for (v, &vector) in acc[0][j].iter().enumerate() {
                    S::store(&mut out[first + v * S::LANES..], vector);
                }
            }
            Some(first) => {
                // Two column phases: interleave them, lane by lane, into the row.
                let pairs = acc[0][j].iter().zip(&acc[1 % CP][j]);
                for (v, (&even, &odd)) in pairs.enumerate() {
                    let (low, high) = S::interleave(even, odd);
                    let at = first + 2 * v * S::LANES;
                    S::store(&mut out[at..], low);
                    S::store(&mut out[at + S::LANES..], high);
                }
            }
            None => {
                let mut buffer = [[0.0f32; MAX_TILE]; CP];
                for (p, buffer) in buffer.iter_mut().enumerate() {
                    for (v, &vector) in acc[p][j].iter().enumerate() {
                        S::store(&mut buffer[v * S::LANES..], vector);
                    }
                }
                for i in 0..count {
                    for (p, buffer) in buffer.iter().enumerate() {
                        let x = ((start + i) * step + p) as isize + offset;
                        if let Some(slot) = usize::try_from(x).ok().and_then(|x| out.get_mut(x)) {
                            *slot = buffer[i];
                        }
                    }
                }
            }
        }
    }
}
