//! The two-tap family: layers whose filter is two strides wide (`k = 2s`: the 4x4
//! upsamplers of stride 2 in DCGAN's and pix2pix's generators, dcgan-up of the suite, and
//! the 4x4 downsamplers of their discriminators, which are those layers' input gradients),
//! by Winograd's F(2x2, 2x2).
//!
//! Output `y` of a transposed convolution of stride `s` and padding `p` gathers input `iy`
//! times tap `ky` where `y + p = s * iy + ky`. Writing `y + p = s * q + r` (`r < s`), the
//! taps it takes are `ky = r` (input `q`) and `ky = r + s` (input `q - 1`): the outputs of
//! phase `r` are a 2-tap correlation of the input over `q`, and in two dimensions each of
//! the `s * s` phases is a 2x2 convolution. A convolution of that geometry is the adjoint:
//! output `q` reads input `s * (q + j) + r - p` times tap `r + s * j` (`j < 2`), a 2x2
//! convolution of the grid whose channel `(r, c)` holds input channel `c`'s phase `r`.
//!
//! F(2x2, 2x2) computes a 2x2 tile of a 2x2 convolution from its 3x3 input tile with 9
//! products per input and output channel where the direct convolution takes 16; its
//! transforms only add and subtract (`B^T = [[1, -1, 0], [0, 1, 0], [0, -1, 1]]`, `G = [[1,
//! 0], [1, 1], [0, 1]]`, `A^T = [[1, 1, 0], [0, 1, 1]]`), so the sums stay as accurate as
//! the direct ones.
//!
//! The row kernel ran dcgan-up (16x16 input) with rows of 16 pixels, short for its vectors;
//! here the products are vectorised over output channels, each tile's transformed input
//! value broadcast (a small matrix product per position, as in a GEMM micro-kernel), so the
//! size of the image does not matter: the input is laid out channels last once per call,
//! and every task takes a block of tile rows of one row phase, in every column phase: it
//! transforms their tiles, multiplies, transforms back, and writes whole output rows. The
//! kernel leaves its results channels last; a row's are turned into a run per channel (the
//! transposition in registers) and the column phases' runs woven into the output row, in
//! vectors. Written a value at a time, channel by channel, `s` apart, the outputs had been
//! 6% of dcgan-up's samples at one thread and 11% at two (Intel Xeon, `perf record`); now
//! the transposition and the weave are 4% at either.
//!
//! Compiled once, in this crate, for every instruction set: no build cost per geometry.

mod kernel;

use std::mem::MaybeUninit;
use std::ops::Range;

use ndarray::{Array4, ArrayView3, ArrayView4, ArrayViewMut4};
use rayon::prelude::*;

use self::kernel::{
    BLOCK_TILES, CHANNEL_ALIGN, POSITIONS, TileBlock, TileBlockFamily, TileBlockJob,
};
use crate::isa::{Compiled, Isa};
use crate::kernels::row::prepare::each_channel;
use crate::kernels::{TASKS_PER_THREAD, forward_threads};
use crate::memory::aligned::AlignedFloats;
use crate::memory::layout::{contiguous, split_row};
use crate::memory::scratch::with_scratch;
use crate::memory::shared_output::SharedOutput;
use crate::memory::transpose::{Transpose, TransposeFamily, TransposeJob};
use crate::memory::weave::{Weave, WeaveFamily, WeaveJob, weaves, write_rows};
use crate::shape::geometry::{GeometrySpec, PaddingMode};

/// The fewest input and output channels for which the transforms pay for themselves and
/// the output channels fill a vector.
const MIN_CHANNELS: usize = 16;

/// A layer whose filter is two strides wide, packed for the tile kernel.
#[derive(Clone)]
pub(crate) struct TwoTap {
    kernel: Compiled<TileBlockFamily>,
    /// Turns the kernel's results (channels last) into output rows' runs, and a
    /// convolution's input into its channels-last grid.
    transpose: Compiled<TransposeFamily>,
    /// Weaves the column phases' runs into output rows, where there are 2, 4 or 8 of them.
    /// (Made with the plan, as every kernel here, not where it runs: so a program links it
    /// only where one of its geometries can run the family, which the engine decides at
    /// compile time.)
    weave: Option<Compiled<WeaveFamily>>,
    /// [`TwoTap::drive`], named by the plans only: a program whose geometries cannot run
    /// the family (its engine never calls a plan) links none of the driver's code either,
    /// where the engine's call to [`run`](TwoTap::run) linked it into every program (26
    /// KB of the build-cost script's one-geometry binary, a 3x3 convolution).
    driver: Driver,
    direction: Direction,
    stride: (usize, usize),
    /// The padding above and left of the output (transposed) or the input (convolution).
    pad: (usize, usize),
    /// `G g G^T` of each phase's 2x2 filters, `[phase][position][channel][out channel]`,
    /// both channel counts padded to `CHANNEL_ALIGN` with zeros: a phase per output phase
    /// of a transposed layer; one for a convolution, whose channels are its input's phases.
    weights: AlignedFloats,
    /// The channels the products sum over: the input's, times `s * s` for a convolution.
    channels: usize,
    out_channels: usize,
}

/// The family's driver, as a function pointer.
type Driver = fn(&TwoTap, &[f32], &ArrayView4<f32>, &mut ArrayViewMut4<MaybeUninit<f32>>);

/// Which way the taps go.
#[derive(Clone, Copy)]
enum Direction {
    /// A transposed convolution: each output phase a 2x2 convolution of the input.
    Transposed,
    /// A convolution: one 2x2 convolution of the input's phases, as channels, laid out
    /// channels last by the transposition. (A transposed layer's layout stores one
    /// channel's row after another into pixels: level with the transposition on dcgan-up's
    /// forward.)
    Convolution,
}

/// One axis of one output phase: its outputs are `first_output + step * k` for `k <
/// count`, output `k` at grid index `first_q + k`, reading grid pixels `first_q + k..` on.
/// (Of a convolution's input, the same arithmetic finds each phase's columns in the grid.)
#[derive(Clone, Copy, Debug)]
struct PhaseAxis {
    first_output: usize,
    first_q: usize,
    count: usize,
}

impl PhaseAxis {
    /// Phase `r`'s outputs along an axis of `outputs` of a transposed convolution with
    /// stride `s` and padding `pad`.
    fn new(r: usize, s: usize, pad: usize, outputs: usize) -> PhaseAxis {
        // The first output `y` with `(y + pad) % s == r`.
        let first_output = (r + s - pad % s) % s;
        PhaseAxis {
            first_output,
            first_q: (first_output + pad) / s,
            count: outputs.saturating_sub(first_output).div_ceil(s),
        }
    }

    /// Every one of `outputs`, as a convolution's single phase.
    fn all(outputs: usize) -> PhaseAxis {
        PhaseAxis {
            first_output: 0,
            first_q: 0,
            count: outputs,
        }
    }

    /// 2-output tiles along the axis.
    fn tiles(&self) -> usize {
        self.count.div_ceil(2)
    }

    /// Grid pixels the tiles read: up to the last tile's third.
    fn reach(&self) -> usize {
        self.first_q + 2 * self.tiles() + 1
    }
}

impl TwoTap {
    /// Whether layers of geometry `spec` can run the family, whatever their channels: a
    /// filter two strides wide, no dilation, zero padding. A `const fn`, so that the engine
    /// decides it at compile time.
    pub const fn suits_geometry(spec: &GeometrySpec) -> bool {
        let ((kh, kw), (sh, sw)) = (spec.kernel_size, spec.stride);
        kh == 2 * sh
            && kw == 2 * sw
            && spec.dilation.0 == 1
            && spec.dilation.1 == 1
            && matches!(spec.padding_mode, PaddingMode::Zeros)
    }

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
        if !fits(&spec, (kh, kw), groups, (in_channels, out_channels)) {
            return None;
        }
        let (sh, sw) = spec.stride;
        // Phase `(ry, rx)`'s tap `t` reads input `q - 1 + t`: tap `r + s * (1 - t)` of the
        // layer's.
        let weights = packed(
            (sh * sw, in_channels, out_channels),
            |phase, c, o, ty, tx| {
                let (ry, rx) = (phase / sw, phase % sw);
                weight[[c, o, ry + sh * (1 - ty), rx + sw * (1 - tx)]]
            },
        );
        Some(TwoTap {
            kernel: Compiled::for_isa::<TileBlock>(isa),
            transpose: Compiled::for_isa::<Transpose>(isa),
            weave: weaves(sw).then(|| Compiled::for_isa::<Weave>(isa)),
            driver: TwoTap::drive,
            direction: Direction::Transposed,
            stride: spec.stride,
            pad: spec.pad_before(),
            weights: AlignedFloats::from(weights),
            channels: in_channels,
            out_channels,
        })
    }

    /// The tile kernel's packing of a convolution of `spec` with `weight` (`[out_channels,
    /// in_channels, kh, kw]`), under the same conditions as [`plan`](Self::plan).
    pub fn plan_conv(
        isa: Isa,
        spec: GeometrySpec,
        weight: &Array4<f32>,
        groups: usize,
    ) -> Option<TwoTap> {
        let (out_channels, in_channels, kh, kw) = weight.dim();
        if !fits(&spec, (kh, kw), groups, (in_channels, out_channels)) {
            return None;
        }
        let (sh, sw) = spec.stride;
        let phases = sh * sw;
        // Grid channel `(ry * sw + rx) * in_channels + c`, tap `(jy, jx)`: the layer's
        // `(ry + s * jy, rx + s * jx)`.
        let weights = packed(
            (1, phases * in_channels, out_channels),
            |_, channel, o, jy, jx| {
                let (phase, c) = (channel / in_channels, channel % in_channels);
                let (ry, rx) = (phase / sw, phase % sw);
                weight[[o, c, ry + sh * jy, rx + sw * jx]]
            },
        );
        Some(TwoTap {
            kernel: Compiled::for_isa::<TileBlock>(isa),
            transpose: Compiled::for_isa::<Transpose>(isa),
            // One column phase: each staged row is its output row's segment.
            weave: None,
            driver: TwoTap::drive,
            direction: Direction::Convolution,
            stride: spec.stride,
            pad: spec.pad_before(),
            weights: AlignedFloats::from(weights),
            channels: phases * in_channels,
            out_channels,
        })
    }

    /// The layer on a checked `input` into `output` (standard layout, of the checked
    /// shape), adding `bias` (one per output channel).
    pub fn run(
        &self,
        bias: &[f32],
        input: &ArrayView4<f32>,
        output: &mut ArrayViewMut4<MaybeUninit<f32>>,
    ) {
        (self.driver)(self, bias, input, output);
    }

    /// [`run`](Self::run)'s body, reached through [`TwoTap::driver`].
    fn drive(
        &self,
        bias: &[f32],
        input: &ArrayView4<f32>,
        output: &mut ArrayViewMut4<MaybeUninit<f32>>,
    ) {
        let (batch, in_channels, in_h, in_w) = input.dim();
        let (out_h, out_w) = (output.dim().2, output.dim().3);
        let (sh, sw) = self.stride;
        let (channels, out_padded) = (
            self.channels.next_multiple_of(CHANNEL_ALIGN),
            self.out_channels.next_multiple_of(CHANNEL_ALIGN),
        );
        // Each output phase's rows and columns, how far apart its outputs are, and how far
        // its tiles read the laid-out grid (for a transposed layer: the input, one zero row
        // and column in, as far as the furthest tile reads or the input reaches).
        let (rows, columns, step, grid) = match self.direction {
            Direction::Transposed => {
                assert_eq!(in_channels, self.channels);
                let rows: Vec<PhaseAxis> = (0..sh)
                    .map(|r| PhaseAxis::new(r, sh, self.pad.0, out_h))
                    .collect();
                let columns: Vec<PhaseAxis> = (0..sw)
                    .map(|r| PhaseAxis::new(r, sw, self.pad.1, out_w))
                    .collect();
                let reach = |axes: &[PhaseAxis], inputs: usize| {
                    axes.iter()
                        .map(PhaseAxis::reach)
                        .max()
                        .unwrap_or(0)
                        .max(inputs + 1)
                };
                let grid = (reach(&rows, in_h), reach(&columns, in_w));
                (rows, columns, (sh, sw), grid)
            }
            Direction::Convolution => {
                assert_eq!(in_channels * sh * sw, self.channels);
                let (rows, columns) = (PhaseAxis::all(out_h), PhaseAxis::all(out_w));
                (
                    vec![rows],
                    vec![columns],
                    (1, 1),
                    (rows.reach(), columns.reach()),
                )
            }
        };
        // Pixels an odd number of cache lines apart: a power of two (16 x 16 x 512 floats)
        // put the pixels a layout loop writes (and a tile's columns) into a few L1 sets.
        let pixel = ((channels / CHANNEL_ALIGN) | 1) * CHANNEL_ALIGN;
        let image_len = grid.0 * grid.1 * pixel;
        let mut bias_padded = bias.to_vec();
        bias_padded.resize(out_padded, 0.0);

        let out = SharedOutput::of(output);
        let out_plane = out_h * out_w;
        // The direct layer's: four taps per output for each channel the products sum over.
        let multiply_adds = batch * self.channels * self.out_channels * out_plane * 4;
        let threads = forward_threads(multiply_adds);
        // Tasks: blocks of tile rows of one row phase, in every column phase, image by
        // image; at least one a thread. (Two a thread, in blocks of half the tiles, ran
        // dcgan-up's forward at two threads in 0.81 ms against 0.75 with one a thread, its
        // backward in 1.80 against 1.69: Intel Xeon, fastest of ten alternated runs.)
        let tasks = blocks(&rows, &columns, threads);
        // The column phases in the order of their first output's column, which is the
        // order of their runs in a staged row.
        // (Their first outputs are the columns `0..sw`, each once.)
        let mut by_class = vec![0; columns.len()];
        for (c, column) in columns.iter().enumerate() {
            by_class[column.first_output] = c;
        }
        let phase_weights = POSITIONS * channels * out_padded;
        let transformed_len = POSITIONS * BLOCK_TILES * channels;
        let products_len = POSITIONS * BLOCK_TILES * out_padded;
        // One cache line more than the channels: each output's channel `o` in another
        // cache set (with 128 channels, every one in the same set as the rest, the
        // channel-by-channel scatter that came before the transposition took a tenth of
        // dcgan-up's time).
        let out_stride = out_padded + CHANNEL_ALIGN;
        let results_len = 4 * BLOCK_TILES * out_stride;

        with_scratch(image_len, |laid_out| {
            for (image, input) in input.outer_iter().enumerate() {
                let layout = (grid.1, pixel);
                match self.direction {
                    Direction::Transposed => {
                        lay_out_shifted(&input, laid_out, layout, threads);
                    }
                    Direction::Convolution => {
                        let geometry = (self.stride, self.pad);
                        let on = (threads, self.transpose);
                        lay_out_phases(&input, laid_out, layout, geometry, on);
                    }
                }
                let laid_out = &*laid_out;
                let task = |block: &Block| {
                    let row = rows[block.row_phase];
                    let (first_tile, end_tile) = (block.tile_columns.start, block.tile_columns.end);
                    // Each column phase's tiles across the block, and its outputs along an
                    // output row of it.
                    let widths: Vec<usize> = columns
                        .iter()
                        .map(|column| column.tiles().min(end_tile).saturating_sub(first_tile))
                        .collect();
                    let counts: Vec<usize> = columns
                        .iter()
                        .map(|column| {
                            column
                                .count
                                .min(2 * end_tile)
                                .saturating_sub(2 * first_tile)
                        })
                        .collect();
                    // The block's output columns, `2 * sw` a tile (its tiles' outputs in
                    // every column phase), and where each phase's run starts in a staged
                    // row of them.
                    let segment = 2 * step.1 * first_tile..out_w.min(2 * step.1 * end_tile);
                    let mut runs = Vec::with_capacity(columns.len());
                    let mut staged_row = 0;
                    for &c in &by_class {
                        runs.push(staged_row);
                        staged_row += counts[c];
                    }
                    debug_assert_eq!(staged_row, segment.len());
                    let staged_at: Vec<usize> = (0..segment.len())
                        .map(|x| runs[x % columns.len()] + x / columns.len())
                        .collect();
                    let shortest = counts.iter().copied().min().unwrap_or(0);
                    let staged_len = self.out_channels * staged_row;
                    let results_all = columns.len() * results_len;
                    let scratch_len = transformed_len + products_len + results_all + staged_len;
                    with_scratch(scratch_len, |scratch| {
                        let (transformed, rest) = scratch.split_at_mut(transformed_len);
                        let (products, rest) = rest.split_at_mut(products_len);
                        let (results, staged) = rest.split_at_mut(results_all);
                        let phase_results = results.chunks_exact_mut(results_len);
                        for ((c, column), results) in columns.iter().enumerate().zip(phase_results)
                        {
                            let tiles: Vec<usize> = block
                                .tile_rows
                                .clone()
                                .flat_map(|ty| {
                                    let left = (row.first_q + 2 * ty) * grid.1 + column.first_q;
                                    (first_tile..first_tile + widths[c])
                                        .map(move |tx| left + 2 * tx)
                                })
                                .collect();
                            if tiles.is_empty() {
                                continue;
                            }
                            let phase = block.row_phase * columns.len() + c;
                            self.kernel.run(&mut TileBlockJob {
                                input: laid_out,
                                channels,
                                pixel,
                                columns: grid.1,
                                tiles: &tiles,
                                weights: &self.weights[phase * phase_weights..][..phase_weights],
                                bias: &bias_padded,
                                transformed: &mut *transformed,
                                products: &mut *products,
                                out: results,
                                out_stride,
                            });
                        }
                        let results = &*results;
                        // Output row by output row: each phase's run of it turned from
                        // channels last into a run per channel, the runs woven into the
                        // output rows (a column phase's outputs are `sw` apart).
                        for (local, ty) in block.tile_rows.clone().enumerate() {
                            for a in 0..2 {
                                let ky = 2 * ty + a;
                                if ky >= row.count {
                                    break;
                                }
                                for (&c, &run) in by_class.iter().zip(&runs) {
                                    if counts[c] == 0 {
                                        continue;
                                    }
                                    // The kernel's results hold tile row `local`'s outputs
                                    // of row `a` in column order.
                                    let first = 2 * (a * BLOCK_TILES + local * widths[c]);
                                    let results = &results[c * results_len..][..results_len];
                                    self.transpose.run(&mut TransposeJob {
                                        stage: &results[first * out_stride..],
                                        stride: out_stride,
                                        channels: counts[c],
                                        block: staged_row,
                                        offset: run,
                                        target: &mut staged[..staged_len],
                                    });
                                }
                                let y = row.first_output + step.0 * ky;
                                let start = y * out_w + segment.start;
                                let mut out_rows: Vec<Option<&mut [MaybeUninit<f32>]>> = (0..self
                                    .out_channels)
                                    .map(|o| {
                                        let plane = (image * self.out_channels + o) * out_plane;
                                        // SAFETY: `out` points at the whole output, `batch *
                                        // out_channels * out_plane` floats in standard
                                        // layout; columns `segment` (below `out_w`) of row
                                        // `y` (below `out_h`) of channel `o` of `image` are
                                        // inside it. Each output row's segment belongs to
                                        // one block of one row phase, whose task writes it
                                        // once; no other slice of it is live.
                                        Some(unsafe { out.slice(plane + start, segment.len()) })
                                    })
                                    .collect();
                                let staged = &staged[..staged_len];
                                write_rows(
                                    self.weave,
                                    &mut WeaveJob {
                                        staged,
                                        staged_row,
                                        runs: &runs,
                                        shortest,
                                        staged_at: &staged_at,
                                        out: &mut out_rows,
                                    },
                                );
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

/// A task's tiles, of one image: tile rows `tile_rows` of row phase `row_phase`, and of
/// each the tiles `tile_columns`, in every column phase.
struct Block {
    row_phase: usize,
    tile_rows: Range<usize>,
    tile_columns: Range<usize>,
}

/// The tasks of one image: whole rows of tiles, as many as a kernel call takes
/// (`BLOCK_TILES` of each column phase) but few enough to make `least` tasks where there
/// are rows for them, or, where a phase's row of tiles holds more than a call takes,
/// pieces of one row, as even as can be.
fn blocks(rows: &[PhaseAxis], columns: &[PhaseAxis], least: usize) -> Vec<Block> {
    let across = columns.iter().map(PhaseAxis::tiles).max().unwrap_or(0);
    if across == 0 {
        return Vec::new();
    }
    let pieces = across.div_ceil(BLOCK_TILES);
    let piece = across.div_ceil(pieces);
    let tile_rows: usize = rows.iter().map(PhaseAxis::tiles).sum();
    let for_tasks = (tile_rows * pieces / least.max(1)).max(1);
    let rows_per_block = (BLOCK_TILES / across).min(for_tasks).max(1);
    rows.iter()
        .enumerate()
        .flat_map(|(row_phase, row)| {
            let tile_rows = row.tiles();
            let groups = tile_rows.div_ceil(rows_per_block).max(1);
            let per_group = tile_rows.div_ceil(groups).max(1);
            (0..tile_rows).step_by(per_group).flat_map(move |first| {
                (0..across).step_by(piece).map(move |left| Block {
                    row_phase,
                    tile_rows: first..tile_rows.min(first + per_group),
                    tile_columns: left..across.min(left + piece),
                })
            })
        })
        .collect()
}

/// Whether a layer of `spec`, filters of `kernel_size` in `groups`, with `channels` (in,
/// out) is one the family runs: a filter two strides wide on both axes, one group, no
/// dilation, zero padding, at least `MIN_CHANNELS` channels in and out.
fn fits(
    spec: &GeometrySpec,
    (kh, kw): (usize, usize),
    groups: usize,
    (in_channels, out_channels): (usize, usize),
) -> bool {
    TwoTap::suits_geometry(spec)
        && (kh, kw) == spec.kernel_size
        && groups == 1
        && in_channels >= MIN_CHANNELS
        && out_channels >= MIN_CHANNELS
}

/// `G g G^T` of every phase's filters, `[phase][position][channel][out channel]`, both
/// channel counts padded to `CHANNEL_ALIGN` with zeros, from `tap(phase, channel, out
/// channel, ty, tx)`, computed in `f64`.
fn packed(
    (phases, channels, out_channels): (usize, usize, usize),
    tap: impl Fn(usize, usize, usize, usize, usize) -> f32,
) -> Vec<f32> {
    let (channels_padded, out_padded) = (
        channels.next_multiple_of(CHANNEL_ALIGN),
        out_channels.next_multiple_of(CHANNEL_ALIGN),
    );
    let mut weights = vec![0.0f32; phases * POSITIONS * channels_padded * out_padded];
    for phase in 0..phases {
        for c in 0..channels {
            for o in 0..out_channels {
                let filter = std::array::from_fn(|ty| {
                    std::array::from_fn(|tx| f64::from(tap(phase, c, o, ty, tx)))
                });
                let transformed = transform_filter(filter);
                for (position, &value) in transformed.iter().flatten().enumerate() {
                    let at =
                        ((phase * POSITIONS + position) * channels_padded + c) * out_padded + o;
                    weights[at] = value as f32;
                }
            }
        }
    }
    weights
}

/// `G g G^T` of a 2x2 filter `g`, `G = [[1, 0], [1, 1], [0, 1]]`, row by row.
fn transform_filter(g: [[f64; 2]; 2]) -> [[f64; 3]; 3] {
    let g_times = |v: [f64; 2]| [v[0], v[0] + v[1], v[1]];
    // G g, column by column...
    let columns = [g_times([g[0][0], g[1][0]]), g_times([g[0][1], g[1][1]])];
    // ... then each row of it through G.
    std::array::from_fn(|i| g_times([columns[0][i], columns[1][i]]))
}

/// One image, `[channel][row][column]`, into `target` channels last, `columns` pixels of
/// `pixel` floats per row: pixel `(row + 1, column + 1)` holds the input's `(row,
/// column)`, every other value zero.
fn lay_out_shifted(
    input: &ArrayView3<f32>,
    target: &mut [f32],
    (columns, pixel): (usize, usize),
    threads: usize,
) {
    let in_h = input.dim().1;
    lay_out_rows(target, columns * pixel, threads, |row, target| {
        if row == 0 || row > in_h {
            return;
        }
        // Channel by channel, each row read in order, its values to a row of pixels (an
        // odd number of lines apart: all in L1 for the next channels).
        for (c, source) in input.outer_iter().enumerate() {
            for (x, &value) in source.row(row - 1).iter().enumerate() {
                target[(x + 1) * pixel + c] = value;
            }
        }
    });
}

/// One image, `[channel][row][column]`, into `target` as the grid of its phases for a
/// convolution of `stride` and `pad`, channels last, `columns` pixels of `pixel` floats per
/// row: grid pixel `(m, m')`, channel `(ry * sw + rx) * in_channels + c` holds input
/// channel `c`'s `(s * m + ry - pad, s' * m' + rx - pad')`, zero outside the input.
fn lay_out_phases(
    input: &ArrayView3<f32>,
    target: &mut [f32],
    (columns, pixel): (usize, usize),
    ((sh, sw), (pad_top, pad_left)): ((usize, usize), (usize, usize)),
    (threads, transpose): (usize, Compiled<TransposeFamily>),
) {
    let (in_channels, in_h, in_w) = input.dim();
    // Each channel's input row is split into its `sw` phases, runs of `run` grid columns:
    // every one the row reaches, though the tiles may read fewer (`columns`).
    let run = columns.max((pad_left + in_w).div_ceil(sw));
    lay_out_rows(target, columns * pixel, threads, |m, target| {
        with_scratch(in_channels * sw * run, |stage| {
            let mut gathered = Vec::new();
            for ry in 0..sh {
                let Some(y) = (sh * m + ry).checked_sub(pad_top).filter(|&y| y < in_h) else {
                    continue;
                };
                // Input column `x` is grid column `(x + pad) / s` of phase `(x + pad) % s`.
                let rows = stage.chunks_exact_mut(sw * run).zip(input.outer_iter());
                for (staged, source) in rows {
                    let source = source.row(y);
                    staged.fill(0.0);
                    split_row(contiguous(&source, &mut gathered), pad_left, sw, staged);
                }
                // Phase by phase, in the order of their channels in a pixel (see
                // `transpose_row`).
                for rx in 0..sw {
                    let runs = (&stage[rx * run..], sw * run);
                    let channels = (in_channels, (ry * sw + rx) * in_channels);
                    transpose_row(transpose, runs, channels, pixel, target);
                }
            }
        });
    });
}

/// Lays `stage`, the runs of a row's `channels` (a run of the row's pixels each, `stride`
/// floats apart), into `target`'s pixels of `pixel` floats from `offset`, zeros after them
/// to each pixel's end: so the channels of a pixel are written in order, each call after
/// those before it.
///
/// Stored one value at a time, each store a pixel (2 KB) apart from the last, the layouts
/// were 6.8% of dcgan-up's backward and 2.8% of its forward (Intel Xeon, one thread, `perf
/// record`); split into phases a row at a time and transposed in registers, 4.2% of the
/// backward, which ran 3.69 -> 3.42 ms (fastest of eight alternated runs; forward level).
fn transpose_row(
    transpose: Compiled<TransposeFamily>,
    (stage, stride): (&[f32], usize),
    (channels, offset): (usize, usize),
    pixel: usize,
    target: &mut [f32],
) {
    transpose.run(&mut TransposeJob {
        stage,
        stride,
        channels,
        block: pixel,
        offset,
        target,
    });
}

/// Zeros `target`, then calls `lay_out` with each row of `row_len` floats and its index,
/// on `threads` threads where there is enough to lay out ([`each_channel`], whose chunks
/// here are rows).
fn lay_out_rows(
    target: &mut [f32],
    row_len: usize,
    threads: usize,
    lay_out: impl Fn(usize, &mut [f32]) + Send + Sync,
) {
    each_channel(target, row_len, threads, |index, row| {
        row.fill(0.0);
        lay_out(index, row);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// For strides 1 to 3, paddings and sizes with rows of a few tiles, of more than a
    /// block (cut into pieces) and of an odd count, one task wanted and several: every
    /// tile of every output phase is in exactly one block, inside its phase's tiles, no
    /// block holds more tiles of one column phase than the kernel takes, and there are as
    /// many blocks as were wanted where there are tile rows for them.
    #[test]
    fn blocks_take_each_tile_once_and_at_most_a_kernel_block_of_each_phase() {
        let cases = [
            (1, 1, 1, 0),
            (32, 32, 2, 1),
            (5, 600, 2, 1),
            (9, 130, 3, 2),
            (64, 129, 1, 0),
            (3, 257, 2, 0),
        ];
        for ((out_h, out_w, s, pad), least) in cases
            .into_iter()
            .flat_map(|case| [1, 4, 7].map(|least| (case, least)))
        {
            let rows: Vec<PhaseAxis> = (0..s).map(|r| PhaseAxis::new(r, s, pad, out_h)).collect();
            let columns: Vec<PhaseAxis> =
                (0..s).map(|r| PhaseAxis::new(r, s, pad, out_w)).collect();
            let across = columns.iter().map(PhaseAxis::tiles).max().unwrap_or(0);
            let mut taken: Vec<Vec<usize>> = rows
                .iter()
                .map(|row| vec![0; row.tiles() * across])
                .collect();
            let made = blocks(&rows, &columns, least);
            let tile_rows: usize = rows.iter().map(PhaseAxis::tiles).sum();
            assert!(
                made.len() >= least.min(tile_rows),
                "{out_h}x{out_w} s {s}: {least}"
            );
            for block in made {
                let case = (out_h, out_w, s, pad);
                assert!(block.tile_rows.len() * block.tile_columns.len() <= BLOCK_TILES);
                assert!(
                    block.tile_rows.end <= rows[block.row_phase].tiles(),
                    "{case:?}"
                );
                assert!(block.tile_columns.end <= across, "{case:?}");
                for ty in block.tile_rows.clone() {
                    for tx in block.tile_columns.clone() {
                        taken[block.row_phase][ty * across + tx] += 1;
                    }
                }
            }
            for counts in &taken {
                assert!(
                    counts.iter().all(|&count| count == 1),
                    "{out_h}x{out_w} s {s}"
                );
            }
        }
    }
}
