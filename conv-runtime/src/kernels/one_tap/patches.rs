//! The patch kernel: for a run of output rows and a block of output channels, each output
//! pixel from its own 2x2 patch of the input.

use std::mem::MaybeUninit;
use std::ops::Range;

use super::kernel::PHASES;
use crate::isa::{Family, Kernel, Simd};

/// The patch kernels' family: every kernel computes one [`PatchJob`].
pub(crate) struct PatchFamily;

impl Family for PatchFamily {
    type Job<'a> = PatchJob<'a>;
}

/// Output rows `rows` of one image and group, from one block of output channels.
pub(crate) struct PatchJob<'a> {
    /// The group's input channels, `channels` planes `plane` floats apart, each rows of
    /// `in_w` floats.
    pub input: &'a [f32],
    pub channels: usize,
    pub plane: usize,
    pub in_w: usize,
    /// Output columns per row: `in_w / 2`.
    pub out_w: usize,
    /// The output rows to compute, from input rows `2 * rows.start..2 * rows.end`.
    pub rows: Range<usize>,
    /// The block's weights, `[channel][tap 2a + b][block channel]`, the kernel's block wide.
    pub weights: &'a [f32],
    /// One bias per output channel of the block, at most the kernel's block.
    pub bias: &'a [f32],
    /// For each output channel of the block, its output rows `rows.start` onwards, rows of
    /// `out_w`. Possibly uninitialised: the kernel writes every element of those rows.
    pub out: &'a mut [&'a mut [MaybeUninit<f32>]],
}

/// The kernel of `OCB` output channels by one vector of output pixels: `OCB` accumulators,
/// each pair of input vectors split into its even and odd columns (taps `b = 0` and `1`) in
/// registers, for `2 * OCB` multiply-adds.
pub(crate) struct Patches<const OCB: usize>;

impl<const OCB: usize> Kernel<PatchFamily> for Patches<OCB> {
    #[inline(always)]
    fn run<S: Simd>(simd: S, job: &mut PatchJob<'_>) {
        let lanes = S::LANES;
        let (in_w, out_w, plane, channels) = (job.in_w, job.out_w, job.plane, job.channels);
        assert!(job.bias.len() <= OCB && job.out.len() == job.bias.len());
        assert!(
            job.out
                .iter()
                .all(|out| out.len() >= job.rows.len() * out_w)
        );
        assert!(job.weights.len() >= channels * PHASES * OCB);
        assert!(2 * out_w <= in_w && 2 * job.rows.end * in_w <= plane);
        assert!(
            channels == 0 || (channels - 1) * plane + 2 * job.rows.end * in_w <= job.input.len()
        );
        let bias: [S::Vector; OCB] =
            std::array::from_fn(|j| simd.splat(job.bias.get(j).copied().unwrap_or(0.0)));
        for (r, row) in job.rows.clone().enumerate() {
            let mut start = 0;
            while start < out_w {
                // A whole vector of outputs reads `2 * LANES` input columns from `2 *
                // start`, inside the input row; a last, partial one reads past the row into
                // the next (each output lane is computed from its own input pair, and the
                // extra lanes' outputs are not stored), or, where that would read past the
                // input, a channel's rest of the row through a buffer padded with zeros.
                let count = lanes.min(out_w - start);
                let acc = accumulate::<S, OCB>(simd, job.weights, channels, bias, |c, a| {
                    let first = c * plane + (2 * row + a) * in_w + 2 * start;
                    let pair = |from: *const f32| {
                        // SAFETY: the callers below pass pointers to `2 * LANES` floats.
                        unsafe { simd.deinterleave(simd.load(from), simd.load(from.add(lanes))) }
                    };
                    if first + 2 * lanes <= job.input.len() {
                        // Inside the input, as just tested.
                        pair(job.input[first..].as_ptr())
                    } else {
                        let mut padded = [0.0f32; 2 * MAX_LANES];
                        let rest = &job.input[first..][..2 * count];
                        padded[..2 * count].copy_from_slice(rest);
                        pair(padded.as_ptr())
                    }
                });
                store::<S, OCB>(simd, acc, job.out, r * out_w + start, count);
                start += count;
            }
        }
    }
}

/// The widest vector of any set, in floats.
const MAX_LANES: usize = 16;

/// The sums of one vector of outputs: the bias plus, over every input channel and filter
/// row `a`, the even and odd columns of its input row (`load(channel, a)`) times taps
/// `(a, 0)` and `(a, 1)` of each output channel.
#[inline(always)]
fn accumulate<S: Simd, const OCB: usize>(
    simd: S,
    weights: &[f32],
    channels: usize,
    bias: [S::Vector; OCB],
    load: impl Fn(usize, usize) -> (S::Vector, S::Vector),
) -> [S::Vector; OCB] {
    let mut acc = bias;
    for (c, weights) in weights
        .chunks_exact(PHASES * OCB)
        .take(channels)
        .enumerate()
    {
        for a in 0..2 {
            let (even, odd) = load(c, a);
            for (b, x) in [even, odd].into_iter().enumerate() {
                for (j, acc) in acc.iter_mut().enumerate() {
                    let weight = simd.splat(weights[(2 * a + b) * OCB + j]);
                    *acc = simd.mul_add(weight, x, *acc);
                }
            }
        }
    }
    acc
}

/// Writes the `count` outputs of each channel's sums from `at` in its rows, through a
/// buffer where they are less than a vector.
#[inline(always)]
fn store<S: Simd, const OCB: usize>(
    simd: S,
    acc: [S::Vector; OCB],
    out: &mut [&mut [MaybeUninit<f32>]],
    at: usize,
    count: usize,
) {
    // Over the constant `OCB` channels (see the pixel kernel's `store_tile`).
    for (j, &acc) in acc.iter().enumerate() {
        let Some(out) = out.get_mut(j) else { break };
        if count == S::LANES {
            simd.store_uninit(&mut out[at..], acc);
        } else {
            let mut buffer = [0.0f32; MAX_LANES];
            simd.store(&mut buffer, acc);
            for (slot, &value) in out[at..at + count].iter_mut().zip(&buffer) {
                slot.write(value);
            }
        }
    }
}
