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
//! (the transforms mix every tap of a tile), but they do reach some filter: an operand that
//! holds one gives a gradient that does not, which is then computed again by the direct
//! kernels, which match PyTorch there. (A gradient that overflows is computed again too.)
//!
//! Work is split between threads by blocks of input channels: each block's sums are its own,
//! in the same order whatever the split, so the result does not depend on the thread count.
//! Each block transforms the grad tiles itself (a few percent of its work at 32 channels).

use ndarray::{Array4, ArrayView4};
use rayon::prelude::*;

use super::winograd_kernel::{CHUNK, GradTiles, GradTilesFamily, GradTilesJob, padded_outs};
use crate::isa::{Compiled, Isa};
use crate::kernels::row::prepare::each_channel;
use crate::kernels::winograd::position_stride;
use crate::memory::scratch::with_scratch;
use crate::memory::transpose::{Transpose, TransposeFamily, TransposeJob};
use crate::shape::geometry::GeometrySpec;

/// The fewest input and output channels for which the transforms pay for themselves (as
/// in the forward family).
const MIN_CHANNELS: usize = 16;

/// The fewest input channels a task takes (where the layer has them): a block of 64 keeps
/// the products' widest blocking (four vectors of AVX-512), and a layer of 64 channels one
/// task, which runs beside the input gradient (`rayon::join` in the layer's backward, of
/// about the same work) rather than split in two beside it. unet-enc's backward at two
/// threads 7.50 -> 6.40 ms, unet-enc-b8's 17.9 -> 14.0 (Intel Xeon, fastest of six and of three
/// alternated runs of `suite --only CASE --quick --fastest --backward`).
const MIN_BLOCK: usize = 64;

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

/// The tiles, and the input laid out for them.
#[derive(Clone, Copy, Debug)]
struct Tiling {
    images: usize,
    tile_rows: usize,
    tiles_per_row: usize,
    /// Floats per pixel of the laid-out input: its channels rounded up to whole vectors.
    in_stride: usize,
}

impl Tiling {
    /// Floats per row of the laid-out input: `2 * tiles_per_row + 2` pixels.
    fn input_row(&self) -> usize {
        (2 * self.tiles_per_row + 2) * self.in_stride
    }

    fn input_rows(&self) -> usize {
        2 * self.tile_rows + 2
    }
}

/// The correlation of [`super::correlate`] for a layer that [`fits`], on `isa` (or the
/// portable set): `None` where a filter is not finite (see the module documentation), for
/// the caller to compute them directly.
pub(super) fn correlate(
    spec: GeometrySpec,
    isa: Isa,
    input: &ArrayView4<f32>,
    grad: &ArrayView4<f32>,
    parallel: bool,
) -> Option<Array4<f32>> {
    let kernel = Compiled::<GradTilesFamily>::for_isa::<GradTiles>(isa);
    let transpose = Compiled::<TransposeFamily>::for_isa::<Transpose>(kernel.isa());
    let (images, in_channels, _, _) = input.dim();
    let (_, out_channels, rows, width) = grad.dim();
    let tiling = Tiling {
        images,
        tile_rows: rows.div_ceil(2),
        tiles_per_row: width.div_ceil(2),
        in_stride: in_channels.next_multiple_of(kernel.isa().lanes()),
    };
    // The grad's planes as slices: one not in standard layout is copied once.
    let grad = grad.as_standard_layout();
    let grad = grad.as_slice().expect("standard layout");
    let input_len = images * tiling.input_rows() * tiling.input_row();
    let result = with_scratch(input_len, |laid_input| {
        lay_out_input(
            input,
            spec.pad_before(),
            tiling,
            transpose,
            parallel,
            laid_input,
        );
        let channels = (in_channels, out_channels, (rows, width));
        filters(kernel, tiling, channels, laid_input, grad, parallel)
    });
    result
        .iter()
        .all(|value| value.is_finite())
        .then_some(result)
}

/// Every filter, `[out_channel][in_channel][3][3]`, from the laid-out input and the grad's
/// planes (`grid` rows and columns each): the sums of blocks of input channels, in
/// parallel when asked.
fn filters(
    kernel: Compiled<GradTilesFamily>,
    tiling: Tiling,
    (in_channels, out_channels, (rows, width)): (usize, usize, (usize, usize)),
    input: &[f32],
    grad: &[f32],
    parallel: bool,
) -> Array4<f32> {
    let lanes = kernel.isa().lanes();
    let vectors = tiling.in_stride / lanes;
    let threads = if parallel {
        rayon::current_num_threads().min(vectors)
    } else {
        1
    };
    // One block per thread, but never under MIN_BLOCK channels: the raise can leave fewer
    // blocks than threads, and with one block there is nothing to run in parallel.
    let block = (vectors.div_ceil(threads) * lanes).max(MIN_BLOCK);
    let outs = padded_outs(out_channels);
    // Each block's filters, `[out_channel][its input channels][3][3]`.
    let one_block = |first_in: usize| -> Vec<f32> {
        let ins = block.min(tiling.in_stride - first_in);
        let (sums_len, input_len) = (16 * outs * ins, 16 * position_stride(CHUNK * ins));
        let grad_len = 16 * position_stride(outs * CHUNK);
        with_scratch(sums_len + input_len + grad_len, |scratch| {
            let (sums, transformed) = scratch.split_at_mut(sums_len);
            let (transformed_input, transformed_grad) = transformed.split_at_mut(input_len);
            sums.fill(0.0);
            // The padding channels' rows, which the kernel leaves as they are.
            transformed_grad.fill(0.0);
            kernel.run(&mut GradTilesJob {
                input,
                in_stride: tiling.in_stride,
                first_in,
                ins,
                grad,
                out_channels,
                grad_rows: rows,
                grad_width: width,
                images: tiling.images,
                tile_rows: tiling.tile_rows,
                tiles_per_row: tiling.tiles_per_row,
                transformed_input,
                transformed_grad,
                sums,
            });
            let real_ins = ins.min(in_channels.saturating_sub(first_in));
            transform_sums(sums, (outs, ins), (out_channels, real_ins))
        })
    };
    let starts = (0..tiling.in_stride).step_by(block);
    let blocks: Vec<Vec<f32>> = if threads > 1 && tiling.in_stride > block {
        starts
            .collect::<Vec<_>>()
            .into_par_iter()
            .map(one_block)
            .collect()
    } else {
        starts.map(one_block).collect()
    };
    let mut result = Array4::zeros((out_channels, in_channels, 3, 3));
    let result_slice = result
        .as_slice_mut()
        .expect("a fresh array is in standard layout");
    for (index, filters) in blocks.iter().enumerate() {
        let first_in = index * block;
        let run = filters.len() / out_channels.max(1);
        for (o, run_filters) in filters.chunks_exact(run.max(1)).enumerate() {
            let at = (o * in_channels + first_in) * 9;
            result_slice[at..at + run].copy_from_slice(run_filters);
        }
    }
    result
}

/// `G^T dU G` of every pair of real channels in a block's `sums` (`[16][outs][ins]`), as
/// the filters `[out_channel][in_channel][3][3]`, in `f64`. With `G = [[1, 0, 0],
/// [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]]`, `G^T` maps a column `[u0, u1, u2, u3]`
/// to `[u0 + (u1 + u2) / 2, (u1 - u2) / 2, (u1 + u2) / 2 + u3]`.
fn transform_sums(
    sums: &[f32],
    (outs, ins): (usize, usize),
    (real_outs, real_ins): (usize, usize),
) -> Vec<f32> {
    let g_transpose = |u: [f64; 4]| {
        let (plus, minus) = ((u[1] + u[2]) / 2.0, (u[1] - u[2]) / 2.0);
        [u[0] + plus, minus, plus + u[3]]
    };
    let position_stride = outs * ins;
    let mut filters = Vec::with_capacity(real_outs * real_ins * 9);
    for o in 0..real_outs {
        for c in 0..real_ins {
            let du =
                |i: usize, j: usize| f64::from(sums[(i * 4 + j) * position_stride + o * ins + c]);
            // G^T dU: each column of dU through G^T ...
            let columns: [[f64; 3]; 4] =
                std::array::from_fn(|j| g_transpose([du(0, j), du(1, j), du(2, j), du(3, j)]));
            // ... then (G^T dU) G: each row through G^T.
            let [first, second, third, fourth] = columns;
            for a in 0..3 {
                let row = g_transpose([first[a], second[a], third[a], fourth[a]]);
                filters.extend(row.map(|value| value as f32));
            }
        }
    }
    filters
}

/// Lays the input out channels-last in `buffer` (see [`GradTilesJob::input`]), with
/// `(pad_top, pad_left)` zero rows and columns before the data.
fn lay_out_input(
    input: &ArrayView4<f32>,
    (pad_top, pad_left): (usize, usize),
    tiling: Tiling,
    transpose: Compiled<TransposeFamily>,
    parallel: bool,
    buffer: &mut [f32],
) {
    let (_, channels, height, width) = input.dim();
    let input = input.as_standard_layout();
    let input = input.as_slice().expect("standard layout");
    let stride = tiling.in_stride;
    let pixels = tiling.input_row() / stride;
    let one_row = |index: usize, row: &mut [f32]| {
        let (image, r) = (index / tiling.input_rows(), index % tiling.input_rows());
        let start = pad_left.min(pixels);
        let used = width.min(pixels - start);
        let y = r.checked_sub(pad_top).filter(|&y| y < height && used > 0);
        let Some(y) = y else {
            row.fill(0.0);
            return;
        };
        row[..start * stride].fill(0.0);
        row[(start + used) * stride..].fill(0.0);
        // Channel `c`'s row `y` is `planes[c * height * width..]`.
        let planes = &input[(image * channels * height + y) * width..];
        transpose.run(&mut TransposeJob {
            stage: planes,
            stride: height * width,
            channels,
            block: stride,
            offset: 0,
            target: &mut row[start * stride..(start + used) * stride],
        });
    };
    let threads = if parallel {
        rayon::current_num_threads()
    } else {
        1
    };
    // One laid-out row per call (the helper's chunks are channels where the row kernels
    // lay their input out).
    each_channel(buffer, tiling.input_row(), threads, one_row);
}
