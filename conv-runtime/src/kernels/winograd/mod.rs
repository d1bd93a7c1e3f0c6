//! The Winograd family: 3x3 convolutions of stride 1 with many channels (U-Net's encoder,
//! VGG-style layers, context modules' dilated layers), by Lavin and Gray's F(2x2, 3x3): each
//! 2x2 tile of outputs takes 16 multiply-adds per input and output channel instead of 36.
//! The transposed convolutions of that geometry are convolutions too, with the filters
//! turned around: the input gradient of every such layer's backward pass, and 3x3 stride-1
//! upconvolutions. A dilated layer runs as dense ones on its lattice's classes (`lattice`)
//! where their tiles fill the kernel's blocks. A strided layer whose filter is three strides
//! wide runs as one such convolution on its phases (`phases`): a transposed one onto all
//! its output's phases at once, a convolution from its input's. A 3x3 convolution of stride
//! 2 (down-s2) has a kernel of its own on the sets of 32 registers (`strided`): 2x2 output
//! tiles from 5x5 input tiles, 25 multiply-adds per tile and channel pair instead of 36.
//!
//! The input is laid out as for the row kernels' stride 2 (even and odd columns apart, with
//! the padding), so that the 4x4 input tiles of consecutive output tiles are contiguous
//! vectors. For each row of tiles, a block of `2 * LANES` tiles at a time (whose data stays
//! in L1 and L2): every input tile is transformed (`B^T d B`, additions only), each of the 16
//! positions is one small matrix product with the weights transformed at construction
//! (`G g G^T`), and each output tile is transformed back (`A^T m A`) and written with the
//! bias. The products are the row kernel's blocking turned on tiles: four broadcast weights
//! by two vectors of tiles.
//!
//! The sums are not the direct convolution's: the transforms add and subtract before and
//! after the products, which costs a few units in the last place (the tests hold it to the
//! same tolerance against PyTorch as every other kernel). Compiled once, in this crate,
//! for every instruction set: no build cost per geometry.

mod kernel;
mod lattice;
mod lattice_rows;
mod phases;
mod strided;

use std::mem::MaybeUninit;

use ndarray::{Array4, ArrayView3, ArrayView4, ArrayViewMut4};
use rayon::prelude::*;

use self::kernel::{
    MAX_TILES, TileRowJob, Tiles, WinogradFamily, out_block, padded_out_channels, scratch_lens,
};
pub(crate) use self::kernel::{position_stride, sub, transform_tile};
use crate::isa::{Compiled, Isa};
use crate::kernels::{TASKS_PER_THREAD, forward_threads};
use crate::memory::aligned::AlignedFloats;
use crate::memory::layout::{PlaneLayout, lay_out_rows};
use crate::memory::scratch::with_scratch;
use crate::memory::shared_output::SharedOutput;
use crate::shape::geometry::GeometrySpec;

/// The filter size the family computes.
const K: usize = 3;

/// The fewest input and output channels for which the transforms pay for themselves.
const MIN_CHANNELS: usize = 16;

/// A 3x3 convolution packed for the Winograd kernel.
#[derive(Clone)]
pub(crate) struct Winograd {
    kernel: Compiled<WinogradFamily>,
    /// The convolution's zero padding above and left of the input (below and right, the
    /// output's size decides).
    pad: (usize, usize),
    dilation: (usize, usize),
    /// `G g G^T` of every filter, `[16][in_channels][out_channels rounded up]`.
    weights: AlignedFloats,
    out_channels: usize,
    /// For a strided layer run on its phases, how its outputs (transposed) or inputs
    /// (convolution) are laid out in the convolution this computes (`weights`, `pad`,
    /// `out_channels` are that convolution's).
    phases: Option<phases::Phases>,
    /// Whether this is a convolution of stride 2 run by the strided kernel (`strided`),
    /// `weights` its transform.
    strided: bool,
}

impl Winograd {
    /// The Winograd packing of a convolution of `spec` with `weight` (`[out_channels,
    /// in_channels / groups, kh, kw]`), on `isa` (the portable set where `isa` is not
    /// available), if the convolution is one the family runs: 3x3, stride 1, one group, at
    /// least `MIN_CHANNELS` channels in and out; or, at a stride above 1, if its input's
    /// phases make it such a convolution ([`phases::plan_strided`]).
    pub fn plan(
        isa: Isa,
        spec: GeometrySpec,
        weight: &Array4<f32>,
        groups: usize,
    ) -> Option<Winograd> {
        let strided_kernel = strided::fits(&spec, weight, groups)
            .then(|| strided::compiled(isa))
            .flatten();
        if let Some(kernel) = strided_kernel {
            return Some(Winograd {
                kernel,
                pad: spec.pad_before(),
                dilation: (1, 1),
                weights: AlignedFloats::from(strided::transform_weights(weight)),
                out_channels: weight.dim().0,
                phases: None,
                strided: true,
            });
        }
        if spec.stride != (1, 1) {
            return phases::plan_strided(isa, spec, weight, groups);
        }
        if !fits(spec, weight, groups) {
            return None;
        }
        Some(Winograd {
            kernel: Compiled::for_isa::<Tiles>(isa),
            pad: spec.pad_before(),
            dilation: spec.dilation,
            weights: AlignedFloats::from(transform_weights(weight)),
            out_channels: weight.dim().0,
            phases: None,
            strided: false,
        })
    }

    /// The Winograd packing of a transposed convolution of `spec` with `weight` (`[in_channels,
    /// out_channels / groups, kh, kw]`), under the same conditions as [`plan`](Self::plan),
    /// and padding of at most `2 * dilation`; or, at a stride above 1, if its phases are
    /// such convolutions ([`phases::plan`]).
    ///
    /// At stride 1, output `x` of the transposed convolution gathers input `x + pad - d * kx`
    /// times tap `kx`: the convolution with the filter turned around (tap `2 - kx`) and
    /// padding `2 * d - pad`, input and output channels swapped.
    pub fn plan_transposed(
        isa: Isa,
        spec: GeometrySpec,
        weight: &Array4<f32>,
        groups: usize,
    ) -> Option<Winograd> {
        if spec.stride != (1, 1) {
            return phases::plan(isa, spec, weight, groups);
        }
        let (pad_top, pad_left) = spec.pad_before();
        let reach = ((K - 1) * spec.dilation.0, (K - 1) * spec.dilation.1);
        if !fits(spec, weight, groups) || pad_top > reach.0 || pad_left > reach.1 {
            return None;
        }
        let (in_channels, out_channels, _, _) = weight.dim();
        let turned = Array4::from_shape_fn((out_channels, in_channels, K, K), |(o, i, y, x)| {
            weight[[i, o, K - 1 - y, K - 1 - x]]
        });
        Some(Winograd {
            kernel: Compiled::for_isa::<Tiles>(isa),
            pad: (reach.0 - pad_top, reach.1 - pad_left),
            dilation: spec.dilation,
            weights: AlignedFloats::from(transform_weights(&turned)),
            out_channels,
            phases: None,
            strided: false,
        })
    }

    /// Whether the family computes an output of `out_h x out_w` well: always without
    /// dilation; with it, where the lattice's tiles fill the kernel's blocks.
    pub fn suits(&self, (out_h, out_w): (usize, usize)) -> bool {
        self.dilation == (1, 1) || lattice::fills(out_h, out_w, self.dilation)
    }

    /// The convolution of a checked `input` into `output` (standard layout, of the checked
    /// shape), adding `bias` (one per channel).
    pub fn run(
        &self,
        bias: &[f32],
        input: &ArrayView4<f32>,
        output: &mut ArrayViewMut4<MaybeUninit<f32>>,
    ) {
        if self.strided {
            let weights = (&self.weights[..], self.out_channels);
            strided::run(self.kernel, weights, self.pad, bias, input, output);
        } else if let Some(phases) = &self.phases {
            phases::run(self, phases, bias, input, output);
        } else if self.dilation != (1, 1) {
            lattice::run(self, bias, input, output);
        } else {
            self.run_dense(bias, input, output);
        }
    }

    /// [`run`](Self::run) without dilation or phases: the convolution this packs, of the
    /// output's size.
    fn run_dense(
        &self,
        bias: &[f32],
        input: &ArrayView4<f32>,
        output: &mut ArrayViewMut4<MaybeUninit<f32>>,
    ) {
        let (_, channels, _, in_w) = input.dim();
        let (out_h, out_w) = (output.dim().2, output.dim().3);
        let (pad_top, pad_left) = self.pad;
        let (tile_rows, tiles) = (out_h.div_ceil(2), out_w.div_ceil(2));
        let out_padded = padded_out_channels(self.out_channels);
        // Counted as the direct convolution's, as the other families count.
        let threads = forward_threads(self.out_channels * channels * out_h * out_w * 9);
        // Tile row `r` reads padded rows `2r..2r + 4`. Each task, a run of consecutive tile
        // rows, lays out the rows it reads itself, into a buffer of its own, rather than
        // reading them from the whole image laid out first: on two threads that pass was a
        // parallel section of its own, and each thread's tile rows read planes the other had
        // written. The two rows a run shares with the next are laid out by both. Against
        // the whole image laid out first: unet-enc-b8's forward pass 8.18 -> 7.56 ms at two
        // threads, 14.28 -> 13.44 at one; unet-enc's 3.68 -> 3.31 and 6.55 -> 6.42 (Intel
        // Xeon, a busy hour, fastest of six to ten alternated `suite --only CASE --quick`
        // runs). Runs of a single tile row, each laying out its four rows, were level at one
        // thread; asking for the next run's rows ahead (a software prefetch) gained nothing.
        let run_len = tile_rows
            .div_ceil(threads * TASKS_PER_THREAD)
            .clamp(1, MAX_RUN_TILE_ROWS);
        // A block of tiles from `t` reads phase columns up to `t + 2 * LANES`.
        let layout = PlaneLayout {
            channels,
            rows: 2 * run_len + 2,
            col_phases: 2,
            phase_len: (tiles.next_multiple_of(MAX_TILES) + 1).max((pad_left + in_w).div_ceil(2)),
        };
        let plane = out_h * out_w;
        let channel_stride = layout.channel_stride();
        let row_stride = layout.row_stride();
        let phase_len = layout.phase_len;
        for (image, mut out_image) in input.outer_iter().zip(output.outer_iter_mut()) {
            let out = SharedOutput::of(&mut out_image);
            let run = |run: usize| {
                let tile_rows_here = run * run_len..((run + 1) * run_len).min(tile_rows);
                let prepared_len = layout.image_stride();
                let (transformed_len, products_len) = scratch_lens(channels, out_padded);
                with_scratch(prepared_len + transformed_len + products_len, |scratch| {
                    let (prepared, scratch) = scratch.split_at_mut(prepared_len);
                    let (transformed, products) = scratch.split_at_mut(transformed_len);
                    // Padded rows from `2 * tile_rows_here.start`, at source row `first_row`.
                    let first_row = (2 * tile_rows_here.start) as isize - pad_top as isize;
                    lay_out_rows_of_channels(&image, first_row, layout, pad_left, prepared);
                    for (index, tile_row) in tile_rows_here.clone().enumerate() {
                        let rows = (out_h - 2 * tile_row).min(2);
                        let mut slices: Vec<&mut [MaybeUninit<f32>]> = (0..2 * self.out_channels)
                            .map(|index| {
                                let (channel, row) = (index / 2, index % 2);
                                let len = if row < rows { out_w } else { 0 };
                                let start =
                                    channel * plane + (2 * tile_row + row.min(rows - 1)) * out_w;
                                // SAFETY: `out` points at this image's output, `plane *
                                // out_channels` floats in standard layout; row `2 * tile_row +
                                // row` (below `out_h`, or an empty slice) of `channel` is inside
                                // it. Each task writes only its own tile rows' output rows.
                                unsafe { out.slice(start, len) }
                            })
                            .collect();
                        // Laid-out row `2 * index + i` is the tile row's row `i`; padded
                        // column `2 * tile + j`, of column phase `j % 2` at `tile + j / 2`.
                        let mut job = TileRowJob {
                            input: prepared,
                            channels,
                            channel_stride,
                            rows: std::array::from_fn(|i| (2 * index + i.min(3)) * row_stride),
                            columns: [0, phase_len, 1, phase_len + 1, 0],
                            tiles,
                            weights: &self.weights,
                            out_channels: self.out_channels,
                            bias,
                            transformed,
                            products,
                            out: &mut slices,
                        };
                        self.kernel.run(&mut job);
                    }
                });
            };
            let runs = tile_rows.div_ceil(run_len);
            if threads == 1 {
                (0..runs).for_each(run);
            } else {
                (0..runs).into_par_iter().for_each(run);
            }
        }
    }
}

/// The most tile rows one task of the dense kernel computes: its laid-out rows (two per tile
/// row and two more) stay in L2 while it reads them.
const MAX_RUN_TILE_ROWS: usize = 8;

/// Lays out the padded rows `first_row..first_row + layout.rows` (source rows, zeros
/// outside) of every channel of `image` into `prepared` (`layout`'s planes), with `shift`
/// zero columns on the left.
fn lay_out_rows_of_channels(
    image: &ArrayView3<f32>,
    first_row: isize,
    layout: PlaneLayout,
    shift: usize,
    prepared: &mut [f32],
) {
    let planes = prepared.chunks_exact_mut(layout.channel_stride());
    for (source, target) in image.outer_iter().zip(planes) {
        lay_out_rows(&source, first_row, layout, shift, target);
    }
}

/// Whether a layer of `spec` with `weight` (either direction's shape: both dimensions are
/// channels) is one the family runs: 3x3, stride 1, one group, at least `MIN_CHANNELS`
/// channels in and out.
fn fits(spec: GeometrySpec, weight: &Array4<f32>, groups: usize) -> bool {
    let (channels_a, channels_b, kh, kw) = weight.dim();
    (kh, kw) == (K, K)
        && spec.stride == (1, 1)
        && groups == 1
        && channels_a >= MIN_CHANNELS
        && channels_b >= MIN_CHANNELS
}

/// `G g G^T` of each 3x3 filter `g = weight[k][c]`, computed in `f64`, laid out
/// `[16][k / block][c][k % block]` with the output channels rounded up by
/// [`padded_out_channels`] (zero filters), `block` their [`out_block`].
// Indices, as in the matrices the transform applies.
#[allow(clippy::needless_range_loop)]
fn transform_weights(weight: &Array4<f32>) -> Vec<f32> {
    let (out_channels, in_channels, _, _) = weight.dim();
    let padded = padded_out_channels(out_channels);
    let block = out_block(padded);
    let mut transformed = vec![0.0f32; 16 * in_channels * padded];
    // G = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]].
    let g_times = |v: [f64; 3]| {
        [
            v[0],
            (v[0] + v[1] + v[2]) / 2.0,
            (v[0] - v[1] + v[2]) / 2.0,
            v[2],
        ]
    };
    for k in 0..out_channels {
        for c in 0..in_channels {
            let g = |i: usize, j: usize| f64::from(weight[[k, c, i, j]]);
            // G g: each column of g through G.
            let columns: [[f64; 4]; 3] =
                std::array::from_fn(|j| g_times([g(0, j), g(1, j), g(2, j)]));
            for i in 0..4 {
                // (G g) G^T: each row of G g through G.
                let row = g_times([columns[0][i], columns[1][i], columns[2][i]]);
                for (j, &value) in row.iter().enumerate() {
                    let position = (i * 4 + j) * in_channels * padded;
                    let at = position + (k / block * in_channels + c) * block + k % block;
                    transformed[at] = value as f32;
                }
            }
        }
    }
    transformed
}
