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
/// after `above` rows of zeros, and zero rows after the last.
///
/// Each float is written once where it can be: the data rows are zeroed only in their
/// margins (or, split into phases, row by row while the row is in cache), not as a whole
/// plane first. Zeroing the plane and then copying into it wrote the buffer twice: on
/// depthwise-d2, whose kernels do little work per float, that was about 5% of the samples
/// and the layer runs about 4% faster without it (Zen 3, `perf record`, one thread).
fn prepare_channel(
    source: &ArrayView2<f32>,
    input_shift: usize,
    layout: PlaneLayout,
    above: usize,
    target: &mut [f32],
) {
    let row_stride = layout.row_stride();
    let (top, rest) = target.split_at_mut(above * row_stride);
    top.fill(0.0);
    let (data, bottom) = rest.split_at_mut(source.nrows() * row_stride);
    bottom.fill(0.0);
    // A non-contiguous row is gathered here first, one buffer for the channel.
    let mut gathered = Vec::new();
    for (source, target) in source
        .axis_iter(Axis(0))
        .zip(data.chunks_exact_mut(row_stride))
    {
        let source = contiguous(&source, &mut gathered);
        if layout.col_phases == 1 {
            let (left, row) = target.split_at_mut(input_shift);
            let (row, right) = row.split_at_mut(source.len());
            left.fill(0.0);
            row.copy_from_slice(source);
            right.fill(0.0);
        } else {
            target.fill(0.0);
            split_row(source, input_shift, layout.col_phases, target);
        }
    }
}
