//! The two-tap family: transposed convolutions whose filter is two strides wide (`k = 2s`:
//! the 4x4 upsamplers of stride 2 in DCGAN's and pix2pix's generators, dcgan-up of the
//! suite), by Winograd's F(2x2, 2x2) on each phase.
//!
//! Output `y` of a transposed convolution of stride `s` and padding `p` gathers input `iy`
//! times tap `ky` where `y + p = s * iy + ky`. Writing `y + p = s * q + r` (`r < s`), the
//! taps it takes are `ky = r` (input `q`) and `ky = r + s` (input `q - 1`): the outputs of
//! phase `r` are a 2-tap correlation of the input over `q`, and in two dimensions each of
//! the `s * s` phases is a 2x2 convolution. F(2x2, 2x2) computes a 2x2 tile of such a
//! convolution from its 3x3 input tile with 9 products per input and output channel where
//! the direct convolution takes 16; its transforms only add and subtract (`B^T = [[1, -1,
//! 0], [0, 1, 0], [0, -1, 1]]`, `G = [[1, 0], [1, 1], [0, 1]]`, `A^T = [[1, 1, 0], [0, 1,
//! 1]]`), so the sums stay as accurate as the direct ones.
//!
//! The row kernel ran dcgan-up (16x16 input) with rows of 16 pixels, short for its vectors;
//! here the products are vectorised over output channels, each tile's transformed input
//! value broadcast (a small matrix product per position, as in a GEMM micro-kernel), so the
//! size of the image does not matter: the input is laid out channels last once per call,
//! every task transforms the tiles of its block of one phase, multiplies, transforms back,
//! and writes its outputs `s` apart.
//!
//! Compiled once, in this crate, for every instruction set: no build cost per geometry.

mod kernel;

use std::mem::MaybeUninit;

use ndarray::{Array4, ArrayView3, ArrayView4, ArrayViewMut4};
use rayon::prelude::*;

use self::kernel::{
    BLOCK_TILES, CHANNEL_ALIGN, POSITIONS, TileBlock, TileBlockFamily, TileBlockJob,
};
use crate::isa::{Compiled, Isa};
use crate::kernels::{TASKS_PER_THREAD, forward_threads};
use crate::memory::scratch::with_scratch;
use crate::memory::shared_output::SharedOutput;
use crate::shape::geometry::{GeometrySpec, PaddingMode};

/// The fewest input and output channels for which the transforms pay for themselves and
/// the output channels fill a vector.
const MIN_CHANNELS: usize = 16;

/// A transposed convolution whose filter is two strides wide, packed for the tile kernel.
#[derive(Clone)]
pub(crate) struct TwoTap {
    kernel: Compiled<TileBlockFamily>,
    stride: (usize, usize),
    /// The padding above and left of the output.
    pad: (usize, usize),
    /// `G g G^T` of each phase's 2x2 filters, `[phase][position][in channel][out channel]`,
    /// both channel counts padded to `CHANNEL_ALIGN` with zeros.
    weights: Vec<f32>,
    in_channels: usize,
    out_channels: usize,
}

/// One axis of one phase: its outputs are `first_output + s * k` for `k < count`, output `k`
/// at grid index `first_q + k`, reading inputs `q - 1` and `q`.
#[derive(Clone, Copy, Debug)]
struct PhaseAxis {
    first_output: usize,
    first_q: usize,
    count: usize,
}

impl PhaseAxis {
    /// Phase `r`'s outputs along an axis of `outputs` with stride `s` and padding `pad`.
    fn new(r: usize, s: usize, pad: usize, outputs: usize) -> PhaseAxis {
        // The first output `y` with `(y + pad) % s == r`.
        let first_output = (r + s - pad % s) % s;
        PhaseAxis {
            first_output,
            first_q: (first_output + pad) / s,
            count: outputs.saturating_sub(first_output).div_ceil(s),
        }
    }

    /// 2-output tiles along the axis.
    fn tiles(&self) -> usize {
        self.count.div_ceil(2)
    }
}

impl TwoTap {
    /// The tile kernel's packing of a transposed convolution of `spec` with `weight`
    /// (`[in_channels, out_channels, kh, kw]`), on `isa` (the portable set where `isa` is
    /// not available), if its filter is two strides wide on both axes, with one group, no
    /// dilation, zero padding, and at least `MIN_CHANNELS` channels in and out.
    pub fn plan(
        isa: Isa,
        spec: GeometrySpec,
        weight: &Array4<f32>,
        groups: usize,
    ) -> Option<TwoTap> {
        let (in_channels, out_channels, kh, kw) = weight.dim();
        let (sh, sw) = spec.stride;
        let fits = groups == 1
            && spec.dilation == (1, 1)
            && spec.padding_mode == PaddingMode::Zeros
            && (kh, kw) == (2 * sh, 2 * sw)
            && in_channels >= MIN_CHANNELS
            && out_channels >= MIN_CHANNELS;
        if !fits {
            return None;
        }
        let (in_padded, out_padded) = (
            in_channels.next_multiple_of(CHANNEL_ALIGN),
            out_channels.next_multiple_of(CHANNEL_ALIGN),
        );
        let mut weights = vec![0.0f32; sh * sw * POSITIONS * in_padded * out_padded];
        for ry in 0..sh {
            for rx in 0..sw {
                let phase = ry * sw + rx;
                for c in 0..in_channels {
                    for o in 0..out_channels {
                        // Tap `t` of the phase's filter reads input `q - 1 + t`: tap
                        // `r + s * (1 - t)` of the layer's.
                        let filter = std::array::from_fn(|ty| {
                            std::array::from_fn(|tx| {
                                f64::from(weight[[c, o, ry + sh * (1 - ty), rx + sw * (1 - tx)]])
                            })
                        });
                        let transformed = transform_filter(filter);
                        for (position, &value) in transformed.iter().flatten().enumerate() {
                            let at =
                                ((phase * POSITIONS + position) * in_padded + c) * out_padded + o;
                            weights[at] = value as f32;
                        }
                    }
                }
            }
        }
        Some(TwoTap {
            kernel: Compiled::for_isa::<TileBlock>(isa),
            stride: spec.stride,
            pad: spec.pad_before(),
            weights,
            in_channels,
            out_channels,
        })
    }

    /// The transposed convolution of a checked `input` into `output` (standard layout, of
    /// the checked shape), adding `bias` (one per output channel).
    pub fn run(
        &self,
        bias: &[f32],
        input: &ArrayView4<f32>,
        output: &mut ArrayViewMut4<MaybeUninit<f32>>,
    ) {
        let (batch, in_channels, in_h, in_w) = input.dim();
        let (out_h, out_w) = (output.dim().2, output.dim().3);
        assert_eq!(in_channels, self.in_channels);
        let (sh, sw) = self.stride;
        let (in_padded, out_padded) = (
            in_channels.next_multiple_of(CHANNEL_ALIGN),
            self.out_channels.next_multiple_of(CHANNEL_ALIGN),
        );
        let rows: Vec<PhaseAxis> = (0..sh)
            .map(|r| PhaseAxis::new(r, sh, self.pad.0, out_h))
            .collect();
        let columns: Vec<PhaseAxis> = (0..sw)
            .map(|r| PhaseAxis::new(r, sw, self.pad.1, out_w))
            .collect();
        // A tile at grid `(q, q')` reads inputs `q - 1..q + 2`: laid out one zero row and
        // column in, at pixel `(q, q')` on, as far as the furthest tile reads or the input
        // reaches.
        let reach = |axes: &[PhaseAxis], inputs: usize| {
            axes.iter()
                .map(|axis| axis.first_q + 2 * axis.tiles() + 1)
                .max()
                .unwrap_or(0)
                .max(inputs + 1)
        };
        let (layout_rows, layout_columns) = (reach(&rows, in_h), reach(&columns, in_w));
        let pixel_row = layout_columns * in_padded;
        let image_len = layout_rows * pixel_row;
        let mut bias_padded = bias.to_vec();
        bias_padded.resize(out_padded, 0.0);

        // Tasks: (image, phase, block of the phase's tiles in row-major order).
        let phases: Vec<(PhaseAxis, PhaseAxis)> = rows
            .iter()
            .flat_map(|&row| columns.iter().map(move |&column| (row, column)))
            .collect();
        let blocks: Vec<usize> = phases
            .iter()
            .map(|(row, column)| (row.tiles() * column.tiles()).div_ceil(BLOCK_TILES))
            .collect();
        let tasks: Vec<(usize, usize)> = blocks
            .iter()
            .enumerate()
            .flat_map(|(phase, &count)| (0..count).map(move |block| (phase, block)))
            .collect();
        let out = SharedOutput(
            output
                .as_slice_mut()
                .expect("output is in standard layout")
                .as_mut_ptr(),
        );
        let out_plane = out_h * out_w;
        let multiply_adds = batch * in_channels * self.out_channels * out_plane * 4;
        let threads = forward_threads(multiply_adds);
        let phase_weights = POSITIONS * in_padded * out_padded;

        with_scratch(image_len, |laid_out| {
            for (image, input) in input.outer_iter().enumerate() {
                lay_out_channels_last(&input, laid_out, (layout_columns, in_padded), threads);
                let laid_out = &*laid_out;
                let task = |&(phase, block): &(usize, usize)| {
                    let (row, column) = phases[phase];
                    let tiles_across = column.tiles();
                    let first = block * BLOCK_TILES;
                    let count = BLOCK_TILES.min(row.tiles() * tiles_across - first);
                    // Each tile's grid position and its input tile's top-left pixel.
                    let grid: Vec<(usize, usize)> = (first..first + count)
                        .map(|t| (t / tiles_across, t % tiles_across))
                        .collect();
                    let tiles: Vec<usize> = grid
                        .iter()
                        .map(|&(ty, tx)| {
                            (row.first_q + 2 * ty) * layout_columns + column.first_q + 2 * tx
                        })
                        .collect();
                    let transformed_len = POSITIONS * BLOCK_TILES * in_padded;
                    let products_len = POSITIONS * BLOCK_TILES * out_padded;
                    let results_len = BLOCK_TILES * 4 * out_padded;
                    with_scratch(transformed_len + products_len + results_len, |scratch| {
                        let (transformed, rest) = scratch.split_at_mut(transformed_len);
                        let (products, results) = rest.split_at_mut(products_len);
                        self.kernel.run(&mut TileBlockJob {
                            input: laid_out,
                            channels: in_padded,
                            columns: layout_columns,
                            tiles: &tiles,
                            weights: &self.weights[phase * phase_weights..][..phase_weights],
                            bias: &bias_padded,
                            transformed,
                            products,
                            out: results,
                        });
                        // Where each tile's corners go in a channel's output plane: a
                        // channel at a time, so that the stores stay in one plane.
                        let targets: Vec<(usize, usize)> = grid
                            .iter()
                            .enumerate()
                            .flat_map(|(t, &(ty, tx))| {
                                (0..4).filter_map(move |corner| {
                                    let (ky, kx) = (2 * ty + corner / 2, 2 * tx + corner % 2);
                                    (ky < row.count && kx < column.count).then(|| {
                                        let y = row.first_output + ky * sh;
                                        let x = column.first_output + kx * sw;
                                        ((t * 4 + corner) * out_padded, y * out_w + x)
                                    })
                                })
                            })
                            .collect();
                        for o in 0..self.out_channels {
                            let plane = (image * self.out_channels + o) * out_plane;
                            // SAFETY: `out` points at the whole output, `batch * out_channels
                            // * out_plane` floats in standard layout, and this is channel
                            // `o`'s plane of `image`. Tasks write disjoint outputs of it
                            // (each output belongs to one phase and one tile of it), but
                            // interleaved: only single elements are written through the
                            // slice, never read, each by one task.
                            let plane = unsafe { out.slice(plane, out_plane) };
                            for &(from, to) in &targets {
                                plane[to].write(results[from + o]);
                            }
                        }
                    });
                };
                if threads == 1 || tasks.len() < 2 {
                    tasks.iter().for_each(task);
                } else {
                    let per_task = tasks.len().div_ceil(threads * TASKS_PER_THREAD);
                    tasks
                        .par_chunks(per_task.max(1))
                        .for_each(|chunk| chunk.iter().for_each(task));
                }
            }
        });
    }
}

/// `G g G^T` of a 2x2 filter `g`, `G = [[1, 0], [1, 1], [0, 1]]`, row by row.
fn transform_filter(g: [[f64; 2]; 2]) -> [[f64; 3]; 3] {
    let g_times = |v: [f64; 2]| [v[0], v[0] + v[1], v[1]];
    // G g, column by column...
    let columns = [g_times([g[0][0], g[1][0]]), g_times([g[0][1], g[1][1]])];
    // ... then each row of it through G.
    std::array::from_fn(|i| g_times([columns[0][i], columns[1][i]]))
}

/// One image, `[channel][row][column]`, into `target` channels last: pixel `(row + 1,
/// column + 1)` of `(columns, channels)` per row holds the input's `(row, column)`, every
/// other value zero.
fn lay_out_channels_last(
    input: &ArrayView3<f32>,
    target: &mut [f32],
    (columns, channels): (usize, usize),
    threads: usize,
) {
    let (in_channels, in_h, in_w) = input.dim();
    let pixel_row = columns * channels;
    let input = input.as_standard_layout();
    let input = input.as_slice().expect("standard layout");
    let plane = in_h * in_w;
    let lay_out_row = |(row, target): (usize, &mut [f32])| {
        target.fill(0.0);
        if row == 0 || row > in_h {
            return;
        }
        // Pixel by pixel, its channels in order: the stores run on, the loads read `in_w`
        // floats of each channel's row.
        let first = (row - 1) * in_w;
        for x in 0..in_w {
            let pixel = &mut target[(x + 1) * channels..][..in_channels];
            for (c, value) in pixel.iter_mut().enumerate() {
                *value = input[c * plane + first + x];
            }
        }
    };
    if threads > 1 {
        target
            .par_chunks_mut(pixel_row)
            .enumerate()
            .for_each(lay_out_row);
    } else {
        target
            .chunks_mut(pixel_row)
            .enumerate()
            .for_each(lay_out_row);
    }
}
