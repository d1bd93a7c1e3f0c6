//! The pixel kernel: for a run of input rows and a block of output channels, the four
//! output pixels every input pixel spreads to.

use std::mem::MaybeUninit;
use std::ops::Range;

use crate::isa::{Family, Kernel, Simd};

/// The pixel kernels' family: every kernel computes one [`PixelJob`].
pub(crate) struct PixelFamily;

impl Family for PixelFamily {
    type Job<'a> = PixelJob<'a>;
}

/// Phases of a 2x2 filter of stride 2: output `(2i + a, 2j + b)` is phase `2a + b` of input
/// `(i, j)`.
pub(super) const PHASES: usize = 4;

/// Input rows `rows` of one image and group, into one block of output channels.
pub(crate) struct PixelJob<'a> {
    /// The group's input channels, `channels` planes `plane` floats apart, each rows of
    /// `width` floats.
    pub input: &'a [f32],
    pub channels: usize,
    pub plane: usize,
    pub width: usize,
    /// The input rows to compute: output rows `2 * rows.start..2 * rows.end`.
    pub rows: Range<usize>,
    /// The block's weights, `[channel][phase][block channel]`, the kernel's block wide.
    pub weights: &'a [f32],
    /// One bias per output channel of the block (zeros when the layer has none): as many
    /// as the block has channels, at most the kernel's block.
    pub bias: &'a [f32],
    /// For each output channel of the block, its output rows `2 * rows.start` onwards, rows
    /// of `2 * width`. Possibly uninitialised: the kernel writes every element of those
    /// rows.
    pub out: &'a mut [&'a mut [MaybeUninit<f32>]],
}

/// The kernel of `OCB` output channels by `V` vectors of input pixels: `OCB x 4 x V`
/// accumulators, one load of each input vector per `4 * OCB` multiply-adds.
pub(crate) struct Pixels<const OCB: usize, const V: usize>;

/// The widest tile of any blocking, in input pixels: the buffer a row's last, partial tile
/// goes through.
const MAX_TILE: usize = 64;

impl<const OCB: usize, const V: usize> Kernel<PixelFamily> for Pixels<OCB, V> {
    #[inline(always)]
    fn run<S: Simd>(simd: S, job: &mut PixelJob<'_>) {
        const { assert!(V * 16 <= MAX_TILE) };
        let tile = V * S::LANES;
        let (width, plane, channels) = (job.width, job.plane, job.channels);
        let out_len = job.rows.len() * PHASES * width;
        assert!(job.bias.len() <= OCB && job.out.len() == job.bias.len());
        assert!(job.out.iter().all(|out| out.len() >= out_len));
        assert!(job.weights.len() >= channels * PHASES * OCB);
        assert!(job.rows.end * width <= plane);
        assert!(channels == 0 || (channels - 1) * plane + job.rows.end * width <= job.input.len());
        let bias: [S::Vector; OCB] =
            std::array::from_fn(|j| simd.splat(job.bias.get(j).copied().unwrap_or(0.0)));
        for (r, row) in job.rows.clone().enumerate() {
            let mut start = 0;
            while start + tile <= width {
                let at = row * width + start;
                let acc = accumulate::<S, OCB, V>(simd, job.weights, channels, bias, |c| {
                    // SAFETY: `at + tile <= row * width + width <= rows.end * width`, so
                    // channel `c < channels`' tile ends inside the input (asserted above).
                    std::array::from_fn(|v| unsafe {
                        simd.load(job.input.as_ptr().add(c * plane + at + v * S::LANES))
                    })
                });
                let at = (r * PHASES * width, start, tile);
                store_tile::<S, OCB, V>(simd, acc, job.out, at, width);
                start += tile;
            }
            if start < width {
                // The row's last, partial tile. Each output lane is computed from its input
                // lane alone, so the tile's vectors may read past the row into the next (or
                // the next channel's plane): the extra lanes' outputs are not stored. Only
                // where that would read past the input does a channel's rest of the row go
                // through a buffer padded with zeros.
                let count = width - start;
                let at = row * width + start;
                let acc = accumulate::<S, OCB, V>(simd, job.weights, channels, bias, |c| {
                    let first = c * plane + at;
                    if first + tile <= job.input.len() {
                        // SAFETY: the tile's `V * LANES` floats from `first` are inside the
                        // input, as just tested.
                        std::array::from_fn(|v| unsafe {
                            simd.load(job.input.as_ptr().add(first + v * S::LANES))
                        })
                    } else {
                        let mut padded = [0.0f32; MAX_TILE];
                        for (slot, &value) in padded.iter_mut().zip(&job.input[first..][..count]) {
                            *slot = value;
                        }
                        // SAFETY: `padded` holds `MAX_TILE >= V * LANES` floats.
                        std::array::from_fn(|v| unsafe {
                            simd.load(padded.as_ptr().add(v * S::LANES))
                        })
                    }
                });
                let at = (r * PHASES * width, start, count);
                store_tile::<S, OCB, V>(simd, acc, job.out, at, width);
            }
        }
    }
}

/// The sums of one tile: the bias plus, over every input channel, its `V` vectors of
/// pixels (`load(channel)`) times each phase's weight of each output channel.
#[inline(always)]
fn accumulate<S: Simd, const OCB: usize, const V: usize>(
    simd: S,
    weights: &[f32],
    channels: usize,
    bias: [S::Vector; OCB],
    load: impl Fn(usize) -> [S::Vector; V],
) -> [[[S::Vector; V]; PHASES]; OCB] {
    let mut acc = bias.map(|bias| [[bias; V]; PHASES]);
    for (c, weights) in weights
        .chunks_exact(PHASES * OCB)
        .take(channels)
        .enumerate()
    {
        let x = load(c);
        for phase in 0..PHASES {
            for (j, acc) in acc.iter_mut().enumerate() {
                let weight = simd.splat(weights[phase * OCB + j]);
                for (acc, &x) in acc[phase].iter_mut().zip(&x) {
                    *acc = simd.mul_add(weight, x, *acc);
                }
            }
        }
    }
    acc
}

/// Writes the tile starting at input column `start`, of `count` pixels: output rows `2i`
/// and `2i + 1` (from `first`, the offset of row `2i` in each channel's slice) interleave
/// phases 0 and 1, and 2 and 3, lane by lane; a row's last tile, if partial, through a
/// buffer.
#[inline(always)]
fn store_tile<S: Simd, const OCB: usize, const V: usize>(
    simd: S,
    acc: [[[S::Vector; V]; PHASES]; OCB],
    out: &mut [&mut [MaybeUninit<f32>]],
    (first, start, count): (usize, usize, usize),
    width: usize,
) {
    // Over the block's constant `OCB` channels, not the job's: a loop of run-time length
    // indexes the accumulators at run time, which keeps them in memory.
    for (j, acc) in acc.iter().enumerate() {
        let Some(out) = out.get_mut(j) else { break };
        for half in 0..2 {
            let row = &mut out[first + half * 2 * width..][2 * start..2 * width];
            let pairs = acc[2 * half].iter().zip(&acc[2 * half + 1]);
            if count == V * S::LANES {
                for (v, (&even, &odd)) in pairs.enumerate() {
                    let (low, high) = simd.interleave(even, odd);
                    simd.store_uninit(&mut row[2 * v * S::LANES..], low);
                    simd.store_uninit(&mut row[(2 * v + 1) * S::LANES..], high);
                }
            } else {
                let mut buffer = [0.0f32; 2 * MAX_TILE];
                for (v, (&even, &odd)) in pairs.enumerate() {
                    let (low, high) = simd.interleave(even, odd);
                    simd.store(&mut buffer[2 * v * S::LANES..], low);
                    simd.store(&mut buffer[(2 * v + 1) * S::LANES..], high);
                }
                for (slot, &value) in row.iter_mut().zip(&buffer[..2 * count]) {
                    slot.write(value);
                }
            }
        }
    }
}
