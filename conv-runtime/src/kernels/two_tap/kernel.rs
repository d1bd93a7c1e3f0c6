//! The tile kernel: one phase's block of 2x2 output tiles, every output channel: the 3x3
//! input tiles transformed, nine products with the phase's transformed weights, the output
//! tiles transformed back. See the [family documentation](super).

use std::ops::Range;

use crate::isa::{Family, Isa, Kernel, Simd};
use crate::kernels::winograd::sub;

/// The two-tap kernels' family: every kernel computes one [`TileBlockJob`].
pub(crate) struct TileBlockFamily;

impl Family for TileBlockFamily {
    type Job<'a> = TileBlockJob<'a>;
}

/// Positions of a transformed tile: 3x3.
pub(super) const POSITIONS: usize = 9;

/// Tiles per step of the products: each broadcast from the transformed input, times a few
/// vectors of output channels.
const TILE_STEP: usize = 4;

/// Tiles per block, at most: a multiple of `TILE_STEP`, so that the products run whole
/// steps (a block's last step may include tiles past its end, whose results are not read).
/// 64 rather than 32: a pass's weights, loaded into L1 once, serve 16 steps instead of 8.
/// dcgan-up forward 1.47 -> 1.42 ms, backward 3.59 -> 3.47 at one thread (Intel Xeon,
/// fastest of eight alternated `suite --only dcgan-up --backward --quick` runs); its
/// block's transformed input, 590 KB, still fits the 1 MB L2 of a Zen core.
pub(super) const BLOCK_TILES: usize = 64;

/// Output channels are padded to this, the widest vector: the products and the output
/// transform run whole vectors of channels.
pub(super) const CHANNEL_ALIGN: usize = 16;

/// One block of one phase's tiles, of one image.
pub(crate) struct TileBlockJob<'a> {
    /// The image, channels last: `[row][column][channel]`, `pixel` floats per pixel, of
    /// which the first `channels` are summed over.
    pub input: &'a [f32],
    pub channels: usize,
    pub pixel: usize,
    /// Pixels per row of `input`.
    pub columns: usize,
    /// Each tile's input tile, 3x3 pixels from pixel index `tiles[t]` (row times `columns`
    /// plus column): at most `BLOCK_TILES`.
    pub tiles: &'a [usize],
    /// The phase's transformed weights, `[position][channel][out_channel]`, output channels
    /// padded to `CHANNEL_ALIGN` with zeros.
    pub weights: &'a [f32],
    /// The bias, padded as the weights' output channels.
    pub bias: &'a [f32],
    /// Scratch: the transformed input, `[position][BLOCK_TILES][channel]`, and the
    /// products, `[position][BLOCK_TILES][out_channel]`.
    pub transformed: &'a mut [f32],
    pub products: &'a mut [f32],
    /// The result: each tile's four outputs `(a, b)` (row `a`, column `b` of its 2x2 tile),
    /// `[a][tile][b][out_channel]` with `BLOCK_TILES` tiles to each `a`, bias added,
    /// `out_stride` floats from one output to the next: so the outputs of a row of tiles
    /// lie in the order of their columns, a run for each of the two rows.
    pub out: &'a mut [f32],
    /// At least the padded output channels; more keeps a power-of-two channel count from
    /// putting every output's channel `o` in one cache set (the transposition reads them
    /// so).
    pub out_stride: usize,
}

/// The kernel: written once, compiled for each instruction set.
pub(crate) struct TileBlock;

impl Kernel<TileBlockFamily> for TileBlock {
    #[inline(always)]
    fn run<S: Simd>(simd: S, job: &mut TileBlockJob<'_>) {
        let (channels, tiles) = (job.channels, job.tiles.len());
        let out_padded = job.bias.len();
        assert!(tiles <= BLOCK_TILES);
        assert_eq!(channels % S::LANES, 0);
        assert_eq!(out_padded % CHANNEL_ALIGN, 0);
        assert_eq!(job.weights.len(), POSITIONS * channels * out_padded);
        assert!(job.transformed.len() >= POSITIONS * BLOCK_TILES * channels);
        assert!(job.products.len() >= POSITIONS * BLOCK_TILES * out_padded);
        assert!(job.out_stride >= out_padded);
        assert!(job.out.len() >= 2 * (BLOCK_TILES + tiles) * job.out_stride);
        transform_input(simd, job);
        for position in 0..POSITIONS {
            let input =
                &job.transformed[position * BLOCK_TILES * channels..][..BLOCK_TILES * channels];
            let weights = &job.weights[position * channels * out_padded..][..channels * out_padded];
            let products = &mut job.products[position * BLOCK_TILES * out_padded..]
                [..BLOCK_TILES * out_padded];
            multiply(
                simd,
                input,
                weights,
                products,
                (tiles, channels, out_padded),
            );
        }
        transform_output(simd, job);
    }
}

/// `B^T d B` of every tile's 3x3 input, a vector of channels at a time, where `B^T = [[1,
/// -1, 0], [0, 1, 0], [0, -1, 1]]`: `[position][tile][channel]`.
#[inline(always)]
fn transform_input<S: Simd>(simd: S, job: &mut TileBlockJob<'_>) {
    let (channels, pixel) = (job.channels, job.pixel);
    let row = job.columns * pixel;
    assert!(channels <= pixel);
    for (t, &first) in job.tiles.iter().enumerate() {
        let at = first * pixel;
        assert!(at + 2 * row + 3 * pixel <= job.input.len());
        for c in (0..channels).step_by(S::LANES) {
            // d[i][j]: row i, column j of the tile, channels c.. (Loops, not
            // `array::from_fn`: a closure is compiled without the set's features.)
            let mut d = [[simd.splat(0.0); 3]; 3];
            for (i, d) in d.iter_mut().enumerate() {
                for (j, d) in d.iter_mut().enumerate() {
                    let lanes = &job.input[at + i * row + j * pixel + c..][..S::LANES];
                    // SAFETY: `lanes` holds `LANES` floats.
                    *d = unsafe { simd.load(lanes.as_ptr()) };
                }
            }
            // B^T d down the columns, then along the rows.
            let mut r = [[simd.splat(0.0); 3]; 3];
            for j in 0..3 {
                r[0][j] = sub(simd, d[0][j], d[1][j]);
                r[1][j] = d[1][j];
                r[2][j] = sub(simd, d[2][j], d[1][j]);
            }
            for (i, r) in r.iter().enumerate() {
                let v = [sub(simd, r[0], r[1]), r[1], sub(simd, r[2], r[1])];
                for (j, &v) in v.iter().enumerate() {
                    let at = ((i * 3 + j) * BLOCK_TILES + t) * channels + c;
                    simd.store(&mut job.transformed[at..], v);
                }
            }
        }
    }
}

/// Whether the set has 32 vector registers, not 16: room for `TILE_STEP` tiles by four
/// vectors of output channels (16 sums), where 16 registers hold two vectors (8 sums).
const fn has_32_registers<S: Simd>() -> bool {
    matches!(S::ISA, Isa::Avx512 | Isa::Neon)
}

/// Input channels per pass of the products: a pass's weights for a run of output channels
/// (32 by 64 floats, 8 KB) stay in L1 for every step of the block's tiles. With the whole
/// sum in one pass, each step read its run's weights for every channel again (dcgan-up:
/// 64 KB a step, from L2), four vector loads from L2 per 16 multiply-adds. dcgan-up's
/// forward 1.89 -> 1.57 ms at one thread, its backward (whose input gradient is a 512 ->
/// 256 channel convolution of the family) 4.32 -> 4.03 ms; passes of 64 channels ran the
/// forward as fast and the backward in 4.36, of 128 the forward in 1.96 (Intel Xeon,
/// fastest of six and eight alternated runs of `suite --only dcgan-up --quick --fastest`).
const CHANNEL_PASS: usize = 32;

/// One position's products, `input` (`[tile][channel]`, `BLOCK_TILES` rows) times
/// `weights` (`[channel][out_channel]`) into `products` (`[tile][out_channel]`): output
/// channels in runs of a few vectors, the channels in passes of [`CHANNEL_PASS`], tiles
/// `TILE_STEP` at a time within each.
#[inline(always)]
fn multiply<S: Simd>(
    simd: S,
    input: &[f32],
    weights: &[f32],
    products: &mut [f32],
    (tiles, channels, out_padded): (usize, usize, usize),
) {
    let run = if has_32_registers::<S>() { 4 } else { 2 } * S::LANES;
    let mut first = 0;
    while first < out_padded {
        let width = run.min(out_padded - first);
        for pass in (0..channels).step_by(CHANNEL_PASS) {
            let pass = pass..channels.min(pass + CHANNEL_PASS);
            for t in (0..tiles).step_by(TILE_STEP) {
                let at = (t, first, pass.clone());
                let sizes = (channels, out_padded);
                match width / S::LANES {
                    1 => step::<S, 1>(simd, input, weights, products, at, sizes),
                    2 => step::<S, 2>(simd, input, weights, products, at, sizes),
                    3 => step::<S, 3>(simd, input, weights, products, at, sizes),
                    _ => step::<S, 4>(simd, input, weights, products, at, sizes),
                }
            }
        }
        first += width;
    }
}

/// Tiles `t..t + TILE_STEP` by output channels `first..first + V * LANES`, the sums over
/// channels `pass` added to those of the passes before (zeros for the first): each input
/// value broadcast, each weight vector loaded once per channel for all the step's tiles.
#[inline(always)]
fn step<S: Simd, const V: usize>(
    simd: S,
    input: &[f32],
    weights: &[f32],
    products: &mut [f32],
    (t, first, pass): (usize, usize, Range<usize>),
    (channels, out_padded): (usize, usize),
) {
    let rows: [&[f32]; TILE_STEP] =
        std::array::from_fn(|k| &input[(t + k) * channels..][..channels]);
    // The pass's weights and the rows' channels checked once here, not on every channel:
    // the bounds tests and the slices' pointers, spilled to the stack, had made the loop
    // 37 instructions for 16 multiply-adds (28 now); dcgan-up's forward 1.59 -> 1.47 ms at
    // one thread (the same eight runs).
    assert!(pass.end <= channels && first + V * S::LANES <= out_padded);
    let pass_weights = &weights[pass.start * out_padded..pass.end * out_padded];
    let mut acc = [[simd.splat(0.0); V]; TILE_STEP];
    if pass.start > 0 {
        for (k, acc) in acc.iter_mut().enumerate() {
            let sums = &products[(t + k) * out_padded + first..][..V * S::LANES];
            for (v, acc) in acc.iter_mut().enumerate() {
                // SAFETY: `sums` holds `V * LANES` floats.
                *acc = unsafe { simd.load(sums.as_ptr().add(v * S::LANES)) };
            }
        }
    }
    for (i, c) in pass.enumerate() {
        let mut w = [simd.splat(0.0); V];
        for (v, w) in w.iter_mut().enumerate() {
            // SAFETY: `pass_weights` holds `out_padded` floats for each channel of the pass,
            // and `first + V * LANES <= out_padded` (asserted above).
            *w = unsafe {
                simd.load(
                    pass_weights
                        .as_ptr()
                        .add(i * out_padded + first + v * S::LANES),
                )
            };
        }
        for (acc, row) in acc.iter_mut().zip(&rows) {
            // SAFETY: `c < pass.end <= channels`, the length of `row` (asserted above).
            let x = simd.splat(unsafe { *row.get_unchecked(c) });
            for (acc, &w) in acc.iter_mut().zip(&w) {
                *acc = simd.mul_add(x, w, *acc);
            }
        }
    }
    for (k, acc) in acc.iter().enumerate() {
        let at = (t + k) * out_padded + first;
        for (v, &acc) in acc.iter().enumerate() {
            simd.store(&mut products[at + v * S::LANES..], acc);
        }
    }
}

/// `A^T m A` plus the bias for every tile and output channel, where `A^T = [[1, 1, 0], [0,
/// 1, 1]]`: `[a][tile][b][out_channel]`.
#[inline(always)]
fn transform_output<S: Simd>(simd: S, job: &mut TileBlockJob<'_>) {
    let out_padded = job.bias.len();
    for t in 0..job.tiles.len() {
        for c in (0..out_padded).step_by(S::LANES) {
            let mut m = [[simd.splat(0.0); 3]; 3];
            for (i, m) in m.iter_mut().enumerate() {
                for (j, m) in m.iter_mut().enumerate() {
                    let at = ((i * 3 + j) * BLOCK_TILES + t) * out_padded + c;
                    let lanes = &job.products[at..][..S::LANES];
                    // SAFETY: `lanes` holds `LANES` floats.
                    *m = unsafe { simd.load(lanes.as_ptr()) };
                }
            }
            let bias = &job.bias[c..][..S::LANES];
            // SAFETY: `bias` holds `LANES` floats.
            let bias = unsafe { simd.load(bias.as_ptr()) };
            for a in 0..2 {
                let s: [S::Vector; 3] = [
                    simd.add(m[a][0], m[a + 1][0]),
                    simd.add(m[a][1], m[a + 1][1]),
                    simd.add(m[a][2], m[a + 1][2]),
                ];
                for b in 0..2 {
                    let value = simd.add(simd.add(s[b], s[b + 1]), bias);
                    let at = ((a * BLOCK_TILES + t) * 2 + b) * job.out_stride + c;
                    simd.store(&mut job.out[at..], value);
                }
            }
        }
    }
}
