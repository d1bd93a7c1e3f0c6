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
//! contiguous vector. A block is one vector of tiles (not two, as the stride-1 kernel's):
//! the outputs of such layers are short (down-s2's 32 columns are 16 tiles), and half-empty
//! blocks would waste half the products; sixteen output channels per step keep sixteen
//! accumulators in flight instead.

use std::mem::MaybeUninit;

use ndarray::{Array4, ArrayView4, ArrayViewMut4};
use rayon::prelude::*;

use super::kernel::{MAX_TILES, Products, TileRowJob, WinogradFamily, store_pairs, sub};
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

/// Output channels per step of the products (the weights' channels are rounded up to it).
/// Sixteen, not eight: each step loads one vector of tiles and one weight per channel, and
/// a core that issues two 512-bit FMAs a cycle but two loads waits on the loads at eight
/// (down-s2, Intel Xeon with AVX-512, one thread: 1.21 ms at eight, 1.11 ms at sixteen,
/// fastest of nine runs of `suite --only down-s2 --quick`).
const STEP: usize = 16;

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
/// `[25][c][k]` with the output channels rounded up to `STEP` (zero filters).
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
                    transformed[((i * 5 + j) * in_channels + c) * padded + k] = value as f32;
                }
            }
        }
    }
    transformed
}

/// The strided kernel: one row of 2x2 output tiles, every output channel, a vector of tiles
/// at a time.
pub(crate) struct StridedTiles;

impl Kernel<WinogradFamily> for StridedTiles {
    #[inline(always)]
    fn run<S: Simd>(simd: S, job: &mut TileRowJob<'_>) {
        let block = S::LANES;
        const { assert!(S::LANES <= MAX_TILES) };
        let channels = job.channels;
        let padded_out = job.out_channels.next_multiple_of(STEP);
        assert_eq!(job.weights.len(), POSITIONS * channels * padded_out);
        assert!(job.transformed.len() >= POSITIONS * channels * block);
        assert!(job.products.len() >= POSITIONS * padded_out * block);
        assert_eq!(job.out.len(), 2 * job.out_channels);
        assert_eq!(job.bias.len(), job.out_channels);
        let products = Products {
            positions: POSITIONS,
            channels,
            padded_out,
            weights: job.weights,
        };
        for first in (0..job.tiles).step_by(block) {
            transform_input(simd, job, first);
            products.compute::<S, STEP, 1>(simd, job.transformed, job.products);
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

/// `T d T^T` for every input channel of the block of tiles from `first`:
/// `[25][channel][tile]`.
// Indices, as in the matrices the transforms apply.
#[allow(clippy::needless_range_loop)]
#[inline(always)]
fn transform_input<S: Simd>(simd: S, job: &mut TileRowJob<'_>, first: usize) {
    let block = S::LANES;
    let channels = job.channels;
    for channel in 0..channels {
        let plane = channel * job.channel_stride;
        // d[i][j]: row i, column j of the tiles' input. (Loops, not `array::from_fn`: a
        // closure is compiled without the set's features, and its intrinsics were calls.)
        let mut d = [[simd.splat(0.0); 5]; 5];
        for (i, d) in d.iter_mut().enumerate() {
            for (j, d) in d.iter_mut().enumerate() {
                let at = plane + job.rows[i] + job.columns[j] + first;
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
                let at = ((i * 5 + j) * channels + channel) * block;
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
/// into the two output rows: each tile's two columns interleaved.
#[allow(clippy::needless_range_loop)]
#[inline(always)]
fn transform_output<S: Simd>(simd: S, job: &mut TileRowJob<'_>, first: usize, padded_out: usize) {
    let block = S::LANES;
    for channel in 0..job.out_channels {
        let bias = simd.splat(job.bias[channel]);
        let mut m = [[simd.splat(0.0); 5]; 5];
        for (i, m) in m.iter_mut().enumerate() {
            for (j, m) in m.iter_mut().enumerate() {
                let at = ((i * 5 + j) * padded_out + channel) * block;
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
            let out = &mut *job.out[2 * channel + row];
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
    // Tile row `r` reads padded rows `4r..4r + 5`; a block of tiles from `t` reads phase
    // columns up to `t + LANES` (and one more for the fifth column). Rounded up to the
    // kernel's vectors, not to `MAX_TILES`: down-s2's layout is then 1.2 MB, not 2.2, and
    // stays in a 2 MB L2.
    let lanes = kernel.isa().lanes();
    let layout = PlaneLayout {
        channels,
        rows: (4 * tile_rows + 1).max(pad_top + in_h),
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
            let out = SharedOutput(
                out_image
                    .as_slice_mut()
                    .expect("output is in standard layout")
                    .as_mut_ptr(),
            );
            let prepared = &*prepared;
            let tile_row = |tile_row: usize| {
                let transformed_len = POSITIONS * channels * lanes;
                let products_len = POSITIONS * out_padded * lanes;
                with_scratch(transformed_len + products_len, |scratch| {
                    let (transformed, products) = scratch.split_at_mut(transformed_len);
                    let rows = (out_h - 2 * tile_row).min(2);
                    let mut slices: Vec<&mut [MaybeUninit<f32>]> = (0..2 * out_channels)
                        .map(|index| {
                            let (channel, row) = (index / 2, index % 2);
                            let len = if row < rows { out_w } else { 0 };
                            let start =
                                channel * plane + (2 * tile_row + row.min(rows - 1)) * out_w;
                            // SAFETY: `out` points at this image's output, `plane *
                            // out_channels` floats in standard layout; row `2 * tile_row + row`
                            // (below `out_h`, or an empty slice) of `channel` is inside it.
                            // Each task writes only its own tile row's two output rows.
                            unsafe { out.slice(start, len) }
                        })
                        .collect();
                    // Padded row `4 * tile_row + i`; padded column `4 * tile + j`, of column
                    // phase `j % 4` at `tile + j / 4`.
                    let row_stride = layout.row_stride();
                    let phase_len = layout.phase_len;
                    let mut job = TileRowJob {
                        input: prepared,
                        channels,
                        channel_stride: layout.channel_stride(),
                        rows: std::array::from_fn(|i| (4 * tile_row + i) * row_stride),
                        columns: std::array::from_fn(|j| j % 4 * phase_len + j / 4),
                        tiles,
                        weights,
                        out_channels,
                        wide_steps: false,
                        bias,
                        transformed,
                        products,
                        out: &mut slices,
                    };
                    kernel.run(&mut job);
                });
            };
            if threads == 1 {
                (0..tile_rows).for_each(tile_row);
            } else {
                (0..tile_rows).into_par_iter().for_each(tile_row);
            }
        }
    });
}
