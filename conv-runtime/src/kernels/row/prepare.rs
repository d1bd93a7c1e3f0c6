//! Laying one image out for the row kernels: the prepared input a [`Prepared`](super::Prepared)
//! wraps.

use ndarray::{ArrayView3, Axis};
use rayon::prelude::*;

use crate::memory::layout::{PlaneLayout, lay_out_plane};

/// Below this many floats an input is laid out on the calling thread.
pub(crate) const PARALLEL_PREPARE: usize = 1 << 16;

/// Copies one image into the kernels' layout: zeros around it (`above` rows of them on
/// top), columns split into `layout.col_phases` phases. Reads any strides, so non-contiguous
/// inputs cost nothing extra.
pub(crate) fn prepare(
    image: &ArrayView3<f32>,
    input_shift: usize,
    layout: PlaneLayout,
    above: usize,
    scratch: &mut [f32],
    threads: usize,
) {
    each_channel(
        scratch,
        layout.channel_stride(),
        threads,
        |channel, target| {
            let source = image.index_axis(Axis(0), channel);
            lay_out_plane(&source, layout, (above, input_shift), target, |_| {});
        },
    );
}

/// Calls `lay_out` with each channel's index and its `stride` floats of `scratch`: on `threads`
/// threads where there is enough to lay out, else on the calling thread.
pub(crate) fn each_channel(
    scratch: &mut [f32],
    stride: usize,
    threads: usize,
    lay_out: impl Fn(usize, &mut [f32]) + Send + Sync,
) {
    let one_channel = |(channel, target): (usize, &mut [f32])| lay_out(channel, target);
    if threads > 1 && scratch.len() >= PARALLEL_PREPARE {
        scratch
            .par_chunks_mut(stride)
            .enumerate()
            .for_each(one_channel);
    } else {
        scratch.chunks_mut(stride).enumerate().for_each(one_channel);
    }
}
