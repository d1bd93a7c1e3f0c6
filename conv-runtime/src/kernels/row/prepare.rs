//! Laying one image out for the row kernels: the prepared input a [`Prepared`](super::Prepared)
//! wraps.

use ndarray::{ArrayView2, ArrayView3, Axis};
use rayon::prelude::*;

use crate::memory::layout::{PlaneLayout, contiguous, split_row};

/// Below this many floats an input is laid out on the calling thread.
const PARALLEL_PREPARE: usize = 1 << 16;

/// Copies one image into the kernels' layout: zeros around it (`above` rows of them on
/// top), columns split into `layout.col_phases` phases. Reads any strides, so non-contiguous
/// inputs cost nothing extra.
pub(super) fn prepare(
    image: &ArrayView3<f32>,
    input_shift: usize,
    layout: PlaneLayout,
    above: usize,
    scratch: &mut [f32],
    threads: usize,
) {
    let one_channel = |(channel, target): (usize, &mut [f32])| {
        prepare_channel(
            &image.index_axis(Axis(0), channel),
            input_shift,
            layout,
            above,
            target,
        )
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

/// One channel of [`prepare`]: each input row into `col_stride` zero-padded phase rows,
/// after `above` rows of zeros.
fn prepare_channel(
    source: &ArrayView2<f32>,
    input_shift: usize,
    layout: PlaneLayout,
    above: usize,
    target: &mut [f32],
) {
    target.fill(0.0);
    let target = &mut target[above * layout.row_stride()..];
    // A non-contiguous row is gathered here first, one buffer for the channel.
    let mut gathered = Vec::new();
    for (source, target) in source
        .axis_iter(Axis(0))
        .zip(target.chunks_mut(layout.row_stride()))
    {
        let source = contiguous(&source, &mut gathered);
        split_row(source, input_shift, layout.col_phases, target);
    }
}
