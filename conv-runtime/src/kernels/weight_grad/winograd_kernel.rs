//! The Winograd weight-gradient kernel: one block of output channels' transformed sums over
//! every image, written once for every instruction set. See the [driver](super::winograd)
//! for the algebra; this file holds the three steps of a chunk of tiles: the input tiles
//! transformed (`B^T d B`), the grad tiles transformed (`A dY A^T`), and for each of the 16
//! positions a small matrix product that adds them into the sums.
//!
//! Both operands arrive channels-last, so that every transform works on vectors of channels
//! (the same additions as the forward kernel's, which works on vectors of tiles) and stores
//! each position's values of a tile as one contiguous run of channels: the matrix products
//! then load vectors of input channels and broadcast grad channels, as the channel kernel
//! (`channels.rs`) does with pixels, with no transposition between the steps.

use crate::isa::{Family, Isa, Kernel, Simd};
use crate::kernels::winograd::sub;

/// Tiles per chunk: each position's products sweep this many tiles with their accumulators
/// in registers. A chunk's transformed operands (`16 * CHUNK` runs of channels each) stay in
/// L2, and one position's (16 KB of each for 64 channels) in L1.
pub(super) const CHUNK: usize = 64;

/// A block of output channels: everything one call needs.
pub(crate) struct GradTilesJob<'a> {
    /// The input, channels-last with its padding: `[image][row][col][in_stride]`, rows
    /// and columns enough for every tile (`2 * tile_rows + 2` by `2 * tiles_per_row + 2`),
    /// zeros outside the data and in the channels past the real ones.
    pub input: &'a [f32],
    /// Floats per input pixel: the input channels rounded up to whole vectors.
    pub in_stride: usize,
    /// The grad operand, channels-last: `[image][row][col][out_stride]`, `2 * tile_rows` by
    /// `2 * tiles_per_row`, zeros outside the grid and in the channels past the real ones.
    pub grad: &'a [f32],
    pub out_stride: usize,
    pub images: usize,
    pub tile_rows: usize,
    pub tiles_per_row: usize,
    /// The block: output channels `first_out..first_out + outs`, both whole vectors.
    pub first_out: usize,
    pub outs: usize,
    /// Scratch for a chunk's transformed input, `[16][CHUNK][in_stride]`, and transformed
    /// grad, `[16][CHUNK][outs]`.
    pub transformed_input: &'a mut [f32],
    pub transformed_grad: &'a mut [f32],
    /// The block's sums, `[16][outs][in_stride]`: zeros on entry, on return each position's
    /// sum over every tile of `(A dY A^T) * (B^T d B)`.
    pub sums: &'a mut [f32],
}

/// The kernel's family: every kernel computes one [`GradTilesJob`].
pub(crate) struct GradTilesFamily;

impl Family for GradTilesFamily {
    type Job<'a> = GradTilesJob<'a>;
}

/// The kernel: written once, compiled for each instruction set.
pub(crate) struct GradTiles;

impl Kernel<GradTilesFamily> for GradTiles {
    #[inline(always)]
    fn run<S: Simd>(simd: S, job: &mut GradTilesJob<'_>) {
        let lanes = S::LANES;
        let (in_stride, outs) = (job.in_stride, job.outs);
        assert!(in_stride.is_multiple_of(lanes) && outs.is_multiple_of(lanes) && in_stride > 0);
        assert!(job.first_out + outs <= job.out_stride && job.out_stride.is_multiple_of(lanes));
        let (input_rows, input_cols) = (2 * job.tile_rows + 2, 2 * job.tiles_per_row + 2);
        let (grad_rows, grad_cols) = (2 * job.tile_rows, 2 * job.tiles_per_row);
        assert!(job.input.len() >= job.images * input_rows * input_cols * in_stride);
        assert!(job.grad.len() >= job.images * grad_rows * grad_cols * job.out_stride);
        assert!(job.transformed_input.len() >= 16 * CHUNK * in_stride);
        assert!(job.transformed_grad.len() >= 16 * CHUNK * outs);
        assert!(job.sums.len() >= 16 * outs * in_stride);
        let tiles = job.tile_rows * job.tiles_per_row;
        for image in 0..job.images {
            for first in (0..tiles).step_by(CHUNK) {
                let count = CHUNK.min(tiles - first);
                for n in 0..count {
                    let (row, col) = (
                        (first + n) / job.tiles_per_row,
                        (first + n) % job.tiles_per_row,
                    );
                    let pixel = (image * input_rows + 2 * row) * input_cols + 2 * col;
                    transform_input(simd, job, pixel * in_stride, input_cols * in_stride, n);
                    let pixel = (image * grad_rows + 2 * row) * grad_cols + 2 * col;
                    let at = pixel * job.out_stride + job.first_out;
                    transform_grad(simd, job, at, grad_cols * job.out_stride, n);
                }
                for position in 0..16 {
                    add_products(simd, job, position, count);
                }
            }
        }
    }
}

/// `B^T d B` of the input tile whose top left pixel starts at `at` (rows `row_stride`
/// apart), every vector of input channels, into chunk slot `n`: `[position][n][channel]`.
// Indices, as in the matrices the transforms apply.
#[allow(clippy::needless_range_loop)]
#[inline(always)]
fn transform_input<S: Simd>(
    simd: S,
    job: &mut GradTilesJob<'_>,
    at: usize,
    row_stride: usize,
    n: usize,
) {
    let in_stride = job.in_stride;
    let reach = at + 3 * row_stride + 3 * in_stride + in_stride;
    assert!(reach <= job.input.len());
    for channel in (0..in_stride).step_by(S::LANES) {
        // d[i][j]: row i, column j of the tile. (Loops, not `array::from_fn`: a closure is
        // compiled without the set's features, and its intrinsics were calls.)
        let mut d = [[simd.splat(0.0); 4]; 4];
        for (i, d) in d.iter_mut().enumerate() {
            for (j, d) in d.iter_mut().enumerate() {
                let pixel = at + i * row_stride + j * in_stride + channel;
                // SAFETY: below `reach`, asserted inside the input, with `LANES` floats
                // left in the pixel (`channel` is a whole vector below `in_stride`).
                *d = unsafe { simd.load(job.input.as_ptr().add(pixel)) };
            }
        }
        // B^T d along the rows, then along the columns: the forward kernel's additions.
        let mut t = [[simd.splat(0.0); 4]; 4];
        for j in 0..4 {
            t[j] = [
                sub(simd, d[0][j], d[2][j]),
                simd.add(d[1][j], d[2][j]),
                sub(simd, d[2][j], d[1][j]),
                sub(simd, d[1][j], d[3][j]),
            ];
        }
        for i in 0..4 {
            let v = [
                sub(simd, t[0][i], t[2][i]),
                simd.add(t[1][i], t[2][i]),
                sub(simd, t[2][i], t[1][i]),
                sub(simd, t[1][i], t[3][i]),
            ];
            for (j, &v) in v.iter().enumerate() {
                let slot = ((i * 4 + j) * CHUNK + n) * in_stride + channel;
                simd.store(&mut job.transformed_input[slot..], v);
            }
        }
    }
}

/// `A dY A^T` of the grad tile whose top left pixel's block of channels starts at `at`
/// (rows `row_stride` apart), every vector of the block, into chunk slot `n`:
/// `[position][n][channel]`. With `dY = [[a, b], [c, d]]`, `A dY` has the rows `[a, b]`,
/// `[a + c, b + d]`, `[a - c, b - d]` and `[-c, -d]`, and each row `[p, q]` times `A^T` is
/// `[p, p + q, p - q, -q]`.
#[inline(always)]
fn transform_grad<S: Simd>(
    simd: S,
    job: &mut GradTilesJob<'_>,
    at: usize,
    row_stride: usize,
    n: usize,
) {
    let (outs, out_stride) = (job.outs, job.out_stride);
    assert!(at + row_stride + out_stride + outs <= job.grad.len());
    let zero = simd.splat(0.0);
    for channel in (0..outs).step_by(S::LANES) {
        let load = |offset: usize| {
            // SAFETY: `offset` is at most `row_stride + out_stride` past `at`, and the
            // block's `outs` floats from there are inside the grad (asserted).
            unsafe { simd.load(job.grad.as_ptr().add(at + offset + channel)) }
        };
        let (a, b) = (load(0), load(out_stride));
        let (c, d) = (load(row_stride), load(row_stride + out_stride));
        let rows = [
            [a, b],
            [simd.add(a, c), simd.add(b, d)],
            [sub(simd, a, c), sub(simd, b, d)],
            [sub(simd, zero, c), sub(simd, zero, d)],
        ];
        for (i, [p, q]) in rows.into_iter().enumerate() {
            let values = [p, simd.add(p, q), sub(simd, p, q), sub(simd, zero, q)];
            for (j, value) in values.into_iter().enumerate() {
                let slot = ((i * 4 + j) * CHUNK + n) * outs + channel;
                simd.store(&mut job.transformed_grad[slot..], value);
            }
        }
    }
}

/// Adds the chunk's products at `position` to its sums: for every output channel `o` and
/// input channel `c`, the sum over the chunk's `count` tiles of transformed grad `o` times
/// transformed input `c`. Blocks of `O` output channels by `IV` vectors of input channels,
/// `O * IV` accumulators: AVX-512 holds 4 x 4 (four broadcasts and four loads per 16
/// multiply-adds), the sets of 16 registers 4 x 2, the portable set 4 x 1.
#[inline(always)]
fn add_products<S: Simd>(simd: S, job: &mut GradTilesJob<'_>, position: usize, count: usize) {
    match S::ISA {
        Isa::Avx512 => add_block_columns::<S, 4>(simd, job, position, count),
        Isa::Avx2 | Isa::Neon => add_block_columns::<S, 2>(simd, job, position, count),
        Isa::Portable => add_block_columns::<S, 1>(simd, job, position, count),
    }
}

/// Output channels per block of the products.
const OUT_BLOCK: usize = 4;

/// [`add_products`] in blocks of `IV` vectors of input channels, and a last block of the
/// vectors left.
#[inline(always)]
fn add_block_columns<S: Simd, const IV: usize>(
    simd: S,
    job: &mut GradTilesJob<'_>,
    position: usize,
    count: usize,
) {
    let vectors = job.in_stride / S::LANES;
    let full = vectors / IV * IV;
    for first in (0..full).step_by(IV) {
        add_block::<S, IV>(simd, job, position, count, first);
    }
    match vectors - full {
        0 => {}
        1 => add_block::<S, 1>(simd, job, position, count, full),
        2 => add_block::<S, 2>(simd, job, position, count, full),
        rest => {
            assert!(rest < IV && rest == 3);
            add_block::<S, 3>(simd, job, position, count, full);
        }
    }
}

/// The products of input-channel vectors `first..first + IV` with every output channel of
/// the block, `OUT_BLOCK` at a time.
#[inline(always)]
fn add_block<S: Simd, const IV: usize>(
    simd: S,
    job: &mut GradTilesJob<'_>,
    position: usize,
    count: usize,
    first: usize,
) {
    let (in_stride, outs) = (job.in_stride, job.outs);
    let input = &job.transformed_input[position * CHUNK * in_stride..][..CHUNK * in_stride];
    let grad = &job.transformed_grad[position * CHUNK * outs..][..CHUNK * outs];
    let sums = &mut job.sums[position * outs * in_stride..][..outs * in_stride];
    let column = first * S::LANES;
    assert!(count <= CHUNK && column + IV * S::LANES <= in_stride);
    assert!(outs.is_multiple_of(OUT_BLOCK));
    for o in (0..outs).step_by(OUT_BLOCK) {
        let mut acc = [[simd.splat(0.0); IV]; OUT_BLOCK];
        for (k, acc) in acc.iter_mut().enumerate() {
            for (v, acc) in acc.iter_mut().enumerate() {
                let at = (o + k) * in_stride + column + v * S::LANES;
                // SAFETY: `o + k < outs` and `column + IV * LANES <= in_stride`: inside `sums`.
                *acc = unsafe { simd.load(sums.as_ptr().add(at)) };
            }
        }
        for n in 0..count {
            let mut x = [simd.splat(0.0); IV];
            for (v, x) in x.iter_mut().enumerate() {
                // SAFETY: tile `n < CHUNK`'s run of `in_stride` floats holds the vectors.
                *x =
                    unsafe { simd.load(input.as_ptr().add(n * in_stride + column + v * S::LANES)) };
            }
            let g = &grad[n * outs + o..][..OUT_BLOCK];
            for (acc, &g) in acc.iter_mut().zip(g) {
                let g = simd.splat(g);
                for (acc, &x) in acc.iter_mut().zip(&x) {
                    *acc = simd.mul_add(g, x, *acc);
                }
            }
        }
        for (k, acc) in acc.iter().enumerate() {
            for (v, &acc) in acc.iter().enumerate() {
                let at = (o + k) * in_stride + column + v * S::LANES;
                simd.store(&mut sums[at..], acc);
            }
        }
    }
}
