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
//! of every output tile is a contiguous, in-bounds load. Rows are not padded: in *border*
//! rows (`CHECK = true`) a tap whose input row falls in the padding is skipped, one test per
//! tap and input channel, never per element; *interior* rows (`CHECK = false`) have no test
//! at all.

use std::marker::PhantomData;
use std::ops::Range;

use crate::__private::{PhasePlan, TapVisitor};
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
    /// The tap list's phase (always 0 for the convolution).
    pub phase: usize,
    /// The block's packed weights: `[channel][tap][OCB]`.
    pub weights: &'a [f32],
    /// One bias per output channel of the block (zeros when the layer has none).
    pub bias: &'a [f32],
    /// The tile columns (output columns, or phase columns `q`) to compute.
    pub cols: Range<usize>,
    /// One output row per channel of the block (at most `OCB`): column `cols.start + i`
    /// is written at index `i * out_step`.
    pub out: &'a mut [&'a mut [f32]],
    pub out_step: usize,
}

/// The widest tile any instantiation uses, in floats.
const MAX_TILE: usize = 64;

/// A row kernel: one instantiation of [`row`] for a geometry, instruction set and blocking.
///
/// # Safety
///
/// The kernel may use instructions of its instruction set (`Plan::isa`): call it only on a
/// CPU that supports them.
pub(crate) type RowKernel = unsafe fn(&mut RowJob<'_>);

/// The accumulating visitor: one tile of `OCB x WV` vectors at one input channel.
struct Tile<'a, T, S: Simd, const OCB: usize, const WV: usize, const CHECK: bool> {
    acc: [[S::Vector; WV]; OCB],
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

impl<T: TapList, S: Simd, const OCB: usize, const WV: usize, const CHECK: bool> TapVisitor
    for Tile<'_, T, S, OCB, WV, CHECK>
{
    #[inline(always)]
    fn tap<const WEIGHT: usize, const ROW: isize, const COL: isize>(&mut self) {
        let row = self.origin_row + ROW;
        if CHECK && (row < 0 || row as usize >= self.rows) {
            return;
        }
        let column = (COL + T::COL_SHIFT) as usize;
        let at = self.base
            + row as usize * self.row_stride
            + column % T::COL_STRIDE * self.phase_len
            + column / T::COL_STRIDE;
        let end = at + WV * S::LANES;
        debug_assert!(end <= self.input.len());
        let x: [S::Vector; WV] = std::array::from_fn(|v| {
            // SAFETY: `row` is inside the buffer (checked above in border rows; `row` asserts
            // it for interior rows from the phase's extent), `column / COL_STRIDE` plus the
            // tile is inside the phase row (`row` asserts the tile columns against
            // `phase_len`), and the channel is one of the buffer's; so `at..end` is in
            // `input`.
            unsafe { S::load_unchecked(self.input.as_ptr().add(at + v * S::LANES)) }
        });
        let weights = &self.weights[self.weight_base + WEIGHT * OCB..][..OCB];
        for (acc, &weight) in self.acc.iter_mut().zip(weights) {
            let weight = S::splat(weight);
            for (acc, &x) in acc.iter_mut().zip(&x) {
                *acc = S::mul_add(weight, x, *acc);
            }
        }
    }
}

/// Computes one output row for up to `OCB` output channels. See the module documentation.
#[inline(always)]
pub(crate) fn row<T: TapList, S: Simd, const OCB: usize, const WV: usize, const CHECK: bool>(
    job: &mut RowJob<'_>,
) {
    let layout = job.input.layout;
    let plan = T::PHASES[job.phase];
    let Some(extent) = plan.extent else {
        return fill_bias(job);
    };
    let tile = WV * S::LANES;
    const { assert!(WV * S::LANES <= MAX_TILE) };
    assert!(job.out.len() <= OCB && job.bias.len() == job.out.len());
    assert!(job.channels.end <= layout.channels);
    assert!(job.weights.len() >= job.channels.len() * T::FILTER_LEN * OCB);
    // Interior rows are read without a test: prove every tap's row is in the buffer.
    if !CHECK {
        assert!(
            job.origin_row + extent.rows.0 >= 0
                && job.origin_row + extent.rows.1 < layout.rows as isize
        );
    }
    // Every tile, the last rounded up to a whole tile, stays inside the phase row.
    let last_column = (extent.cols.1 + T::COL_SHIFT) as usize / T::COL_STRIDE;
    let tiles_end = job.cols.start + job.cols.len().div_ceil(tile) * tile;
    assert!(extent.cols.0 + T::COL_SHIFT >= 0 && tiles_end + last_column <= layout.phase_len);

    let (input, weights) = (job.input.data, job.weights);
    let mut start = job.cols.start;
    while start < job.cols.end {
        let mut state = Tile::<T, S, OCB, WV, CHECK> {
            acc: std::array::from_fn(|j| [S::splat(job.bias.get(j).copied().unwrap_or(0.0)); WV]),
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
            T::visit(job.phase, &mut state);
        }
        let count = (job.cols.end - start).min(tile);
        store_tile::<S, OCB, WV>(&state.acc, job, start - job.cols.start, count);
        start += tile;
    }
}

/// Writes `count` columns of a tile, starting at tile column `first`.
#[inline(always)]
fn store_tile<S: Simd, const OCB: usize, const WV: usize>(
    acc: &[[S::Vector; WV]; OCB],
    job: &mut RowJob<'_>,
    first: usize,
    count: usize,
) {
    let step = job.out_step;
    for (out, acc) in job.out.iter_mut().zip(acc) {
        if step == 1 && count == WV * S::LANES {
            for (v, &vector) in acc.iter().enumerate() {
                S::store(&mut out[first + v * S::LANES..], vector);
            }
        } else {
            let mut buffer = [0.0f32; MAX_TILE];
            let buffer = &mut buffer[..WV * S::LANES];
            for (v, &vector) in acc.iter().enumerate() {
                S::store(&mut buffer[v * S::LANES..], vector);
            }
            for (i, &value) in buffer[..count].iter().enumerate() {
                out[(first + i) * step] = value;
            }
        }
    }
}

/// A phase no tap reaches: its outputs are the bias alone.
fn fill_bias(job: &mut RowJob<'_>) {
    for (out, &bias) in job.out.iter_mut().zip(job.bias) {
        for i in 0..job.cols.len() {
            out[i * job.out_step] = bias;
        }
    }
}
