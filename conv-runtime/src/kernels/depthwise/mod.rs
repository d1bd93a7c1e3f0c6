//! The depthwise family: convolutions of stride 1 with one input and one output channel per
//! group (the separable layers of MobileNet, the depthwise-d2 case of the suite), one channel
//! plane per kernel call.
//!
//! The row kernel runs them poorly: a depthwise row has no channel reduction to spread a
//! call's set-up over (64 outputs by 9 taps in depthwise-d2), and laying the whole image out
//! first, every plane copied to memory and read back once, was a third of that layer's time
//! (Zen 3, `perf record`). Here each task keeps one padded plane in a buffer of its thread
//! (depthwise-d2: 68 x 80 floats, 22 KB, in L1), whose zero margins are written once per
//! task; each call copies its channel into that buffer and computes the channel's whole
//! output plane from it.
//!
//! The taps are run-time offsets, not `conv!` constants: with no reduction to unroll, a loop
//! over a few taps is as fast as straight-line code, and the kernel is compiled once, in this
//! crate, so depthwise layers add nothing to a geometry's build cost.

mod kernel;

use std::mem::MaybeUninit;

use ndarray::{Array4, ArrayView4, ArrayViewMut4};
use rayon::prelude::*;

use self::kernel::{Plane, PlaneFamily, PlaneJob};
use crate::isa::{Compiled, Isa};
use crate::kernels::{TASKS_PER_THREAD, forward_threads};
use crate::memory::aligned::AlignedFloats;
use crate::memory::scratch::with_scratch;
use crate::shape::geometry::GeometrySpec;

/// The widest vector of any instruction set, in floats: padded rows are at least the output
/// row rounded up to it, so that a row's last vector reads inside its row.
const WIDEST_VECTOR: usize = 16;

/// A depthwise convolution, packed for the plane kernel.
#[derive(Clone)]
pub(crate) struct Depthwise {
    kernel: Compiled<PlaneFamily>,
    spec: GeometrySpec,
    /// `[channel][kh * kw]`.
    weights: AlignedFloats,
}

impl Depthwise {
    /// The plane kernel's packing of a convolution of `spec` with `weight` (`[out_channels,
    /// in_channels / groups, kh, kw]`), on `isa` (the portable set where `isa` is not
    /// available), if the convolution is depthwise of stride 1.
    pub fn plan(
        isa: Isa,
        spec: GeometrySpec,
        weight: &Array4<f32>,
        groups: usize,
    ) -> Option<Depthwise> {
        let (out_channels, in_per_group, kh, kw) = weight.dim();
        let depthwise = in_per_group == 1 && out_channels == groups;
        if !depthwise || spec.stride != (1, 1) || kh * kw == 0 {
            return None;
        }
        let kernel = Compiled::for_isa::<Plane>(isa);
        Some(Depthwise {
            kernel,
            spec,
            weights: AlignedFloats::from(weight.iter().copied().collect::<Vec<_>>()),
        })
    }

    /// The convolution of a checked `input` into `output` (standard layout, of the checked
    /// shape), adding `bias` (one per channel).
    pub fn run(
        &self,
        bias: &[f32],
        input: &ArrayView4<f32>,
        output: &mut ArrayViewMut4<MaybeUninit<f32>>,
    ) {
        let (batch, channels, in_h, in_w) = input.dim();
        let (out_h, out_w) = (output.dim().2, output.dim().3);
        let (kh, kw) = self.spec.kernel_size;
        let (dh, dw) = self.spec.dilation;
        let taps = kh * kw;
        // Stride 1: the padded plane is the output plus the filter's reach, which holds the
        // input and its padding. Each input row starts on a whole vector, so that the copy
        // into the plane stores whole vectors (depthwise-d2 2% faster): its left margin is
        // the zeros at the end of the row above, or of `first_column`, a vector's margin
        // before the plane's first row.
        let (top, left) = self.spec.pad_before();
        let first_column = left.next_multiple_of(WIDEST_VECTOR);
        let row_stride = (in_w + left)
            .max(out_w.next_multiple_of(WIDEST_VECTOR) + (kw - 1) * dw - left)
            .next_multiple_of(WIDEST_VECTOR);
        let rows = out_h + (kh - 1) * dh;
        assert!(top + in_h <= rows);
        let first = top * row_stride + first_column;
        // Output (0, 0)'s window starts `left` columns before input (0, 0).
        let origin = first_column - left;
        let offsets: Vec<usize> = (0..taps)
            .map(|t| origin + t / kw * dh * row_stride + t % kw * dw)
            .collect();

        // The kernel reads each plane as one slice: a strided input is copied once.
        let input = input.as_standard_layout();
        let input = input.as_slice().expect("standard layout");
        let output = output.as_slice_mut().expect("output is in standard layout");
        let (in_plane, out_plane) = (in_h * in_w, out_h * out_w);
        let planes = batch * channels;
        if planes == 0 || out_plane == 0 {
            return;
        }

        let threads = forward_threads(planes * out_plane * taps);
        let per_task = planes.div_ceil(threads * TASKS_PER_THREAD);
        let task = |(index, out): (usize, &mut [MaybeUninit<f32>])| {
            with_scratch(rows * row_stride + first_column, |padded| {
                padded.fill(0.0);
                for (i, out) in out.chunks_exact_mut(out_plane).enumerate() {
                    let plane = index * per_task + i;
                    let channel = plane % channels;
                    let mut job = PlaneJob {
                        source: &input[plane * in_plane..][..in_plane],
                        in_w,
                        padded: &mut *padded,
                        row_stride,
                        first,
                        offsets: &offsets,
                        kernel_rows: kh,
                        row_dilation: dh,
                        weights: &self.weights[channel * taps..][..taps],
                        bias: bias[channel],
                        out,
                        out_w,
                    };
                    self.kernel.run(&mut job);
                }
            });
        };
        let task_len = per_task * out_plane;
        if threads == 1 {
            output.chunks_mut(task_len).enumerate().for_each(task);
        } else {
            output.par_chunks_mut(task_len).enumerate().for_each(task);
        }
    }
}
