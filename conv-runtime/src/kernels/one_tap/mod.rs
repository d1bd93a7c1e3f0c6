//! The one-tap family: transposed convolutions whose 2x2 filter is its stride, without
//! padding (U-Net's upconvolutions, the seed's). Every output pixel `(2i + a, 2j + b)` takes
//! exactly one tap, `(a, b)`, of one input pixel `(i, j)` per input channel, so the layer is
//! one matrix product (four phases times the output channels, by the input channels, by the
//! input pixels) whose four rows per output channel interleave into the output.
//!
//! The row kernel ran these as two column phases per call and one output row per call,
//! reading every input row twice (once per row phase) from a copy of the input in its
//! layout; the copy alone was a fifth of the seed's upconvolution (Zen 4, `perf record`).
//! Here each input vector is loaded once for the four phases of a block of output channels,
//! and each call writes two whole output rows per input row. The input is read from the
//! caller's array, or, for layers of many output channels, whose channels' planes would
//! fight over the same cache sets, from a copy of each call's rows (a `panel`).
//!
//! The convolutions of that geometry (a 2x2 filter of stride 2: patch embeddings, and the
//! input gradient of every such upconvolution) are the same product turned around: each
//! output pixel from its own 2x2 patch. The patch kernel (`patches`) reads its input the
//! same way, splitting each pair of input vectors into its even and odd columns
//! in registers, where the row kernel copies the input into its column phases first.
//!
//! The taps need no constants: compiled once, in this crate, for every instruction set, so
//! these layers compile no code per geometry (a program links the family once, with its
//! first layer).

mod kernel;
mod patches;

use std::mem::MaybeUninit;
use std::ops::Range;

use ndarray::{Array4, ArrayView4, ArrayViewMut4};
use rayon::prelude::*;

use self::kernel::{PHASES, PixelFamily, PixelJob, Pixels};
use self::patches::{PatchFamily, PatchJob, Patches};
use crate::isa::{Compiled, Detected, Isa};
use crate::kernels::{TASKS_PER_THREAD, forward_threads};
use crate::memory::aligned::AlignedFloats;
use crate::memory::layout::{PlaneLayout, copy_rows};
use crate::memory::scratch::with_scratch;
use crate::memory::shared_output::SharedOutput;
use crate::shape::geometry::GeometrySpec;

/// Input rows (all of a group's channels) a call should read at most: 256 KB, a quarter of
/// the L2 of the cores we run on, so that the rows one block read are still there for the
/// next. unet-up (32 KB per input row) ran as fast with 4 to 16 rows per call and 1.5%
/// slower with one (Zen 4, one thread, five alternated rounds).
const CALL_INPUT_FLOATS: usize = 64 * 1024;

/// A 2x2 convolution or transposed convolution of stride 2, packed for the patch or the
/// pixel kernel.
#[derive(Clone)]
pub(crate) struct OneTap {
    kernel: Direction,
    /// Output channels per call.
    block: usize,
    /// `[group][block][in channel][phase (tap) 2a + b][block channel]`, zeros past the
    /// group's last output channel.
    weights: AlignedFloats,
    in_per_group: usize,
    out_per_group: usize,
    groups: usize,
}

/// Which way the taps go, and the kernel that runs them.
#[derive(Clone, Copy)]
enum Direction {
    /// Transposed: each input pixel to its four outputs.
    Spread(Compiled<PixelFamily>),
    /// Convolution: each output pixel from its four inputs.
    Gather(Compiled<PatchFamily>),
}

impl OneTap {
    /// The pixel kernel's packing of a transposed convolution of `spec` with `weight`
    /// (`[in_channels, out_channels / groups, 2, 2]`), on `isa` (the portable set where
    /// `isa` is not available), if its filter is 2x2, of stride 2, without dilation,
    /// padding or output padding, and if the set has a blocking for its output channels
    /// that beats the row kernel's ([`select`]).
    /// Whether a geometry is one the family runs: a 2x2 filter of stride 2, without
    /// dilation, padding or output padding. A `const fn`, so that the engine decides it at
    /// compile time.
    pub const fn suits_geometry(spec: &GeometrySpec) -> bool {
        const fn both(pair: (usize, usize), value: usize) -> bool {
            pair.0 == value && pair.1 == value
        }
        both(spec.kernel_size, 2)
            && both(spec.stride, 2)
            && both(spec.dilation, 1)
            && both(spec.output_padding, 0)
            && both(spec.pad_before(), 0)
            && both(spec.pad_after(), 0)
    }

    pub fn plan(
        isa: Isa,
        spec: GeometrySpec,
        weight: &Array4<f32>,
        groups: usize,
    ) -> Option<OneTap> {
        let (in_channels, out_per_group, _, _) = weight.dim();
        if !Self::suits_geometry(&spec) || groups == 0 || out_per_group == 0 {
            return None;
        }
        let (kernel, block) = select(isa, out_per_group)?;
        let in_per_group = in_channels / groups;
        let dims = (in_per_group, out_per_group, groups);
        Some(OneTap::packed(
            Direction::Spread(kernel),
            block,
            dims,
            |g, c, j, a, b| weight[[g * in_per_group + c, j, a, b]],
        ))
    }

    /// The patch kernel's packing of a convolution of `spec` with `weight` (`[out_channels,
    /// in_channels / groups, 2, 2]`), under the same conditions as [`plan`](Self::plan)
    /// ([`select_patches`]).
    pub fn plan_conv(
        isa: Isa,
        spec: GeometrySpec,
        weight: &Array4<f32>,
        groups: usize,
    ) -> Option<OneTap> {
        let (out_channels, in_per_group, _, _) = weight.dim();
        let out_per_group = out_channels / groups.max(1);
        if !Self::suits_geometry(&spec) || groups == 0 || out_per_group == 0 {
            return None;
        }
        let (kernel, block) = select_patches(isa, out_per_group)?;
        let dims = (in_per_group, out_per_group, groups);
        Some(OneTap::packed(
            Direction::Gather(kernel),
            block,
            dims,
            |g, c, j, a, b| weight[[g * out_per_group + j, c, a, b]],
        ))
    }

    /// The layer's weights in blocks of `block` output channels for `kernel`, `[group][block]
    /// [in channel][tap 2a + b][block channel]`, from `weight(group, in channel, out
    /// channel, a, b)` (channels within the group), zeros past a group's last output channel.
    fn packed(
        kernel: Direction,
        block: usize,
        (in_per_group, out_per_group, groups): (usize, usize, usize),
        weight: impl Fn(usize, usize, usize, usize, usize) -> f32,
    ) -> OneTap {
        let blocks = out_per_group.div_ceil(block);
        let mut weights = Vec::with_capacity(groups * blocks * in_per_group * PHASES * block);
        for group in 0..groups {
            for b in 0..blocks {
                for c in 0..in_per_group {
                    for phase in 0..PHASES {
                        for j in b * block..(b + 1) * block {
                            weights.push(if j < out_per_group {
                                weight(group, c, j, phase / 2, phase % 2)
                            } else {
                                0.0
                            });
                        }
                    }
                }
            }
        }
        OneTap {
            kernel,
            block,
            weights: AlignedFloats::from(weights),
            in_per_group,
            out_per_group,
            groups,
        }
    }

    /// Whether the family computes an output of shape `output` from an input of shape
    /// `input`: twice its height and width when transposed, half of them (rounded down)
    /// when not. A larger transposed output asked for at run time (PyTorch's `output_size`:
    /// one more row or column, of bias only) goes to the row kernel.
    pub fn suits(
        &self,
        input: (usize, usize, usize, usize),
        output: (usize, usize, usize, usize),
    ) -> bool {
        match self.kernel {
            Direction::Spread(_) => (output.2, output.3) == (2 * input.2, 2 * input.3),
            Direction::Gather(_) => (output.2, output.3) == (input.2 / 2, input.3 / 2),
        }
    }

    /// The operation on a checked `input` into `output` (standard layout, of the checked
    /// shape), adding `bias` (one per output channel).
    pub fn run(
        &self,
        bias: &[f32],
        input: &ArrayView4<f32>,
        output: &mut ArrayViewMut4<MaybeUninit<f32>>,
    ) {
        let (batch, _, in_h, in_w) = input.dim();
        let (out_h, out_w) = (output.dim().2, output.dim().3);
        let out_channels = self.groups * self.out_per_group;
        let (in_plane, out_plane) = (in_h * in_w, out_h * out_w);
        // The rows tasks split: input rows, each making two output rows, when transposed;
        // output rows, each from two input rows, when not.
        let (rows, out_per_row, in_per_row) = match self.kernel {
            Direction::Spread(_) => (in_h, 2 * out_w, in_w),
            Direction::Gather(_) => (out_h, out_w, 2 * in_w),
        };
        // Read in place where the caller's array is in standard layout; a strided view is
        // copied once.
        let input = input.as_standard_layout();
        let input = input.as_slice().expect("standard layout");
        let out = SharedOutput::of(output);
        if batch == 0 || out_plane == 0 {
            return;
        }
        let multiply_adds = batch * out_channels * self.in_per_group * out_plane.max(in_plane);
        let threads = forward_threads(multiply_adds);
        let images = batch * self.groups;
        let chunks = (threads * TASKS_PER_THREAD).div_ceil(images).clamp(1, rows);
        let chunk_rows = rows.div_ceil(chunks);
        let chunks = rows.div_ceil(chunk_rows);
        let call_rows =
            (CALL_INPUT_FLOATS / (self.in_per_group * in_per_row).max(1)).clamp(1, rows);
        let blocks = self.out_per_group.div_ceil(self.block);
        let block_weights = self.in_per_group * PHASES * self.block;

        // Where the layer has many output channels, each call's input rows are read from a
        // copy, a panel, whose channels are an odd number of cache lines apart (see
        // `PlaneLayout::channel_stride`), not in place: the kernels read a vector or two of
        // every channel in turn, and a 64x64 plane is 16 KiB, so in place all of unet-up's
        // 128 channels fell into one set of L1 and a few of L2, and the multiply-adds after
        // each load waited on L2 or beyond. unet-up, the copy included (Intel Xeon, fastest of
        // six alternated `suite --only unet-up --quick --json --backward` runs): forward
        // 2.115 -> 1.724 ms at one thread, 1.119 -> 0.898 at two; backward, whose input
        // gradient (the patch kernel) reads a panel too, 5.025 -> 4.869 and 2.740 -> 2.685.
        // Each float copied feeds at least 64 multiply-adds (four phases of at least 16
        // channels); with few channels the copy costs more than it saves: the seed's
        // upconvolution (16 channels into 3) ran 0.0128 -> 0.0189 ms from a panel (one
        // thread, three alternated runs).
        let use_panel = self.out_per_group >= PANEL_MIN_OUT;

        // Rows `rows` of image `image`'s group `group` for every block, from `input`: the
        // group's channels `plane` apart, the rows of `rows` from `in_rows`.
        let blocks_of =
            |(image, group): (usize, usize),
             rows: Range<usize>,
             (input, plane, in_rows): (&[f32], usize, Range<usize>)| {
                for b in 0..blocks {
                    let first = b * self.block;
                    let count = self.block.min(self.out_per_group - first);
                    let channel0 = group * self.out_per_group + first;
                    let mut slices: [&mut [MaybeUninit<f32>]; MAX_BLOCK] =
                        std::array::from_fn(|_| <&mut [MaybeUninit<f32>]>::default());
                    for (j, slice) in slices.iter_mut().take(count).enumerate() {
                        let start = (image * out_channels + channel0 + j) * out_plane
                            + rows.start * out_per_row;
                        // SAFETY: `out` points at the whole output, `batch * out_channels *
                        // out_plane` floats in standard layout; the output rows of `rows` (two
                        // per row when transposed) of channel `channel0 + j` of `image` are
                        // inside it. Tasks take disjoint row ranges of disjoint (image, group)s,
                        // each block its own channels, one call at a time: no two live slices
                        // overlap.
                        *slice = unsafe { out.slice(start, rows.len() * out_per_row) };
                    }
                    let weights =
                        &self.weights[(group * blocks + b) * block_weights..][..block_weights];
                    let bias = &bias[channel0..channel0 + count];
                    let out = &mut slices[..count];
                    match self.kernel {
                        Direction::Spread(kernel) => kernel.run(&mut PixelJob {
                            input,
                            channels: self.in_per_group,
                            plane,
                            width: in_w,
                            rows: in_rows.clone(),
                            weights,
                            bias,
                            out,
                        }),
                        Direction::Gather(kernel) => kernel.run(&mut PatchJob {
                            input,
                            channels: self.in_per_group,
                            plane,
                            in_w,
                            out_w,
                            rows: in_rows.clone(),
                            weights,
                            bias,
                            out,
                        }),
                    }
                }
            };
        let call = |image: usize, group: usize, rows: Range<usize>| {
            let first_in = (image * self.groups + group) * self.in_per_group;
            let input = &input[first_in * in_plane..][..self.in_per_group * in_plane];
            if !use_panel {
                return blocks_of((image, group), rows.clone(), (input, in_plane, rows));
            }
            let panel = PlaneLayout {
                channels: self.in_per_group,
                rows: rows.len(),
                col_phases: 1,
                phase_len: in_per_row,
            };
            with_scratch(panel.image_stride(), |copy| {
                copy_rows(input, in_plane, rows.start, panel, copy);
                let stride = panel.channel_stride();
                blocks_of((image, group), rows.clone(), (copy, stride, 0..rows.len()));
            });
        };
        let task = |index: usize| {
            let (image, chunk) = (index / chunks, index % chunks);
            let (image, group) = (image / self.groups, image % self.groups);
            let task_rows = chunk * chunk_rows..((chunk + 1) * chunk_rows).min(rows);
            for start in task_rows.clone().step_by(call_rows) {
                call(image, group, start..(start + call_rows).min(task_rows.end));
            }
        };
        if threads == 1 {
            (0..images * chunks).for_each(task);
        } else {
            (0..images * chunks).into_par_iter().for_each(task);
        }
    }
}

/// The largest block of any blocking.
const MAX_BLOCK: usize = 16;

/// The fewest output channels per group whose layers read their input from a panel.
const PANEL_MIN_OUT: usize = 16;

/// The blocking for `out_per_group` output channels on `isa`, and its block; none where the
/// row kernel runs the layer faster.
///
/// On the sets of 32 registers, three output channels by the four phases by two vectors of
/// pixels: 24 accumulators, two loads of input per 12 broadcast weights. Four channels by
/// one vector (16 accumulators, one load per 16 multiply-adds, each with its broadcast)
/// had been the fastest on Zen 4 (unet-up 2.37 ms, 1.09x faster than the row kernel; five
/// and six channels slower), but a core issuing two 512-bit FMAs a cycle waits there on its
/// two loads a cycle: on an Intel Xeon (one thread, fastest of five alternated runs of
/// `suite --only unet-up --quick`) four by one took 2.49 ms, two by two 2.29, three by two
/// 2.09. The same block runs three channels (an RGB image, the seed's upconvolution: 0.013
/// -> 0.012 ms against three by one). One or two channels take one by two vectors of
/// pixels, 8 accumulators.
///
/// On AVX2's 16 registers a block of three (12 accumulators, a broadcast per multiply-add)
/// ran the seed's upconvolution 0.029 -> 0.024 ms, but unet-up 1.27x slower than the row
/// kernel (3.79 against 2.97 ms), and one channel by three vectors, which reads the input
/// once per channel, 1.7x slower: wider layers stay with the row kernel there. On NEON
/// (32 registers of four lanes) the AVX-512 blockings, unmeasured.
fn select(isa: Isa, out_per_group: usize) -> Option<(Compiled<PixelFamily>, usize)> {
    let kernel = match Detected::or_portable(isa) {
        #[cfg(target_arch = "x86_64")]
        Detected::Avx512(simd) => match out_per_group {
            1 | 2 => (Compiled::new::<Pixels<1, 2>, _>(simd), 1),
            _ => (Compiled::new::<Pixels<3, 2>, _>(simd), 3),
        },
        #[cfg(target_arch = "x86_64")]
        Detected::Avx2(simd) => match out_per_group {
            1 | 2 => (Compiled::new::<Pixels<1, 2>, _>(simd), 1),
            3 => (Compiled::new::<Pixels<3, 1>, _>(simd), 3),
            _ => return None,
        },
        #[cfg(target_arch = "aarch64")]
        Detected::Neon(simd) => match out_per_group {
            1 | 2 => (Compiled::new::<Pixels<1, 2>, _>(simd), 1),
            3 => (Compiled::new::<Pixels<3, 1>, _>(simd), 3),
            _ => (Compiled::new::<Pixels<4, 1>, _>(simd), 4),
        },
        Detected::Portable(simd) => match out_per_group {
            1 | 2 => (Compiled::new::<Pixels<1, 2>, _>(simd), 1),
            _ => (Compiled::new::<Pixels<3, 1>, _>(simd), 3),
        },
    };
    Some(kernel)
}

/// The patch kernel's blocking for `out_per_group` output channels on `isa`, and its
/// block: sixteen output channels by one vector on the sets of 32 registers, as the row
/// kernel's blocking of stride-2 convolutions on AVX-512 (unmeasured on NEON); elsewhere,
/// and for fewer channels, the row kernel.
fn select_patches(isa: Isa, out_per_group: usize) -> Option<(Compiled<PatchFamily>, usize)> {
    if out_per_group < 16 {
        return None;
    }
    match Detected::or_portable(isa) {
        #[cfg(target_arch = "x86_64")]
        Detected::Avx512(simd) => Some((Compiled::new::<Patches<16>, _>(simd), 16)),
        #[cfg(target_arch = "aarch64")]
        Detected::Neon(simd) => Some((Compiled::new::<Patches<16>, _>(simd), 16)),
        _ => None,
    }
}
