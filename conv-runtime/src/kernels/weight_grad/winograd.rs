//! The weight gradient of 3x3 stride-1 layers of many channels by Winograd's F(2x2, 3x3),
//! the forward family's transforms run backwards.
//!
//! The forward kernel computes each 2x2 tile of outputs as `Y = A^T (U . V) A`, with
//! `U = G g G^T` the transformed filter and `V = B^T d B` the transformed 4x4 input tile, `.`
//! elementwise. Everything in it is linear, so the filter's gradient follows by the chain
//! rule: for each pair of channels,
//!
//! ```text
//! dU = sum over tiles and images of (A dY A^T) . V,      dW = G^T dU G,
//! ```
//!
//! `dY` the tile's 2x2 output gradient. That is 16 products per tile and pair of channels
//! where the direct correlation takes 36: each of the 16 positions is a matrix product of the
//! transformed grad (`[tile][out_channel]`) and the transformed input (`[tile][in_channel]`)
//! over the tiles, run a chunk of tiles at a time so that both stay in cache
//! (`winograd_kernel.rs`). The transforms add and subtract: they cost a few units in the
//! last place against the direct sums, well inside the tolerance the tests hold every
//! weight gradient to against PyTorch.
//!
//! Infinities and NaN would not reach the filters the direct correlation sends them to
//! (the transforms mix every tap of a tile), so an operand that holds one is left to the
//! direct kernels, which match PyTorch there.
//!
//! Work is split between threads by blocks of output channels: each block's sums are its own,
//! in the same order whatever the split, so the result does not depend on the thread count.
//! Each block transforms the input tiles itself (a sixteenth of its work at 64 channels).

use ndarray::{Array4, ArrayView4};
use rayon::prelude::*;

use super::fill_chunks;
use super::winograd_kernel::{CHUNK, GradTiles, GradTilesFamily, GradTilesJob};
use crate::isa::{Compiled, Isa};
use crate::memory::scratch::with_scratch;
use crate::memory::transpose::{Transpose, TransposeFamily, TransposeJob};
use crate::shape::geometry::GeometrySpec;

/// The fewest input and output channels for which the transforms pay for themselves (as
/// in the forward family).
const MIN_CHANNELS: usize = 16;

/// Whether the weight gradient of a layer of `spec` and these channel counts is one this
/// computes: 3x3, stride 1, no dilation, one group, at least [`MIN_CHANNELS`] a side.
pub(super) fn fits(
    spec: &GeometrySpec,
    groups: usize,
    in_channels: usize,
    out_channels: usize,
) -> bool {
    spec.kernel_size == (3, 3)
        && spec.stride == (1, 1)
        && spec.dilation == (1, 1)
        && groups == 1
        && in_channels >= MIN_CHANNELS
        && out_channels >= MIN_CHANNELS
}

/// The sizes both operands are laid out by.
#[derive(Clone, Copy, Debug)]
struct Tiling {
    images: usize,
    tile_rows: usize,
    tiles_per_row: usize,
    /// Floats per pixel of each operand: its channels rounded up to whole vectors.
    in_stride: usize,
    out_stride: usize,
}

impl Tiling {
    /// Floats per row of the laid-out input: `2 * tiles_per_row + 2` pixels.
    fn input_row(&self) -> usize {
        (2 * self.tiles_per_row + 2) * self.in_stride
    }

    fn input_rows(&self) -> usize {
        2 * self.tile_rows + 2
    }

    /// Floats per row of the laid-out grad operand: `2 * tiles_per_row` pixels.
    fn grad_row(&self) -> usize {
        2 * self.tiles_per_row * self.out_stride
    }

    fn grad_rows(&self) -> usize {
        2 * self.tile_rows
    }
}

/// The correlation of [`super::correlate`] for a layer that [`fits`], on `isa` (or the
/// portable set): `None` if either operand holds an infinity or NaN (see the module
/// documentation), for the caller to compute it directly.
pub(super) fn correlate(
    spec: GeometrySpec,
    isa: Isa,
    input: &ArrayView4<f32>,
    grad: &ArrayView4<f32>,
    parallel: bool,
) -> Option<Array4<f32>> {
    let kernel = Compiled::<GradTilesFamily>::for_isa::<GradTiles>(isa);
    let transpose = Compiled::<TransposeFamily>::for_isa::<Transpose>(kernel.isa());
    let lanes = kernel.isa().lanes();
    let (images, in_channels, _, _) = input.dim();
    let (_, out_channels, rows, width) = grad.dim();
    let tiling = Tiling {
        images,
        tile_rows: rows.div_ceil(2),
        tiles_per_row: width.div_ceil(2),
        in_stride: in_channels.next_multiple_of(lanes),
        out_stride: out_channels.next_multiple_of(lanes),
    };
    let input_len = images * tiling.input_rows() * tiling.input_row();
    let grad_len = images * tiling.grad_rows() * tiling.grad_row();
    with_scratch(input_len + grad_len, |buffer| {
        let (laid_input, laid_grad) = buffer.split_at_mut(input_len);
        let finite = lay_out_input(
            input,
            spec.pad_before(),
            tiling,
            transpose,
            parallel,
            laid_input,
        ) & lay_out_grad(grad, tiling, transpose, parallel, laid_grad);
        finite.then(|| {
            let (laid_input, laid_grad) = (&*laid_input, &*laid_grad);
            filters(
                kernel,
                tiling,
                (in_channels, out_channels),
                laid_input,
                laid_grad,
                parallel,
            )
        })
    })
}

/// Every filter, `[out_channel][in_channel][3][3]`, from the laid-out operands: the blocks
/// of output channels' sums, each block's filters written by the task that computed them.
fn filters(
    kernel: Compiled<GradTilesFamily>,
    tiling: Tiling,
    (in_channels, out_channels): (usize, usize),
    input: &[f32],
    grad: &[f32],
    parallel: bool,
) -> Array4<f32> {
    let lanes = kernel.isa().lanes();
    let vectors = tiling.out_stride / lanes;
    let tasks = if parallel {
        rayon::current_num_threads().min(vectors)
    } else {
        1
    };
    let block = vectors.div_ceil(tasks) * lanes;
    let mut result = Array4::zeros((out_channels, in_channels, 3, 3));
    let filters_per_block = block * in_channels * 9;
    let one_block = |(index, filters): (usize, &mut [f32])| {
        let first_out = index * block;
        let outs = block.min(tiling.out_stride - first_out);
        let (in_stride, sums_len) = (tiling.in_stride, 16 * outs * tiling.in_stride);
        let scratch_len = 16 * CHUNK * (in_stride + outs) + sums_len;
        with_scratch(scratch_len, |scratch| {
            let (sums, transformed) = scratch.split_at_mut(sums_len);
            let (transformed_input, transformed_grad) =
                transformed.split_at_mut(16 * CHUNK * in_stride);
            sums.fill(0.0);
            kernel.run(&mut GradTilesJob {
                input,
                in_stride,
                grad,
                out_stride: tiling.out_stride,
                images: tiling.images,
                tile_rows: tiling.tile_rows,
                tiles_per_row: tiling.tiles_per_row,
                first_out,
                outs,
                transformed_input,
                transformed_grad,
                sums,
            });
            transform_sums(sums, (outs, in_stride), in_channels, filters);
        });
    };
    let result_slice = result
        .as_slice_mut()
        .expect("a fresh array is in standard layout");
    if tasks > 1 {
        result_slice
            .par_chunks_mut(filters_per_block)
            .enumerate()
            .for_each(one_block);
    } else {
        result_slice
            .chunks_mut(filters_per_block)
            .enumerate()
            .for_each(one_block);
    }
    result
}

/// `G^T dU G` of every pair of channels in a block's `sums` (`[16][outs][in_stride]`, of
/// which the real output channels are `filters.len() / (in_channels * 9)`), into `filters`,
/// `[out][in][3][3]`, in `f64`. With `G = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2],
/// [0, 0, 1]]`, `G^T` maps a column `[u0, u1, u2, u3]` to `[u0 + (u1 + u2) / 2, (u1 - u2) / 2,
/// (u1 + u2) / 2 + u3]`.
fn transform_sums(
    sums: &[f32],
    (outs, in_stride): (usize, usize),
    in_channels: usize,
    filters: &mut [f32],
) {
    let g_transpose = |u: [f64; 4]| {
        let (plus, minus) = ((u[1] + u[2]) / 2.0, (u[1] - u[2]) / 2.0);
        [u[0] + plus, minus, plus + u[3]]
    };
    let position_stride = outs * in_stride;
    for (o, filters) in filters.chunks_exact_mut(in_channels * 9).enumerate() {
        for (c, filter) in filters.chunks_exact_mut(9).enumerate() {
            let du = |i: usize, j: usize| {
                f64::from(sums[(i * 4 + j) * position_stride + o * in_stride + c])
            };
            // G^T dU: each column of dU through G^T ...
            let columns: [[f64; 3]; 4] =
                std::array::from_fn(|j| g_transpose([du(0, j), du(1, j), du(2, j), du(3, j)]));
            // ... then (G^T dU) G: each row through G^T.
            for (a, row) in filter.chunks_exact_mut(3).enumerate() {
                let values =
                    g_transpose([columns[0][a], columns[1][a], columns[2][a], columns[3][a]]);
                for (slot, value) in row.iter_mut().zip(values) {
                    *slot = value as f32;
                }
            }
        }
    }
}

/// Lays the input out channels-last in `buffer` (see [`GradTilesJob::input`]), with
/// `(pad_top, pad_left)` zero rows and columns before the data; whether every value is
/// finite.
fn lay_out_input(
    input: &ArrayView4<f32>,
    (pad_top, pad_left): (usize, usize),
    tiling: Tiling,
    transpose: Compiled<TransposeFamily>,
    parallel: bool,
    buffer: &mut [f32],
) -> bool {
    let (_, channels, height, width) = input.dim();
    let input = input.as_standard_layout();
    let input = input.as_slice().expect("standard layout");
    let stride = tiling.in_stride;
    let pixels = tiling.input_row() / stride;
    let one_row = |(index, row): (usize, &mut [f32])| -> bool {
        let (image, r) = (index / tiling.input_rows(), index % tiling.input_rows());
        let y = r.checked_sub(pad_top).filter(|&y| y < height);
        let start = pad_left.min(pixels);
        let used = width.min(pixels - start);
        let Some(y) = y.filter(|_| used > 0) else {
            row.fill(0.0);
            return true;
        };
        row[..start * stride].fill(0.0);
        row[(start + used) * stride..].fill(0.0);
        lay_out_row(
            transpose,
            &input[(image * channels * height + y) * width..],
            height * width,
            channels,
            stride,
            &mut row[start * stride..(start + used) * stride],
        )
    };
    fill_chunks(buffer, tiling.input_row(), parallel, one_row)
}

/// Lays the grad operand out channels-last in `buffer` (see [`GradTilesJob::grad`]); whether
/// every value is finite.
fn lay_out_grad(
    grad: &ArrayView4<f32>,
    tiling: Tiling,
    transpose: Compiled<TransposeFamily>,
    parallel: bool,
    buffer: &mut [f32],
) -> bool {
    let (_, channels, rows, width) = grad.dim();
    let grad = grad.as_standard_layout();
    let grad = grad.as_slice().expect("standard layout");
    let stride = tiling.out_stride;
    let one_row = |(index, row): (usize, &mut [f32])| -> bool {
        let (image, y) = (index / tiling.grad_rows(), index % tiling.grad_rows());
        if y >= rows {
            row.fill(0.0);
            return true;
        }
        row[width * stride..].fill(0.0);
        lay_out_row(
            transpose,
            &grad[(image * channels * rows + y) * width..],
            rows * width,
            channels,
            stride,
            &mut row[..width * stride],
        )
    };
    fill_chunks(buffer, tiling.grad_row(), parallel, one_row)
}

/// One row of `channels` planes (`planes[c * plane..]` starts channel `c`'s row) laid out
/// pixel by pixel into `target`, `stride` floats per pixel (zeros past the channels);
/// whether every value is finite.
fn lay_out_row(
    transpose: Compiled<TransposeFamily>,
    planes: &[f32],
    plane: usize,
    channels: usize,
    stride: usize,
    target: &mut [f32],
) -> bool {
    transpose.run(&mut TransposeJob {
        stage: planes,
        stride: plane,
        channels,
        block: stride,
        offset: 0,
        target: &mut *target,
    });
    // Folded with `&`, not `all`, so that the check vectorises.
    target
        .iter()
        .fold(true, |all, value| all & value.is_finite())
}
