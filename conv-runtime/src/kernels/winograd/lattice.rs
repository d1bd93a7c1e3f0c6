//! Winograd over the dilated lattice: a 3x3 convolution of stride 1 and dilation `d` is, on
//! each of the `dh x dw` classes of output pixels (rows `a + dh * y`, columns `b + dw * x`),
//! a dense 3x3 convolution of the padded input's pixels of the same class. A context
//! module's dilation-4 layer on a 64x64 map is sixteen dense layers on 16x16 maps, each of
//! which F(2x2, 3x3) computes in 16 multiply-adds per 2x2 tile where the direct
//! convolution takes 36.
//!
//! Cut into sixteen 16x16 maps, a row of tiles would be 8 tiles, a quarter of the kernel's
//! 32-tile blocks on AVX-512. So the classes are not cut apart: a row of tiles holds the
//! tiles of every column class side by side (class 0's, then class 1's, ...), 32 for that
//! layer, and the input is laid out for it. Each of a tile's four input columns is its own
//! run of floats per row (the kernel reads run `j` at `tile`), so a class's last tile reads
//! its own columns, not the next class's: the input is held four times over per padded row
//! instead of twice, which the kernel reads a tile row of at a time. A row of tiles belongs
//! to one row class, reading padded rows `dh` apart.
//!
//! The kernel writes each tile row into a staging buffer in that order, from which its
//! outputs go to their columns `dw` apart.

use std::mem::MaybeUninit;

use ndarray::{ArrayView2, ArrayView4, ArrayViewMut4, Axis};
use rayon::prelude::*;

use super::Winograd;
use super::kernel::{MAX_TILES, TileRowJob, padded_out_channels, scratch_lens};
use super::lattice_rows::{LatticeRowsFamily, LatticeRowsJob, VectorMap};
use crate::isa::{Compiled, Detected, Isa};
use crate::kernels::forward_threads;
use crate::kernels::row::prepare::each_channel;
use crate::memory::layout::{PlaneLayout, contiguous};
use crate::memory::scratch::with_scratch;
use crate::memory::shared_output::SharedOutput;
use crate::memory::weave::{Weave, WeaveJob, weaves, write_rows};

/// How `outputs` consecutive outputs (of a row, or of a column) fall into the `dilation`
/// classes of the lattice, and where each class's tiles start in a row of tiles.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Classes {
    dilation: usize,
    /// Outputs of each class: class `b` holds outputs `b, b + dilation, ...`.
    outputs: Vec<usize>,
    /// The first tile of each class in the row of tiles.
    first_tile: Vec<usize>,
    /// Tiles of all classes: each class's outputs over two, rounded up.
    tiles: usize,
}

impl Classes {
    pub fn new(outputs: usize, dilation: usize) -> Classes {
        let per_class: Vec<usize> = (0..dilation)
            .map(|class| outputs.saturating_sub(class).div_ceil(dilation))
            .collect();
        let mut first_tile = Vec::with_capacity(dilation);
        let mut tiles = 0;
        for count in &per_class {
            first_tile.push(tiles);
            tiles += count.div_ceil(2);
        }
        Classes {
            dilation,
            outputs: per_class,
            first_tile,
            tiles,
        }
    }

    /// Where each output sits in a staged row (the classes' tiles side by side, two outputs
    /// a tile), in output order: a table for the scatter, which, stepping through each
    /// class's outputs `dilation` apart, took a tenth of context-d4's time.
    fn staged_positions(&self) -> Vec<usize> {
        let total: usize = self.outputs.iter().sum();
        let mut at = vec![0; total];
        for (class, (&count, &first)) in self.outputs.iter().zip(&self.first_tile).enumerate() {
            for index in 0..count {
                at[self.output(class, index)] = 2 * first + index;
            }
        }
        at
    }

    /// Output `index` of class `class` is output `class + dilation * index`.
    fn output(&self, class: usize, index: usize) -> usize {
        class + self.dilation * index
    }
}

/// Whether the lattice's tiles fill at least three quarters of the blocks the kernel
/// computes for an `out_h x out_w` output (blocks of 32 tiles, AVX-512's: the widest, so
/// that every instruction set gains): F(2x2, 3x3) does a direct convolution's work in
/// about half the multiply-adds, which blocks mostly empty (aspp-d12's dilation 12 on a
/// 32x32 map: classes of 2 or 3 outputs, 20 tiles a row in blocks of 32, 20 tile rows for 8
/// rows' worth) give back.
pub(super) fn fills(out_h: usize, out_w: usize, dilation: (usize, usize)) -> bool {
    let (rows, columns) = (
        Classes::new(out_h, dilation.0),
        Classes::new(out_w, dilation.1),
    );
    let useful = out_h.div_ceil(2) * out_w.div_ceil(2);
    let computed = rows.tiles * columns.tiles.next_multiple_of(MAX_TILES);
    4 * useful >= 3 * computed
}

/// The convolution of a checked `input` into `output` (standard layout, of the checked
/// shape) by `winograd`, whose dilation is not 1, adding `bias` (one per channel).
pub(super) fn run(
    winograd: &Winograd,
    bias: &[f32],
    input: &ArrayView4<f32>,
    output: &mut ArrayViewMut4<MaybeUninit<f32>>,
) {
    let (_, channels, _, in_w) = input.dim();
    let (out_h, out_w) = (output.dim().2, output.dim().3);
    let (dh, dw) = winograd.dilation;
    let (rows, columns) = (Classes::new(out_h, dh), Classes::new(out_w, dw));
    // One row class at a time: tile row `r` of row class `a` reads padded rows `a + dh *
    // (2 * r + i)`, which the class's layout holds as its rows `2 * r + i`, up to `2 * r + 3`
    // for the last tile row of class 0, the longest. Each of the four runs of a row holds
    // every tile, and the tiles up to the end of the last block. (All classes laid out at
    // once, context-d4's layout was 2.5 MB, more than the Xeon's L2.)
    let layout = PlaneLayout {
        channels,
        rows: 2 * rows.outputs[0].div_ceil(2) + 2,
        col_phases: 4,
        phase_len: columns.tiles.next_multiple_of(MAX_TILES),
    };
    let row_map = RowMap::new(&Gather::all(&columns, winograd.pad.1, in_w), layout);
    let vector_rows = vector_rows(winograd.kernel.isa(), &row_map);
    let staged_at = columns.staged_positions();
    // Each class's run of outputs in a staged row, woven into the output in vectors where
    // there are 2, 4 or 8 classes.
    let runs: Vec<usize> = columns.first_tile.iter().map(|&first| 2 * first).collect();
    let shortest = columns.outputs.iter().copied().min().unwrap_or(0);
    let weave = weaves(dw).then(|| Compiled::for_isa::<Weave>(winograd.kernel.isa()));
    let out_padded = padded_out_channels(winograd.out_channels);
    let threads = forward_threads(winograd.out_channels * channels * out_h * out_w * 9);
    let plane = out_h * out_w;
    // Where there are at least as many row classes as threads, the threads take whole
    // classes, each laying out its own in its own buffer: one parallel section per image
    // instead of two per class (context-d4 made eight per call, and their joins cost two
    // threads much of their gain). The tile rows of a class stay parallel, for the threads
    // done with their own classes to take.
    let classes_in_parallel = threads > 1 && dh >= threads;
    let layout_threads = if classes_in_parallel { 1 } else { threads };
    for (image, mut out_image) in input.outer_iter().zip(output.outer_iter_mut()) {
        let out = SharedOutput::of(&mut out_image);
        let one_class = |class: usize| {
            with_scratch(layout.image_stride(), |prepared| {
                lay_out(
                    &image,
                    winograd.pad.0,
                    (class, dh),
                    (&row_map, vector_rows.as_ref()),
                    layout,
                    prepared,
                    layout_threads,
                );
                let prepared = &*prepared;
                let tile_row = |r: usize| {
                    let (transformed_len, products_len) = scratch_lens(channels, out_padded);
                    let staged_row = 2 * columns.tiles;
                    let staged_len = 2 * winograd.out_channels * staged_row;
                    with_scratch(transformed_len + products_len + staged_len, |scratch| {
                        let (transformed, rest) = scratch.split_at_mut(transformed_len);
                        let (products, staged) = rest.split_at_mut(products_len);
                        {
                            // SAFETY: `MaybeUninit<f32>` has the layout of `f32`, and the kernel
                            // writes only initialised floats through these slices, so `staged`
                            // stays initialised.
                            let uninit: &mut [MaybeUninit<f32>] =
                                unsafe { &mut *(&mut *staged as *mut [f32] as *mut [_]) };
                            let mut slices: Vec<&mut [MaybeUninit<f32>]> =
                                uninit.chunks_exact_mut(staged_row).collect();
                            let row_stride = layout.row_stride();
                            let phase_len = layout.phase_len;
                            let mut job = TileRowJob {
                                input: prepared,
                                channels,
                                channel_stride: layout.channel_stride(),
                                rows: std::array::from_fn(|i| (2 * r + i) * row_stride),
                                columns: std::array::from_fn(|j| j * phase_len),
                                tiles: columns.tiles,
                                weights: &winograd.weights,
                                out_channels: winograd.out_channels,
                                bias,
                                transformed,
                                products,
                                out: &mut slices,
                            };
                            winograd.kernel.run(&mut job);
                        }
                        let mut out_rows: Vec<Option<&mut [MaybeUninit<f32>]>> = (0..2 * winograd
                            .out_channels)
                            .map(|index| {
                                let (channel, row) = (index / 2, 2 * r + index % 2);
                                (row < rows.outputs[class]).then(|| {
                                    let start = channel * plane + rows.output(class, row) * out_w;
                                    // SAFETY: `out` points at this image's output, `plane *
                                    // out_channels` floats in standard layout; output row
                                    // `rows.output(class, row)` (below `out_h`) of `channel` is
                                    // inside it. Each task writes only the output rows of its own
                                    // tile row, each once.
                                    unsafe { out.slice(start, out_w) }
                                })
                            })
                            .collect();
                        write_rows(
                            weave,
                            &mut WeaveJob {
                                staged,
                                staged_row,
                                runs: &runs,
                                shortest,
                                staged_at: &staged_at,
                                out: &mut out_rows,
                            },
                        );
                    });
                };
                let tile_rows = 0..rows.outputs[class].div_ceil(2);
                if threads == 1 {
                    tile_rows.for_each(tile_row);
                } else {
                    tile_rows.into_par_iter().for_each(tile_row);
                }
            });
        };
        if classes_in_parallel {
            (0..dh).into_par_iter().for_each(one_class);
        } else {
            (0..dh).for_each(one_class);
        }
    }
}

/// The layout in vectors and its map, where the set selects in vectors (AVX-512's
/// permutes; elsewhere `Simd::select` goes through memory, no faster than the gather, so
/// the kernel is compiled for AVX-512 only: 3.4 KB less in every program that uses the
/// lattice) and the source row fits in four vectors.
#[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables))]
fn vector_rows(isa: Isa, row_map: &RowMap) -> Option<(Compiled<LatticeRowsFamily>, VectorMap)> {
    match Detected::or_portable(isa) {
        #[cfg(target_arch = "x86_64")]
        Detected::Avx512(simd) => VectorMap::new(&row_map.from, isa.lanes()).map(|map| {
            (
                Compiled::new::<super::lattice_rows::LatticeRows, _>(simd),
                map,
            )
        }),
        _ => None,
    }
}

/// Lays one image's row class out for the lattice's tile rows: per channel, the padded
/// rows `first, first + step, ...` (input row `y` at padded row `y + pad_top`, zero rows
/// around), each four runs of `layout.phase_len` floats; run `j` holds, for each tile of
/// the row, the padded column `b + dw * (2 * t + j)` that tile `t` of column class `b` reads
/// as its column `j` (as `row_map` says), and zeros after the last tile. In vectors where
/// there is a `VectorMap` (see [`lattice_rows`](super::lattice_rows)).
fn lay_out(
    image: &ndarray::ArrayView3<f32>,
    pad_top: usize,
    padded_rows: (usize, usize),
    (row_map, vector_rows): (&RowMap, Option<&(Compiled<LatticeRowsFamily>, VectorMap)>),
    layout: PlaneLayout,
    scratch: &mut [f32],
    threads: usize,
) {
    let scratch = &mut scratch[..layout.image_stride()];
    each_channel(
        scratch,
        layout.channel_stride(),
        threads,
        |channel, target| {
            let source = image.index_axis(Axis(0), channel);
            match vector_rows {
                Some((kernel, map)) => kernel.run(&mut LatticeRowsJob {
                    source,
                    pad_top,
                    rows: padded_rows,
                    layout,
                    map,
                    target,
                }),
                None => lay_out_plane(&source, pad_top, padded_rows, row_map, layout, target),
            }
        },
    );
}

/// [`lay_out`] for one channel: each padded row is `row_map` applied to the source row.
fn lay_out_plane(
    source: &ArrayView2<f32>,
    pad_top: usize,
    (first, step): (usize, usize),
    row_map: &RowMap,
    layout: PlaneLayout,
    target: &mut [f32],
) {
    let in_h = source.nrows();
    // The source row after one zero, which the map's padding reads; a non-contiguous row
    // is gathered first. (In a small buffer of its own, fresh from the allocator for each
    // channel, the gather ran at half the speed in one build of two that differed
    // elsewhere, Intel Xeon: a placement the pool's buffers do not meet.)
    with_scratch(1 + source.ncols(), |zero_then_row| {
        zero_then_row[0] = 0.0;
        assert!(row_map.end <= zero_then_row.len());
        let mut gathered = Vec::new();
        let rows = target
            .chunks_exact_mut(layout.row_stride())
            .take(layout.rows);
        for (index, row) in rows.enumerate() {
            let padded_row = first + step * index;
            let Some(y) = padded_row.checked_sub(pad_top).filter(|&y| y < in_h) else {
                row.fill(0.0);
                continue;
            };
            let source_row = source.row(y);
            zero_then_row[1..].copy_from_slice(contiguous(&source_row, &mut gathered));
            for (slot, &from) in row.iter_mut().zip(&row_map.from) {
                // SAFETY: every index of the map is below `row_map.end` (`RowMap::new`),
                // which is inside `zero_then_row` (asserted above). Unchecked: a bounds
                // check per value made context-d4 1.632 -> 1.693 ms (Intel Xeon, one
                // thread, fastest of eight alternated runs; clamping the index instead,
                // 1.673).
                *slot = unsafe { *zero_then_row.get_unchecked(from as usize) };
            }
        }
    });
}

/// Where each float of a laid-out row comes from: `from[i]` is 0 for a zero, `1 + x` for
/// source column `x`. One table, read in order, for every row of every channel: a copy of
/// strided runs, each value's index computed as it went, took a fifth of context-d4's time.
struct RowMap {
    from: Vec<u32>,
    /// One more than the largest index in `from`.
    end: usize,
}

impl RowMap {
    fn new(gathers: &[Gather], layout: PlaneLayout) -> RowMap {
        let mut from = vec![0; layout.row_stride()];
        for gather in gathers {
            let run = &mut from[gather.column * layout.phase_len + gather.first..][..gather.taken];
            for (t, slot) in run.iter_mut().enumerate() {
                *slot = u32::try_from(1 + gather.from + gather.step * t)
                    .expect("a row's columns count in u32");
            }
        }
        let end = from
            .iter()
            .map(|&from| from as usize + 1)
            .max()
            .unwrap_or(0);
        RowMap { from, end }
    }
}

/// Where the tiles of one column class read one of their four columns in a source row:
/// tiles `first..first + taken` of run `column` read source columns `from`, `from + step`,
/// and so on; the class's tiles before and after them read padding.
#[derive(Clone, Copy, Debug)]
struct Gather {
    column: usize,
    first: usize,
    taken: usize,
    from: usize,
    step: usize,
}

impl Gather {
    /// Every class's gathers for rows of `in_w` columns after `pad_left` zeros: computed
    /// once per call, not per row (their divisions, per row, took a third of context-d4's
    /// time).
    fn all(columns: &Classes, pad_left: usize, in_w: usize) -> Vec<Gather> {
        let step = 2 * columns.dilation;
        let mut gathers = Vec::new();
        for column in 0..4 {
            for (class, &first) in columns.first_tile.iter().enumerate() {
                let count = columns.outputs[class].div_ceil(2);
                // Tile `t` reads padded column `start + step * t`: inside the data from tile
                // `skip` on, for `taken` tiles (none where all of them read padding).
                let start = columns.output(class, column);
                let skip = pad_left.saturating_sub(start).div_ceil(step).min(count);
                let from = (start + step * skip).saturating_sub(pad_left);
                let taken = in_w.saturating_sub(from).div_ceil(step).min(count - skip);
                gathers.push(Gather {
                    column,
                    first: first + skip,
                    taken,
                    from,
                    step,
                });
            }
        }
        gathers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_deal_outputs_out_and_place_their_tiles_side_by_side() {
        // 7 outputs, dilation 3: classes {0, 3, 6}, {1, 4}, {2, 5}.
        let classes = Classes::new(7, 3);
        assert_eq!(classes.outputs, [3, 2, 2]);
        assert_eq!(classes.first_tile, [0, 2, 3]);
        assert_eq!(classes.tiles, 4);
        assert_eq!(classes.output(0, 2), 6);
        assert_eq!(classes.output(2, 1), 5);
        // Fewer outputs than classes: the empty ones hold no tiles.
        let classes = Classes::new(2, 4);
        assert_eq!(classes.outputs, [1, 1, 0, 0]);
        assert_eq!(classes.tiles, 2);
    }

    #[test]
    fn lattices_run_where_their_tiles_fill_the_blocks() {
        // context-d4: 64x64, sixteen 16x16 classes, four of 8 tiles to a row of 32.
        assert!(fills(64, 64, (4, 4)));
        // A 64-column row at dilation 2: two classes of 16 tiles.
        assert!(fills(64, 64, (2, 2)));
        // aspp-d12: 32x32, classes of 2 or 3 outputs, 20 tiles a row and 20 tile rows
        // where the dense layer has 16 and 16.
        assert!(!fills(32, 32, (12, 12)));
        // 66 columns at dilation 2: 34 tiles, two blocks of 32 for little more than one.
        assert!(!fills(64, 66, (2, 2)));
    }
}
