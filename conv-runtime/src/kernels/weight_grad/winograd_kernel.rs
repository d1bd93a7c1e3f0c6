//! The Winograd weight-gradient kernel: one block of input channels' transformed sums over
//! every image, written once for every instruction set. See the [driver](super::winograd)
//! for the algebra; this file holds the three steps of a chunk of tiles: the input tiles
//! transformed (`B^T d B`), the grad tiles transformed (`A dY A^T`), and for each of the 16
//! positions a small matrix product that adds them into the sums.
//!
//! The products load vectors of input channels and broadcast grad values, as the channel
//! kernel (`channels.rs`) does with pixels: so the transformed input is laid out with its
//! channels contiguous (`[position][tile][channel]`), transformed from the input laid out
//! channels-last, a vector of channels at a time; the transformed grad may be laid out any
//! way (`[position][channel][tile]`), and is transformed straight from the grad's planes, a
//! vector of tiles at a time (each tile's two columns split with `deinterleave`).

use crate::isa::{Family, Isa, Kernel, Simd};
use crate::kernels::winograd::{position_stride, sub, transform_tile};

/// Tile slots per chunk: each position's products sweep a chunk's tiles with their
/// accumulators in registers. A chunk's transformed operands (`16 * CHUNK` runs of
/// channels each) stay in L2, and one position's (16 KB of each for 64 channels) in L1.
pub(super) const CHUNK: usize = 64;

/// The products' widest block of output channels: the transformed grad and the sums hold
/// the output channels rounded up to a multiple of it (the narrower blocks divide it).
pub(super) const OUT_BLOCK: usize = 8;

/// A block of input channels: everything one call needs.
pub(crate) struct GradTilesJob<'a> {
    /// The input, channels-last with its padding: `[image][row][col][in_stride]`, rows
    /// and columns enough for every tile (`2 * tile_rows + 2` by `2 * tiles_per_row + 2`),
    /// zeros outside the data and in the channels past the real ones.
    pub input: &'a [f32],
    pub in_stride: usize,
    /// The block: input channels `first_in..first_in + ins`, both whole vectors.
    pub first_in: usize,
    pub ins: usize,
    /// The grad operand, `[image][channel][row][col]` in standard layout.
    pub grad: &'a [f32],
    pub out_channels: usize,
    pub grad_rows: usize,
    pub grad_width: usize,
    pub images: usize,
    pub tile_rows: usize,
    pub tiles_per_row: usize,
    /// Scratch for a chunk's transformed input, `[16][CHUNK][ins]`, and transformed grad,
    /// `[16][padded_outs(out_channels)][CHUNK]` (whose channels past the real ones must
    /// be zeros on entry: the kernel leaves them as they are), each position
    /// [`position_stride`] floats from the last, as the forward kernels'.
    pub transformed_input: &'a mut [f32],
    pub transformed_grad: &'a mut [f32],
    /// The block's sums, `[16][padded_outs(out_channels)][ins]`: zeros on entry, on return
    /// each position's sum over every tile of `(A dY A^T) * (B^T d B)`.
    pub sums: &'a mut [f32],
}

/// The output channels the transformed grad and the sums hold: whole blocks.
pub(super) fn padded_outs(out_channels: usize) -> usize {
    out_channels.next_multiple_of(OUT_BLOCK)
}

/// The kernel's family: every kernel computes one [`GradTilesJob`].
pub(crate) struct GradTilesFamily;

impl Family for GradTilesFamily {
    type Job<'a> = GradTilesJob<'a>;
}

/// The kernel: written once, compiled for each instruction set.
pub(crate) struct GradTiles;

/// A chunk: tile rows `first_row..first_row + rows` of one image, each its tiles
/// `first_tile..first_tile + tiles`, tile `t` of the chunk's row `k` in slot
/// `k * row_slots + t` (a whole number of vectors of slots per row, so that the grad's
/// transform stores whole vectors of tiles).
#[derive(Clone, Copy)]
struct Chunk {
    image: usize,
    first_row: usize,
    rows: usize,
    first_tile: usize,
    tiles: usize,
    row_slots: usize,
}

impl Kernel<GradTilesFamily> for GradTiles {
    #[inline(always)]
    fn run<S: Simd>(simd: S, job: &mut GradTilesJob<'_>) {
        let lanes = S::LANES;
        let (ins, outs) = (job.ins, padded_outs(job.out_channels));
        assert!(ins.is_multiple_of(lanes) && ins > 0 && job.in_stride.is_multiple_of(lanes));
        assert!(job.first_in.is_multiple_of(lanes) && job.first_in + ins <= job.in_stride);
        let (input_rows, input_cols) = (2 * job.tile_rows + 2, 2 * job.tiles_per_row + 2);
        let pixels = job.images * input_rows * input_cols;
        assert!(job.input.len() >= pixels * job.in_stride);
        let planes = job.images * job.out_channels;
        assert!(job.grad.len() >= planes * job.grad_rows * job.grad_width);
        assert!(2 * job.tile_rows >= job.grad_rows && 2 * job.tiles_per_row >= job.grad_width);
        assert!(job.transformed_input.len() >= 16 * position_stride(CHUNK * ins));
        assert!(job.transformed_grad.len() >= 16 * position_stride(outs * CHUNK));
        assert!(job.sums.len() >= 16 * outs * ins);
        // A row's tiles in segments of at most `CHUNK`; as many rows per chunk as fit.
        let segment = job.tiles_per_row.min(CHUNK);
        let row_slots = segment.next_multiple_of(lanes);
        let rows_per_chunk = (CHUNK / row_slots).max(1);
        for image in 0..job.images {
            for first_row in (0..job.tile_rows).step_by(rows_per_chunk) {
                for first_tile in (0..job.tiles_per_row).step_by(segment) {
                    let chunk = Chunk {
                        image,
                        first_row,
                        rows: rows_per_chunk.min(job.tile_rows - first_row),
                        first_tile,
                        tiles: segment.min(job.tiles_per_row - first_tile),
                        row_slots,
                    };
                    transform_inputs(simd, job, chunk);
                    transform_grads(simd, job, chunk);
                    for position in 0..16 {
                        add_products(simd, job, position, chunk);
                    }
                }
            }
        }
    }
}

/// `B^T d B` of every input tile of the chunk, every vector of the block's input channels,
/// into the transformed input: `[position][slot][channel]`.
#[inline(always)]
fn transform_inputs<S: Simd>(simd: S, job: &mut GradTilesJob<'_>, chunk: Chunk) {
    let (in_stride, ins) = (job.in_stride, job.ins);
    let (input_rows, input_cols) = (2 * job.tile_rows + 2, 2 * job.tiles_per_row + 2);
    let row_stride = input_cols * in_stride;
    let position = position_stride(CHUNK * ins);
    for k in 0..chunk.rows {
        let row = chunk.image * input_rows + 2 * (chunk.first_row + k);
        for t in 0..chunk.tiles {
            let slot = k * chunk.row_slots + t;
            let at = (row * input_cols + 2 * (chunk.first_tile + t)) * in_stride + job.first_in;
            // The tile's last row and column are inside the input (`run` asserted the
            // input's size, and tiles reach row `2 * tile_rows + 1` and column
            // `2 * tiles_per_row + 1` at most).
            assert!(at + 3 * row_stride + 3 * in_stride + ins <= job.input.len());
            for channel in (0..ins).step_by(S::LANES) {
                // d[i][j]: row i, column j of the tile. (Loops, not `array::from_fn`: a
                // closure is compiled without the set's features, and its intrinsics were
                // calls.)
                let mut d = [[simd.splat(0.0); 4]; 4];
                for (i, d) in d.iter_mut().enumerate() {
                    for (j, d) in d.iter_mut().enumerate() {
                        let pixel = at + i * row_stride + j * in_stride + channel;
                        // SAFETY: at most the asserted reach, less the vector's `LANES`
                        // floats (`channel + LANES <= ins`).
                        *d = unsafe { simd.load(job.input.as_ptr().add(pixel)) };
                    }
                }
                for (i, v) in transform_tile(simd, &d).iter().enumerate() {
                    for (j, &v) in v.iter().enumerate() {
                        let at = (i * 4 + j) * position + slot * ins + channel;
                        simd.store(&mut job.transformed_input[at..], v);
                    }
                }
            }
        }
    }
}

/// `A dY A^T` of every grad tile of the chunk, every output channel, a vector of tiles at a
/// time, into the transformed grad: `[position][channel][slot]`. With `dY = [[a, b], [c, d]]`,
/// `A dY` has the rows `[a, b]`, `[a + c, b + d]`, `[a - c, b - d]` and `[-c, -d]`, and each
/// row `[p, q]` times `A^T` is `[p, p + q, p - q, -q]`.
#[inline(always)]
fn transform_grads<S: Simd>(simd: S, job: &mut GradTilesJob<'_>, chunk: Chunk) {
    let (rows, width) = (job.grad_rows, job.grad_width);
    let outs = padded_outs(job.out_channels);
    let position = position_stride(outs * CHUNK);
    let zero = simd.splat(0.0);
    for channel in 0..job.out_channels {
        let plane = &job.grad[(chunk.image * job.out_channels + channel) * rows * width..];
        for k in 0..chunk.rows {
            let y = 2 * (chunk.first_row + k);
            // The tile row's two grad rows; the second is zeros past the grid's last row.
            let upper = &plane[y * width..][..width];
            let lower = if y + 1 < rows {
                &plane[(y + 1) * width..][..width]
            } else {
                &[][..]
            };
            for t in (0..chunk.tiles).step_by(S::LANES) {
                let column = 2 * (chunk.first_tile + t);
                let (a, b) = tile_columns(simd, upper, column);
                let (c, d) = tile_columns(simd, lower, column);
                let rows = [
                    [a, b],
                    [simd.add(a, c), simd.add(b, d)],
                    [sub(simd, a, c), sub(simd, b, d)],
                    [sub(simd, zero, c), sub(simd, zero, d)],
                ];
                let slot = k * chunk.row_slots + t;
                for (i, [p, q]) in rows.into_iter().enumerate() {
                    let values = [p, simd.add(p, q), sub(simd, p, q), sub(simd, zero, q)];
                    for (j, value) in values.into_iter().enumerate() {
                        let at = (i * 4 + j) * position + channel * CHUNK + slot;
                        simd.store(&mut job.transformed_grad[at..], value);
                    }
                }
            }
        }
    }
}

/// The left and right columns of `LANES` consecutive tiles of a grad row from `column`:
/// its even and odd values from there, zeros past the row's end.
#[inline(always)]
fn tile_columns<S: Simd>(simd: S, row: &[f32], column: usize) -> (S::Vector, S::Vector) {
    let lanes = S::LANES;
    let (first, second) = if column + 2 * lanes <= row.len() {
        // SAFETY: the two vectors from `column` are inside the row (checked just above).
        unsafe {
            let from = row.as_ptr().add(column);
            (simd.load(from), simd.load(from.add(lanes)))
        }
    } else {
        let mut buffer = [0.0f32; 32];
        let rest = row.len().saturating_sub(column);
        buffer[..rest].copy_from_slice(&row[row.len() - rest..]);
        // SAFETY: `buffer` holds two vectors of the widest set.
        unsafe {
            (
                simd.load(buffer.as_ptr()),
                simd.load(buffer.as_ptr().add(lanes)),
            )
        }
    };
    simd.deinterleave(first, second)
}

/// Adds the chunk's products at `position` to its sums: for every output channel `o` and
/// input channel `c` of the block, the sum over the chunk's tiles of transformed grad `o`
/// times transformed input `c`. Blocks of `O` output channels by `IV` vectors of input
/// channels, `O * IV` accumulators: AVX-512 takes 4 x 4 (four broadcasts and four loads per
/// 16 multiply-adds; unet-enc's backward 13.10 -> 12.63 ms against 8 x 2, Intel Xeon, one
/// thread, fastest of six alternated runs), then 8 x 2 and 8 x 1 for the vectors left; the
/// sets of 16 registers 8 x 1.
#[inline(always)]
fn add_products<S: Simd>(simd: S, job: &mut GradTilesJob<'_>, position: usize, chunk: Chunk) {
    let vectors = job.ins / S::LANES;
    let mut first = 0;
    if matches!(S::ISA, Isa::Avx512) {
        while first + 4 <= vectors {
            add_block::<S, 4, 4>(simd, job, position, chunk, first);
            first += 4;
        }
        if first + 2 <= vectors {
            add_block::<S, 8, 2>(simd, job, position, chunk, first);
            first += 2;
        }
    }
    for first in first..vectors {
        add_block::<S, 8, 1>(simd, job, position, chunk, first);
    }
}

/// The products of input-channel vectors `first..first + IV` with every output channel,
/// `O` at a time.
#[inline(always)]
fn add_block<S: Simd, const O: usize, const IV: usize>(
    simd: S,
    job: &mut GradTilesJob<'_>,
    position: usize,
    chunk: Chunk,
    first: usize,
) {
    let (ins, outs) = (job.ins, padded_outs(job.out_channels));
    let input = &job.transformed_input[position * position_stride(CHUNK * ins)..][..CHUNK * ins];
    let grad = &job.transformed_grad[position * position_stride(outs * CHUNK)..][..outs * CHUNK];
    let sums = &mut job.sums[position * outs * ins..][..outs * ins];
    let column = first * S::LANES;
    assert!(column + IV * S::LANES <= ins && outs.is_multiple_of(O));
    assert!(chunk.rows.max(1) * chunk.row_slots <= CHUNK && chunk.tiles <= chunk.row_slots);
    for o in (0..outs).step_by(O) {
        let mut acc = [[simd.splat(0.0); IV]; O];
        for (k, acc) in acc.iter_mut().enumerate() {
            for (v, acc) in acc.iter_mut().enumerate() {
                let at = (o + k) * ins + column + v * S::LANES;
                // SAFETY: `o + k < outs` and `column + IV * LANES <= ins`: inside `sums`.
                *acc = unsafe { simd.load(sums.as_ptr().add(at)) };
            }
        }
        for row in 0..chunk.rows {
            for slot in row * chunk.row_slots..row * chunk.row_slots + chunk.tiles {
                let mut x = [simd.splat(0.0); IV];
                for (v, x) in x.iter_mut().enumerate() {
                    let at = slot * ins + column + v * S::LANES;
                    // SAFETY: `slot < CHUNK` (asserted) and the vectors are inside the
                    // slot's run of `ins` floats.
                    *x = unsafe { simd.load(input.as_ptr().add(at)) };
                }
                for (k, acc) in acc.iter_mut().enumerate() {
                    let g = simd.splat(grad[(o + k) * CHUNK + slot]);
                    for (acc, &x) in acc.iter_mut().zip(&x) {
                        *acc = simd.mul_add(g, x, *acc);
                    }
                }
            }
        }
        for (k, acc) in acc.iter().enumerate() {
            for (v, &acc) in acc.iter().enumerate() {
                let at = (o + k) * ins + column + v * S::LANES;
                simd.store(&mut sums[at..], acc);
            }
        }
    }
}
