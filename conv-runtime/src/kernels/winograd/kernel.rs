//! The Winograd kernel: one row of 2x2 output tiles, every output channel, in blocks of
//! `TILES` tiles: the input tiles transformed, sixteen products with the transformed
//! weights, the output tiles transformed back. See the [family documentation](super).

use std::mem::MaybeUninit;

use crate::isa::{Family, Isa, Kernel, Simd};
use crate::memory::layout::odd_lines;

/// The Winograd kernels' family: every kernel computes one [`TileRowJob`].
pub(crate) struct WinogradFamily;

impl Family for WinogradFamily {
    type Job<'a> = TileRowJob<'a>;
}

/// Output channels per step of the products on AVX-512: eight broadcast weights times two
/// vectors of tiles, sixteen accumulators and two loads of tiles per eight weights. Four
/// (eight accumulators, two loads per four) had been enough on Zen 4, but leave a core
/// that issues two 512-bit FMAs a cycle no slack for the FMA latency nor for its two loads
/// a cycle: unet-enc ran 6.45 -> 5.86 ms with eight (Intel Xeon, one thread, fastest of
/// five alternated runs of `suite --only unet-enc --quick`), and context-d4's lattice 1.53
/// -> 1.25 ms (the same machine, eight alternated runs; an earlier measurement that kept
/// four for the lattice no longer held). The sets of 16 registers keep four
/// ([`SMALL_CHANNEL_STEP`]), as do layers of four output channels or fewer.
pub(super) const CHANNEL_STEP: usize = 8;

/// Output channels per step on the other sets, and on every set for layers of at most
/// this many output channels (an RGB image: sr-x3), whose steps of eight would be mostly
/// zero filters.
pub(super) const SMALL_CHANNEL_STEP: usize = 4;

/// The output channels the transformed weights hold, `out_channels` rounded up to a whole
/// number of steps (the extra filters zero).
pub(super) fn padded_out_channels(out_channels: usize) -> usize {
    if out_channels <= SMALL_CHANNEL_STEP {
        SMALL_CHANNEL_STEP
    } else {
        out_channels.next_multiple_of(CHANNEL_STEP)
    }
}

/// Output channels whose transformed weights are together for each input channel, the
/// weights `[16][out_channel / block][in_channel][block]`: a step of either size reads its
/// weights for every input channel in order, not a few floats of a line per input channel
/// (as the strided kernel's weights, see `strided::transform_weights`).
pub(super) fn out_block(padded_out: usize) -> usize {
    padded_out.min(CHANNEL_STEP)
}

/// The most tiles a block has: two vectors of the widest set (AVX-512's 16 lanes).
pub(super) const MAX_TILES: usize = 32;

/// Floats from one position to the next in the transformed input (`[position][channel]
/// [tile]`) and the products (`[position][out_channel][tile]`), for `floats` floats a
/// position: an odd number of cache lines (see [`odd_lines`]). Each tile's transform stores
/// its 16 positions, and the output transform loads them, one after another; unpadded,
/// 64 channels of a block of 32 tiles put them 8 KiB apart, all in one set of L1, and the
/// loads that followed waited on stores to addresses equal in their low 12 bits: the input
/// transform was a fifth of unet-enc's kernel samples, three times its share of the
/// instructions (Intel Xeon, `perf annotate`). Padded (the same machine, one thread,
/// fastest of five alternated `suite --only CASE --quick` runs): unet-enc 5.42 -> 4.77 ms,
/// context-d4 1.34 -> 1.24, sr-x3 0.386 -> 0.339, down-s2 (the strided kernel's 25
/// positions) 0.841 -> 0.820; the weight gradient's kernel, padded alike, unet-enc's
/// backward 10.87 -> 10.12 ms (four runs). The two-tap family's nine positions, fewer than
/// the ways of a set, measured level padded, and are not.
pub(crate) fn position_stride(floats: usize) -> usize {
    odd_lines(floats)
}

/// Floats of the transformed input and of the products a [`TileRowJob`] of the dense
/// kernel needs for `channels` input and `out_padded` (padded) output channels, on any set:
/// 16 positions of a block of [`MAX_TILES`] tiles, [`position_stride`] apart.
pub(super) fn scratch_lens(channels: usize, out_padded: usize) -> (usize, usize) {
    (
        16 * position_stride(channels * MAX_TILES),
        16 * position_stride(out_padded * MAX_TILES),
    )
}

/// One row of output tiles (two output rows), all channels; for the strided kernel, two
/// rows of tiles (four output rows).
pub(crate) struct TileRowJob<'a> {
    /// The image laid out with its padding, one plane of `channel_stride` floats per
    /// channel, so that each of the four rows and four columns of the row's input tiles is
    /// a run of consecutive floats, one per tile (see [`TileRowJob::rows`]).
    pub input: &'a [f32],
    pub channels: usize,
    pub channel_stride: usize,
    /// Where, from a channel's start, the first tile reads row `i`, column `j` of its input
    /// tile: `rows[i] + columns[j]`; tile `t` reads `t` floats further on. The tiles are 4x4
    /// (the first four rows and columns used) but for the strided kernel's 5x5, whose second
    /// row of tiles reads rows 4 to 8.
    pub rows: [usize; 9],
    pub columns: [usize; 5],
    /// Tiles in the row.
    pub tiles: usize,
    /// The transformed weights, `[16][in_channels][padded_out_channels(out_channels)]`.
    pub weights: &'a [f32],
    pub out_channels: usize,
    pub bias: &'a [f32],
    /// Scratch: the block's transformed input, `[16][in_channels][MAX_TILES]`, and products,
    /// `[16][out_channels rounded up][MAX_TILES]`, each position [`position_stride`] floats
    /// from the last.
    pub transformed: &'a mut [f32],
    pub products: &'a mut [f32],
    /// The two output rows of each channel, `[channel][row]` (the strided kernel's four); those
    /// past the output's last row are empty.
    pub out: &'a mut [&'a mut [MaybeUninit<f32>]],
}

/// The kernel: written once, compiled for each instruction set.
pub(crate) struct Tiles;

impl Kernel<WinogradFamily> for Tiles {
    #[inline(always)]
    fn run<S: Simd>(simd: S, job: &mut TileRowJob<'_>) {
        let block = 2 * S::LANES;
        const { assert!(2 * S::LANES <= MAX_TILES) };
        let channels = job.channels;
        let padded_out = padded_out_channels(job.out_channels);
        assert_eq!(job.weights.len(), 16 * channels * padded_out);
        assert!(job.transformed.len() >= 16 * position_stride(channels * block));
        assert!(job.products.len() >= 16 * position_stride(padded_out * block));
        assert_eq!(job.out.len(), 2 * job.out_channels);
        assert_eq!(job.bias.len(), job.out_channels);
        // The last block's reads, rounded up to whole blocks, stay inside each channel's plane:
        // what lets `transform_input` load without a test per vector.
        let reach = job.rows[..4].iter().max().unwrap_or(&0)
            + job.columns[..4].iter().max().unwrap_or(&0)
            + job.tiles.next_multiple_of(block);
        assert!(reach <= job.channel_stride);
        assert!(job.input.len() >= channels * job.channel_stride);
        for first in (0..job.tiles).step_by(block) {
            transform_input(simd, job, first);
            multiply(simd, job, channels, padded_out);
            transform_output(simd, job, first, padded_out);
        }
    }
}

/// `B^T d B` for every input channel of the block's tiles, two vectors of tiles at a time:
/// `[16][channel][tile]`.
///
/// The loads and stores go unchecked: `run` asserted that every block's reads stay inside
/// each channel's plane and that `transformed` holds the block. Checked, each of the 32
/// vectors a tile pair moves took two tests and a reload of its offset from the stack
/// (context-d4, Intel Xeon, `perf annotate`).
#[inline(always)]
fn transform_input<S: Simd>(simd: S, job: &mut TileRowJob<'_>, first: usize) {
    let block = 2 * S::LANES;
    let channels = job.channels;
    assert!(first + block <= job.tiles.next_multiple_of(block));
    let stride = position_stride(channels * block);
    let transformed = &mut job.transformed[..16 * stride];
    for channel in 0..channels {
        let plane = &job.input[channel * job.channel_stride..][..job.channel_stride];
        for half in 0..2 {
            let column = first + half * S::LANES;
            // d[i][j]: row i, column j of the tiles' input. (Loops, not `array::from_fn`:
            // a closure is compiled without the set's features, and its intrinsics were
            // calls.)
            let mut d = [[simd.splat(0.0); 4]; 4];
            for (i, d) in d.iter_mut().enumerate() {
                for (j, d) in d.iter_mut().enumerate() {
                    let at = job.rows[i] + job.columns[j] + column;
                    // SAFETY: `at + LANES <= rows[i] + columns[j] + first + block`, at most
                    // the reach `run` asserted to be within the plane (`first` is a
                    // multiple of `block` below `tiles`, asserted above).
                    *d = unsafe { simd.load(plane.as_ptr().add(at)) };
                }
            }
            for (i, v) in transform_tile(simd, &d).iter().enumerate() {
                for (j, &v) in v.iter().enumerate() {
                    let at = (i * 4 + j) * stride + channel * block + half * S::LANES;
                    // SAFETY: `at + LANES <= 15 * stride + channels * block <= 16 * stride`,
                    // the length of `transformed`.
                    let target = unsafe { transformed.get_unchecked_mut(at..at + S::LANES) };
                    simd.store(target, v);
                }
            }
        }
    }
}

/// `B^T d B` of a 4x4 input tile `d` (`d[i][j]` its row `i`, column `j`), `B^T = [[1, 0,
/// -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]`: additions only. Position `(i, j)`
/// of the result is `[i][j]`. Shared with the weight gradient's kernel.
// Indices, as in the matrices the transform applies.
#[allow(clippy::needless_range_loop)]
#[inline(always)]
pub(crate) fn transform_tile<S: Simd>(simd: S, d: &[[S::Vector; 4]; 4]) -> [[S::Vector; 4]; 4] {
    // B^T d: along the rows of the tile...
    let mut t = [[simd.splat(0.0); 4]; 4];
    for (j, t) in t.iter_mut().enumerate() {
        *t = [
            sub(simd, d[0][j], d[2][j]),
            simd.add(d[1][j], d[2][j]),
            sub(simd, d[2][j], d[1][j]),
            sub(simd, d[1][j], d[3][j]),
        ];
    }
    // ... then along its columns.
    let mut v = [[simd.splat(0.0); 4]; 4];
    for i in 0..4 {
        v[i] = [
            sub(simd, t[0][i], t[2][i]),
            simd.add(t[1][i], t[2][i]),
            sub(simd, t[2][i], t[1][i]),
            sub(simd, t[1][i], t[3][i]),
        ];
    }
    v
}

/// For each of the 16 positions, products = weights^T x transformed input:
/// `[16][out_channel][tile]`, four output channels by two vectors of tiles at a time.
#[inline(always)]
fn multiply<S: Simd>(simd: S, job: &mut TileRowJob<'_>, channels: usize, padded_out: usize) {
    let products = Products {
        positions: 16,
        channels,
        padded_out,
        out_block: out_block(padded_out),
        live_out: job.out_channels,
        weights: job.weights,
    };
    if matches!(S::ISA, Isa::Avx512) && padded_out.is_multiple_of(CHANNEL_STEP) {
        products.compute::<S, CHANNEL_STEP, 2>(simd, job.transformed, job.products);
    } else {
        products.compute::<S, SMALL_CHANNEL_STEP, 2>(simd, job.transformed, job.products);
    }
}

/// The products of a block of tiles: for each of `positions` positions, `weights^T x
/// transformed input`, the weights `[position][out_channel / out_block][channel][out_block]`,
/// the transformed input `[position][channel][tile]` and the products
/// `[position][out_channel][tile]`, blocks of `V` vectors of tiles, the positions of both
/// [`position_stride`] floats apart.
pub(super) struct Products<'a> {
    pub positions: usize,
    pub channels: usize,
    pub padded_out: usize,
    /// Output channels whose weights are together for each input channel: a multiple of
    /// the step, so that a step's weights for all the input channels are one contiguous
    /// run (`padded_out`: the weights `[position][channel][out_channel]`).
    pub out_block: usize,
    /// The output channels the caller reads back, at most `padded_out`: the steps past them
    /// are left out, and a last step of at most [`SMALL_CHANNEL_STEP`] of them is taken as
    /// one, not as a whole `STEP` mostly of zero filters.
    pub live_out: usize,
    pub weights: &'a [f32],
}

impl Products<'_> {
    /// `STEP` output channels by `V` vectors of tiles at a time: `STEP * V` accumulators;
    /// where at most [`SMALL_CHANNEL_STEP`] live channels are left for a last step, that
    /// many by `V`. sr-x3's 27 phase channels, on AVX-512's steps of eight, take
    /// three steps of eight and one of four (28 channels' products, not 32).
    #[inline(always)]
    pub fn compute<S: Simd, const STEP: usize, const V: usize>(
        &self,
        simd: S,
        transformed: &[f32],
        products: &mut [f32],
    ) {
        let block = V * S::LANES;
        let (channels, padded_out, out_block) = (self.channels, self.padded_out, self.out_block);
        assert_eq!(out_block % STEP, 0);
        assert_eq!(padded_out % out_block, 0);
        assert!(self.live_out <= padded_out);
        let full = self.live_out / STEP * STEP;
        let rest = self.live_out - full;
        let (input_stride, products_stride) = (
            position_stride(channels * block),
            position_stride(padded_out * block),
        );
        for position in 0..self.positions {
            let input = &transformed[position * input_stride..][..channels * block];
            let weights =
                &self.weights[position * channels * padded_out..][..channels * padded_out];
            let products = &mut products[position * products_stride..][..padded_out * block];
            for k in (0..full).step_by(STEP) {
                self.step::<S, STEP, V>(simd, input, weights, k, products);
            }
            match rest {
                0 => {}
                1..=SMALL_CHANNEL_STEP if STEP > SMALL_CHANNEL_STEP => {
                    self.step::<S, SMALL_CHANNEL_STEP, V>(simd, input, weights, full, products);
                }
                _ => self.step::<S, STEP, V>(simd, input, weights, full, products),
            }
        }
    }

    /// The products of output channels `k..k + STEP` at one position: its transformed
    /// `input` `[channel][tile]`, `weights` `[out_channel / out_block][channel][out_block]`,
    /// into `products` `[out_channel][tile]`.
    #[inline(always)]
    fn step<S: Simd, const STEP: usize, const V: usize>(
        &self,
        simd: S,
        input: &[f32],
        weights: &[f32],
        k: usize,
        products: &mut [f32],
    ) {
        let block = V * S::LANES;
        let out_block = self.out_block;
        // `k` starts a step of the caller's blocking, so a step never straddles two blocks
        // of weights.
        assert!(k % out_block + STEP <= out_block);
        let mut acc = [[simd.splat(0.0); V]; STEP];
        let weights = &weights[k / out_block * self.channels * out_block + k % out_block..];
        // Every channel's block of tiles and step of weights is inside the slices, checked
        // once here: the loop reads them unchecked. (Iterating over chunks of each, the loop
        // tested the weights' end besides its own every pass: 30 instructions for 16
        // multiply-adds, Intel Xeon, `perf annotate` of down-s2.)
        let channels = self.channels;
        assert!(input.len() >= channels * block);
        assert!(channels == 0 || weights.len() >= (channels - 1) * out_block + STEP);
        for c in 0..channels {
            let mut vectors = [simd.splat(0.0); V];
            for (v, vector) in vectors.iter_mut().enumerate() {
                // SAFETY: `c * block + (v + 1) * LANES <= channels * block`, asserted to be
                // inside `input`.
                *vector = unsafe { simd.load(input.as_ptr().add(c * block + v * S::LANES)) };
            }
            for (j, acc) in acc.iter_mut().enumerate() {
                // SAFETY: `c * out_block + j < (channels - 1) * out_block + STEP`, asserted
                // to be inside `weights`.
                let w = simd.splat(unsafe { *weights.get_unchecked(c * out_block + j) });
                for (acc, &x) in acc.iter_mut().zip(&vectors) {
                    *acc = simd.mul_add(w, x, *acc);
                }
            }
        }
        for (j, acc) in acc.iter().enumerate() {
            let at = (k + j) * block;
            for (v, &acc) in acc.iter().enumerate() {
                simd.store(&mut products[at + v * S::LANES..], acc);
            }
        }
    }
}

/// `A^T m A` plus the bias for every output channel of the block's tiles, into the two
/// output rows: each tile's two columns interleaved, a vector of tiles at a time.
#[inline(always)]
fn transform_output<S: Simd>(simd: S, job: &mut TileRowJob<'_>, first: usize, padded_out: usize) {
    let block = 2 * S::LANES;
    let stride = position_stride(padded_out * block);
    for channel in 0..job.out_channels {
        let bias = simd.splat(job.bias[channel]);
        for half in 0..2 {
            let tile = first + half * S::LANES;
            if tile >= job.tiles {
                break;
            }
            let mut m = [[simd.splat(0.0); 4]; 4];
            for (i, m) in m.iter_mut().enumerate() {
                for (j, m) in m.iter_mut().enumerate() {
                    let at = (i * 4 + j) * stride + channel * block + half * S::LANES;
                    let lanes = &job.products[at..at + S::LANES];
                    // SAFETY: `lanes` holds `LANES` floats.
                    *m = unsafe { simd.load(lanes.as_ptr()) };
                }
            }
            // A^T m: two rows...
            let mut s = [[simd.splat(0.0); 4]; 2];
            for j in 0..4 {
                s[0][j] = simd.add(simd.add(m[0][j], m[1][j]), m[2][j]);
                s[1][j] = sub(simd, sub(simd, m[1][j], m[2][j]), m[3][j]);
            }
            for (row, s) in s.iter().enumerate() {
                // ... then two columns.
                let even = simd.add(simd.add(simd.add(s[0], s[1]), s[2]), bias);
                let odd = simd.add(sub(simd, sub(simd, s[1], s[2]), s[3]), bias);
                let out = &mut *job.out[2 * channel + row];
                store_pairs(simd, even, odd, out, 2 * tile);
            }
        }
    }
}

/// Interleaves `even` and `odd` (each tile's two columns) into `out` from column `start`,
/// dropping what falls past the row's end.
#[inline(always)]
pub(super) fn store_pairs<S: Simd>(
    simd: S,
    even: S::Vector,
    odd: S::Vector,
    out: &mut [MaybeUninit<f32>],
    start: usize,
) {
    let (low, high) = simd.interleave(even, odd);
    if start + 2 * S::LANES <= out.len() {
        simd.store_uninit(&mut out[start..], low);
        simd.store_uninit(&mut out[start + S::LANES..], high);
    } else if start < out.len() {
        let mut buffer = [0.0f32; 2 * MAX_TILES];
        simd.store(&mut buffer, low);
        simd.store(&mut buffer[S::LANES..], high);
        for (slot, &value) in out[start..].iter_mut().zip(&buffer) {
            slot.write(value);
        }
    }
}

/// `a - b`.
#[inline(always)]
pub(crate) fn sub<S: Simd>(simd: S, a: S::Vector, b: S::Vector) -> S::Vector {
    simd.mul_add(simd.splat(-1.0), b, a)
}
