//! The one-tap family: transposed convolutions whose 2x2 filter is its stride, without
//! padding (U-Net's upconvolutions, the seed's). Every output pixel `(2i + a, 2j + b)` takes
//! exactly one tap, `(a, b)`, of one input pixel `(i, j)` per input channel, so the layer is
//! one matrix product (four phases times the output channels, by the input channels, by the
//! input pixels) whose four rows per output channel interleave into the output.
//!
//! The row kernel ran these as two column phases per call and one output row per call,
//! reading every input row twice (once per row phase) from a copy of the input in its
//! layout; the copy alone was a fifth of the seed's upconvolution (Zen 4, `perf record`).
//! Here each input vector is loaded once, from the caller's array, for the four phases of
//! a block of output channels, and each call writes two whole output rows per input row.
//!
//! The taps need no constants: compiled once, in this crate, for every instruction set, so
//! these layers add nothing to a geometry's build cost.

mod kernel;

use std::mem::MaybeUninit;

use ndarray::{Array4, ArrayView4, ArrayViewMut4};
use rayon::prelude::*;

use self::kernel::{OneTapFamily, PHASES, PixelJob, Pixels};
use crate::isa::{Compiled, Detected, Isa};
use crate::kernels::{TASKS_PER_THREAD, forward_threads};
use crate::memory::shared_output::SharedOutput;
use crate::shape::geometry::GeometrySpec;

/// Input rows (all of a group's channels) a call should read at most: 256 KB, a quarter of
/// the L2 of the cores we run on, so that the rows one block read are still there for the
/// next. unet-up (32 KB per input row) ran as fast with 4 to 16 rows per call and 1.5%
/// slower with one (Zen 4, one thread, five alternated rounds).
const CALL_INPUT_FLOATS: usize = 64 * 1024;

/// A 2x2 transposed convolution of stride 2, packed for the pixel kernel.
#[derive(Clone)]
pub(crate) struct OneTap {
    kernel: Compiled<OneTapFamily>,
    /// Output channels per call.
    block: usize,
    /// `[group][block][in channel][phase][block channel]`, zeros past the group's last
    /// output channel.
    weights: Vec<f32>,
    in_per_group: usize,
    out_per_group: usize,
    groups: usize,
}

impl OneTap {
    /// The pixel kernel's packing of a transposed convolution of `spec` with `weight`
    /// (`[in_channels, out_channels / groups, 2, 2]`), on `isa` (the portable set where
    /// `isa` is not available), if its filter is 2x2, of stride 2, without dilation,
    /// padding or output padding, and if the set has a blocking for its output channels
    /// that beats the row kernel's ([`select`]).
    pub fn plan(
        isa: Isa,
        spec: GeometrySpec,
        weight: &Array4<f32>,
        groups: usize,
    ) -> Option<OneTap> {
        let fits = spec.kernel_size == (2, 2)
            && spec.stride == (2, 2)
            && spec.dilation == (1, 1)
            && spec.output_padding == (0, 0)
            && spec.pad_before() == (0, 0)
            && spec.pad_after() == (0, 0);
        let (in_channels, out_per_group, _, _) = weight.dim();
        if !fits || groups == 0 || out_per_group == 0 {
            return None;
        }
        let (kernel, block) = select(isa, out_per_group)?;
        let in_per_group = in_channels / groups;
        let blocks = out_per_group.div_ceil(block);
        let mut weights = Vec::with_capacity(groups * blocks * in_per_group * PHASES * block);
        for group in 0..groups {
            for b in 0..blocks {
                for c in 0..in_per_group {
                    for phase in 0..PHASES {
                        for j in b * block..(b + 1) * block {
                            let (a, bx) = (phase / 2, phase % 2);
                            weights.push(if j < out_per_group {
                                weight[[group * in_per_group + c, j, a, bx]]
                            } else {
                                0.0
                            });
                        }
                    }
                }
            }
        }
        Some(OneTap {
            kernel,
            block,
            weights,
            in_per_group,
            out_per_group,
            groups,
        })
    }

    /// Whether the family computes an output of shape `output` from an input of shape
    /// `input`: twice its height and width. A larger output asked for at run time (PyTorch's
    /// `output_size`: one more row or column, of bias only) goes to the row kernel.
    pub fn suits(
        &self,
        input: (usize, usize, usize, usize),
        output: (usize, usize, usize, usize),
    ) -> bool {
        (output.2, output.3) == (2 * input.2, 2 * input.3)
    }

    /// The transposed convolution of a checked `input` into `output` (standard layout, of
    /// the checked shape), adding `bias` (one per output channel).
    pub fn run(
        &self,
        bias: &[f32],
        input: &ArrayView4<f32>,
        output: &mut ArrayViewMut4<MaybeUninit<f32>>,
    ) {
        let (batch, _, in_h, in_w) = input.dim();
        let out_channels = self.groups * self.out_per_group;
        let (in_plane, out_plane) = (in_h * in_w, PHASES * in_h * in_w);
        // Read in place where the caller's array is in standard layout; a strided view is
        // copied once.
        let input = input.as_standard_layout();
        let input = input.as_slice().expect("standard layout");
        let out = SharedOutput(
            output
                .as_slice_mut()
                .expect("output is in standard layout")
                .as_mut_ptr(),
        );
        if batch == 0 || out_plane == 0 {
            return;
        }
        let multiply_adds = batch * out_channels * self.in_per_group * out_plane;
        let threads = forward_threads(multiply_adds);
        let images = batch * self.groups;
        let chunks = (threads * TASKS_PER_THREAD).div_ceil(images).clamp(1, in_h);
        let chunk_rows = in_h.div_ceil(chunks);
        let chunks = in_h.div_ceil(chunk_rows);
        let call_rows = (CALL_INPUT_FLOATS / (self.in_per_group * in_w).max(1)).clamp(1, in_h);
        let blocks = self.out_per_group.div_ceil(self.block);
        let block_weights = self.in_per_group * PHASES * self.block;

        // Input rows `rows` of image `image`'s group `group` into every block.
        let call = |image: usize, group: usize, rows: std::ops::Range<usize>| {
            let first_in = (image * self.groups + group) * self.in_per_group;
            let input = &input[first_in * in_plane..][..self.in_per_group * in_plane];
            for b in 0..blocks {
                let first = b * self.block;
                let count = self.block.min(self.out_per_group - first);
                let channel0 = group * self.out_per_group + first;
                let mut slices: [&mut [MaybeUninit<f32>]; MAX_BLOCK] =
                    std::array::from_fn(|_| <&mut [MaybeUninit<f32>]>::default());
                for (j, slice) in slices.iter_mut().take(count).enumerate() {
                    let start = (image * out_channels + channel0 + j) * out_plane
                        + rows.start * PHASES * in_w;
                    // SAFETY: `out` points at the whole output, `batch * out_channels *
                    // out_plane` floats in standard layout; output rows `2 * rows.start..2 *
                    // rows.end` of channel `channel0 + j` of `image` are inside it. Tasks
                    // take disjoint row ranges of disjoint (image, group)s, each block its
                    // own channels, one call at a time: no two live slices overlap.
                    *slice = unsafe { out.slice(start, rows.len() * PHASES * in_w) };
                }
                let mut job = PixelJob {
                    input,
                    channels: self.in_per_group,
                    plane: in_plane,
                    width: in_w,
                    rows: rows.clone(),
                    weights: &self.weights[(group * blocks + b) * block_weights..][..block_weights],
                    bias: &bias[channel0..channel0 + count],
                    out: &mut slices[..count],
                };
                self.kernel.run(&mut job);
            }
        };
        let task = |index: usize| {
            let (image, chunk) = (index / chunks, index % chunks);
            let (image, group) = (image / self.groups, image % self.groups);
            let rows = chunk * chunk_rows..((chunk + 1) * chunk_rows).min(in_h);
            for start in rows.clone().step_by(call_rows) {
                call(image, group, start..(start + call_rows).min(rows.end));
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
const MAX_BLOCK: usize = 4;

/// The blocking for `out_per_group` output channels on `isa`, and its block; none where the
/// row kernel runs the layer faster.
///
/// Four output channels by the four phases, 16 accumulators and one load per 16
/// multiply-adds on the sets of 32 registers: unet-up (128 to 64 channels) 1.09x faster
/// than the row kernel's paired blocking (Zen 4, one thread, five alternated rounds, median
/// 2.59 -> 2.37 ms, 113 GF/s; two threads 1.30 -> 1.18), where five (2.41) and six (2.62)
/// channels did worse. Three channels (an RGB image, the seed's upconvolution) take a block
/// of three, 12 accumulators: 0.025 -> 0.016 ms against the row kernel, with its copy of the
/// input. One or two channels take one by two vectors of pixels, 8 accumulators.
///
/// On AVX2's 16 registers a block of three (12 accumulators, a broadcast per multiply-add)
/// ran the seed's upconvolution 0.029 -> 0.024 ms, but unet-up 1.27x slower than the row
/// kernel (3.79 against 2.97 ms), and one channel by three vectors, which reads the input
/// once per channel, 1.7x slower: wider layers stay with the row kernel there. On NEON
/// (32 registers of four lanes) the AVX-512 blockings, unmeasured.
fn select(isa: Isa, out_per_group: usize) -> Option<(Compiled<OneTapFamily>, usize)> {
    let kernel = match Detected::or_portable(isa) {
        #[cfg(target_arch = "x86_64")]
        Detected::Avx512(simd) => match out_per_group {
            1 | 2 => (Compiled::new::<Pixels<1, 2>, _>(simd), 1),
            3 => (Compiled::new::<Pixels<3, 1>, _>(simd), 3),
            _ => (Compiled::new::<Pixels<4, 1>, _>(simd), 4),
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
