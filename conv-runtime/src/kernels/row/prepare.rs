//! Laying one image out for the row kernels: the prepared input a [`Prepared`](super::Prepared)
//! wraps.

use ndarray::{ArrayView3, Axis};
use rayon::prelude::*;

use crate::memory::layout::{PlaneLayout, lay_out_plane};

/// Below this many floats an input is laid out on the calling thread.
const PARALLEL_PREPARE: usize = 1 << 16;

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
    let one_channel = |(channel, target): (usize, &mut [f32])| {
        let source = image.index_axis(Axis(0), channel);
        lay_out_plane(&source, layout, (above, input_shift), target, |_| {});
    };
    let stride = layout.channel_stride();
    if threads > 1 && scratch.len() >= PARALLEL_PREPARE {
        scratch
            .par_chunks_mut(stride)
            .enumerate()
            .for_each(one_channel);
    } else {
        scratch.chunks_mut(stride).enumerate().for_each(one_channel);
    }
}
