//! Winograd for 3x3 convolutions of stride 2 (the downsampling layers of U-Net and ResNet:
//! down-s2), 2x2 output tiles from 5x5 input tiles with 25 multiply-adds per tile and
//! channel pair where the direct convolution takes 36.
//!
//! Along one axis, outputs `2q` and `2q + 1` read padded inputs `d0 d1 d2` and `d2 d3 d4`.
//! The middle tap reads `d1` and `d3` alone, one product each; the outer two taps read the
//! even inputs `d0 d2 d4` as a 2-tap filter of stride 1, which Winograd's F(2, 2) computes
//! with three products: `(d0 - d2) w0`, `d2 (w0 + w2)` and `(d4 - d2) w2`. So the input
//! transform is `T = [d0 - d2, d2, d4 - d2, d1, d3]`, the filter's `G' = [w0, w0 + w2, w2,
//! w1, w1]`, and output `2q` is the sum of products 0, 1 and 3, output `2q + 1` of 1, 2 and
//! 4. Both axes at once: `T d T^T`, 25 products per channel pair, then `A' m A'^T` with
//! `A' = [[1, 1, 0, 1, 0], [0, 1, 1, 0, 1]]`. Every transform adds and subtracts only, and
//! the filter's in `f64` at construction.
//!
//! Tile row `r` reads padded rows `4r..4r + 5`; the image is laid out with its columns
//! dealt into four phases, so that padded column `4t + j` of tile `t` is phase `j % 4` at
//! `t + j / 4`, and a vector of consecutive tiles reads each of its 25 inputs as one
//! contiguous vector. A block is one vector of tiles in each of two tile rows (not two
//! vectors of one row, as the stride-1 kernel's): the outputs of such layers are short
//! (down-s2's 32 columns are 16 tiles), and half-empty blocks would waste half the products.

use std::mem::MaybeUninit;

use ndarray::{Array4, ArrayView4, ArrayViewMut4};
use rayon::prelude::*;

use super::kernel::{
    MAX_TILES, Products, TileRowJob, WinogradFamily, position_stride, store_pairs, sub,
};
use super::{K, MIN_CHANNELS};
use crate::isa::{Compiled, Detected, Isa, Kernel, Simd};
use crate::kernels::forward_threads;
use crate::kernels::row::prepare::prepare;
use crate::memory::layout::PlaneLayout;
use crate::memory::scratch::with_scratch;
use crate::memory::shared_output::SharedOutput;
use crate::shape::geometry::GeometrySpec;

/// Products per tile and channel pair.
const POSITIONS: usize = 25;

/// Rows of tiles per call: two, so that each broadcast weight multiplies two vectors of
/// tiles. With one, each multiply-add loaded a weight and the sixteen of a step loaded a
/// vector of tiles besides: seventeen loads to sixteen multiply-adds, and a core that issues
/// two 512-bit FMAs a cycle but two loads waited on the loads. Two rows of eight channels
/// load ten (down-s2, Intel Xeon with AVX-512: one thread 1.00 -> 0.85 ms, two threads 0.50
/// -> 0.45, fastest of six alternated runs of `suite --only down-s2 --quick`).
const TILE_ROWS: usize = 2;

/// Output channels per step of the products (the weights' channels are rounded up to it):
/// `STEP * TILE_ROWS` accumulators.
const STEP: usize = 8;

/// Whether a convolution of `spec` with `weight` (`[out, in / groups, kh, kw]`) is one this
/// kernel runs: 3x3, stride 2 on both axes, no dilation, one group, at least `MIN_CHANNELS`
/// channels in and out. (Any zero padding: the layout holds it.)
pub(super) fn fits(spec: &GeometrySpec, weight: &Array4<f32>, groups: usize) -> bool {
    let (out_channels, in_channels, kh, kw) = weight.dim();
    (kh, kw) == (K, K)
        && spec.stride == (2, 2)
        && spec.dilation == (1, 1)
        && groups == 1
        && out_channels >= MIN_CHANNELS
        && in_channels >= MIN_CHANNELS
}

/// `G' g G'^T` of each 3x3 filter `g = weight[k][c]`, computed in `f64`, laid out
/// `[25][k / STEP][c][k % STEP]` with the output channels rounded up to `STEP` (zero
/// filters): a step's weights for every input channel are one run, which the products
/// read in order. Laid out `[25][c][k]`, each step read one line per input channel, 512
/// bytes apart, and the products waited on them: a third of the kernel's samples on the two
/// multiply-adds after a line's first use (one tile row a call), and down-s2 in 1.00 ms
/// against 0.87 (two tile rows a call; Intel Xeon, one thread, fastest of eight alternated
/// runs of `suite --only down-s2 --quick`).
// Indices, as in the matrices the transform applies.
#[allow(clippy::needless_range_loop)]
pub(super) fn transform_weights(weight: &Array4<f32>) -> Vec<f32> {
    let (out_channels, in_channels, _, _) = weight.dim();
    let padded = out_channels.next_multiple_of(STEP);
    let mut transformed = vec![0.0f32; POSITIONS * in_channels * padded];
    let g_times = |v: [f64; 3]| [v[0], v[0] + v[2], v[2], v[1], v[1]];
    for k in 0..out_channels {
        for c in 0..in_channels {
            let g = |i: usize, j: usize| f64::from(weight[[k, c, i, j]]);
            // G' g: each column of g through G'.
            let columns: [[f64; 5]; 3] =
                std::array::from_fn(|j| g_times([g(0, j), g(1, j), g(2, j)]));
            for i in 0..5 {
                // (G' g) G'^T: each row of G' g through G'.
                let row = g_times([columns[0][i], columns[1][i], columns[2][i]]);
                for (j, &value) in row.iter().enumerate() {
                    let position = (i * 5 + j) * in_channels * padded;
                    let at = position + (k / STEP * in_channels + c) * STEP + k % STEP;
                    transformed[at] = value as f32;
                }
            }
        }
    }
    transformed
}

/// The strided kernel: two rows of 2x2 output tiles, every output channel, a vector of tiles
/// of each row at a time.
pub(crate) struct StridedTiles;

impl Kernel<WinogradFamily> for StridedTiles {
    #[inline(always)]
    fn run<S: Simd>(simd: S, job: &mut TileRowJob<'_>) {
        let block = TILE_ROWS * S::LANES;
        const { assert!(S::LANES <= MAX_TILES) };
        let channels = job.channels;
        let padded_out = job.out_channels.next_multiple_of(STEP);
        assert_eq!(job.weights.len(), POSITIONS * channels * padded_out);
        assert!(job.transformed.len() >= POSITIONS * position_stride(channels * block));
        assert!(job.products.len() >= POSITIONS * position_stride(padded_out * block));
        assert_eq!(job.out.len(), 2 * TILE_ROWS * job.out_channels);
        assert_eq!(job.bias.len(), job.out_channels);
        let products = Products {
            positions: POSITIONS,
            channels,
            padded_out,
            out_block: STEP,
            live_out: job.out_channels,
            weights: job.weights,
        };
        for first in (0..job.tiles).step_by(S::LANES) {
            transform_input(simd, job, first);
            products.compute::<S, STEP, TILE_ROWS>(simd, job.transformed, job.products);
            transform_output(simd, job, first, padded_out);
        }
    }
}

/// The kernel compiled for `isa`, on the sets of 32 registers only (AVX-512, NEON), where
/// sixteen accumulators sit beside the broadcast weights and the 25 values of a tile's
/// transform: on AVX2 it ran down-s2 no faster than the direct kernel (Zen 4, one thread,
/// 1.51 ms both, four channels by two vectors; eight by one 1.17x slower), and the direct
/// kernel's sums are the exact ones.
pub(super) fn compiled(isa: Isa) -> Option<Compiled<WinogradFamily>> {
    match Detected::or_portable(isa) {
        #[cfg(target_arch = "x86_64")]
        Detected::Avx512(simd) => Some(Compiled::new::<StridedTiles, _>(simd)),
        #[cfg(target_arch = "aarch64")]
        Detected::Neon(simd) => Some(Compiled::new::<StridedTiles, _>(simd)),
        _ => None,
    }
}

/// `T` along one axis of five values: `[d0 - d2, d2, d4 - d2, d1, d3]`.
#[inline(always)]
fn transform<S: Simd>(simd: S, d: [S::Vector; 5]) -> [S::Vector; 5] {
    [
        sub(simd, d[0], d[2]),
        d[2],
        sub(simd, d[4], d[2]),
        d[1],
        d[3],
    ]
}

/// `T d T^T` for every input channel of the block of tiles from `first` in both tile rows:
/// `[25][channel][tile row][tile]`.
// Indices, as in the matrices the transforms apply.
#[allow(clippy::needless_range_loop)]
#[inline(always)]
fn transform_input<S: Simd>(simd: S, job: &mut TileRowJob<'_>, first: usize) {
    let block = TILE_ROWS * S::LANES;
    let channels = job.channels;
    let stride = position_stride(channels * block);
    for index in 0..channels * TILE_ROWS {
        let (channel, tile_row) = (index / TILE_ROWS, index % TILE_ROWS);
        let plane = channel * job.channel_stride;
        // d[i][j]: row i, column j of the tiles' input. (Loops, not `array::from_fn`: a
        // closure is compiled without the set's features, and its intrinsics were calls.)
        let mut d = [[simd.splat(0.0); 5]; 5];
        for (i, d) in d.iter_mut().enumerate() {
            for (j, d) in d.iter_mut().enumerate() {
                let at = plane + job.rows[4 * tile_row + i] + job.columns[j] + first;
                let lanes = &job.input[at..at + S::LANES];
                // SAFETY: `lanes` holds `LANES` floats.
                *d = unsafe { simd.load(lanes.as_ptr()) };
            }
        }
        // Along each column of the tile, then along each row of the result.
        let mut t = [[simd.splat(0.0); 5]; 5];
        for j in 0..5 {
            let column = transform(simd, [d[0][j], d[1][j], d[2][j], d[3][j], d[4][j]]);
            for i in 0..5 {
                t[i][j] = column[i];
            }
        }
        for i in 0..5 {
            let v = transform(simd, t[i]);
            for (j, &v) in v.iter().enumerate() {
                let at = (i * 5 + j) * stride + channel * block + tile_row * S::LANES;
                simd.store(&mut job.transformed[at..], v);
            }
        }
    }
}

/// `A'` along one axis of five values: outputs `m0 + m1 + m3` and `m1 + m2 + m4`.
#[inline(always)]
fn inverse<S: Simd>(simd: S, m: [S::Vector; 5]) -> [S::Vector; 2] {
    [
        simd.add(simd.add(m[0], m[1]), m[3]),
        simd.add(simd.add(m[1], m[2]), m[4]),
    ]
}

/// `A' m A'^T` plus the bias for every output channel of the block of tiles from `first`,
/// into the output rows of both tile rows: each tile's two columns interleaved.
#[allow(clippy::needless_range_loop)]
#[inline(always)]
fn transform_output<S: Simd>(simd: S, job: &mut TileRowJob<'_>, first: usize, padded_out: usize) {
    let block = TILE_ROWS * S::LANES;
    let stride = position_stride(padded_out * block);
    for index in 0..job.out_channels * TILE_ROWS {
        let (channel, tile_row) = (index / TILE_ROWS, index % TILE_ROWS);
        let bias = simd.splat(job.bias[channel]);
        let mut m = [[simd.splat(0.0); 5]; 5];
        for (i, m) in m.iter_mut().enumerate() {
            for (j, m) in m.iter_mut().enumerate() {
                let at = (i * 5 + j) * stride + channel * block + tile_row * S::LANES;
                let lanes = &job.products[at..at + S::LANES];
                // SAFETY: `lanes` holds `LANES` floats.
                *m = unsafe { simd.load(lanes.as_ptr()) };
            }
        }
        // Along each column (two output rows), then along each of the two rows.
        let mut s = [[simd.splat(0.0); 5]; 2];
        for j in 0..5 {
            let rows = inverse(simd, [m[0][j], m[1][j], m[2][j], m[3][j], m[4][j]]);
            s[0][j] = rows[0];
            s[1][j] = rows[1];
        }
        for (row, s) in s.iter().enumerate() {
            let [even, odd] = inverse(simd, *s);
            let (even, odd) = (simd.add(even, bias), simd.add(odd, bias));
            let out = &mut *job.out[2 * (TILE_ROWS * channel + tile_row) + row];
            store_pairs(simd, even, odd, out, 2 * first);
        }
    }
}

/// The convolution of a checked `input` into `output` (standard layout, of the checked
/// shape), adding `bias`: `weights` from [`transform_weights`], `pad` the padding above and
/// left of the input.
pub(super) fn run(
    kernel: Compiled<WinogradFamily>,
    (weights, out_channels): (&[f32], usize),
    pad: (usize, usize),
    bias: &[f32],
    input: &ArrayView4<f32>,
    output: &mut ArrayViewMut4<MaybeUninit<f32>>,
) {
    let (_, channels, in_h, in_w) = input.dim();
    let (out_h, out_w) = (output.dim().2, output.dim().3);
    let (pad_top, pad_left) = pad;
    let (tile_rows, tiles) = (out_h.div_ceil(2), out_w.div_ceil(2));
    // Tile row `r` reads padded rows `4r..4r + 5` (rows past the last tile row's are zeros:
    // the calls take whole pairs of tile rows); a block of tiles from `t` reads phase
    // columns up to `t + LANES` (and one more for the fifth column). Rounded up to the
    // kernel's vectors, not to `MAX_TILES`: down-s2's layout is then 1.2 MB, not 2.2, and
    // stays in a 2 MB L2.
    let lanes = kernel.isa().lanes();
    let layout = PlaneLayout {
        channels,
        rows: (4 * tile_rows.next_multiple_of(TILE_ROWS) + 1).max(pad_top + in_h),
        col_phases: 4,
        phase_len: (tiles.next_multiple_of(lanes) + 1).max((pad_left + in_w).div_ceil(4)),
    };
    let out_padded = out_channels.next_multiple_of(STEP);
    // Counted as the direct convolution's, as the other families count.
    let threads = forward_threads(out_channels * channels * out_h * out_w * 9);
    let plane = out_h * out_w;
    with_scratch(layout.image_stride(), |prepared| {
        for (image, mut out_image) in input.outer_iter().zip(output.outer_iter_mut()) {
            prepare(&image, pad_left, layout, pad_top, prepared, threads);
            let out = SharedOutput::of(&mut out_image);
            let prepared = &*prepared;
            // Each call computes `TILE_ROWS` tile rows from `first_row`: output rows
            // `2 * first_row..` (those below the output's last are empty slices).
            let call_rows = 2 * TILE_ROWS;
            let tile_rows_from = |first_row: usize| {
                let transformed_len = POSITIONS * position_stride(channels * TILE_ROWS * lanes);
                let products_len = POSITIONS * position_stride(out_padded * TILE_ROWS * lanes);
                with_scratch(transformed_len + products_len, |scratch| {
                    let (transformed, products) = scratch.split_at_mut(transformed_len);
                    let rows = (out_h - 2 * first_row).min(call_rows);
                    let mut slices: Vec<&mut [MaybeUninit<f32>]> = (0..call_rows * out_channels)
                        .map(|index| {
                            let (channel, row) = (index / call_rows, index % call_rows);
                            let len = if row < rows { out_w } else { 0 };
                            let start =
                                channel * plane + (2 * first_row + row.min(rows - 1)) * out_w;
                            // SAFETY: `out` points at this image's output, `plane *
                            // out_channels` floats in standard layout; row `2 * first_row +
                            // row` (below `out_h`, or an empty slice) of `channel` is inside
                            // it. Each task writes only its own tile rows' output rows.
                            unsafe { out.slice(start, len) }
                        })
                        .collect();
                    // Padded row `4 * first_row + i`; padded column `4 * tile + j`, of column
                    // phase `j % 4` at `tile + j / 4`.
                    let row_stride = layout.row_stride();
                    let phase_len = layout.phase_len;
                    let mut job = TileRowJob {
                        input: prepared,
                        channels,
                        channel_stride: layout.channel_stride(),
                        rows: std::array::from_fn(|i| (4 * first_row + i) * row_stride),
                        columns: std::array::from_fn(|j| j % 4 * phase_len + j / 4),
                        tiles,
                        weights,
                        out_channels,
                        bias,
                        transformed,
                        products,
                        out: &mut slices,
                    };
                    kernel.run(&mut job);
                });
            };
            let call = |call: usize| tile_rows_from(call * TILE_ROWS);
            let calls = tile_rows.div_ceil(TILE_ROWS);
            if threads == 1 {
                (0..calls).for_each(call);
            } else {
                (0..calls).into_par_iter().for_each(call);
            }
        }
    });
}
