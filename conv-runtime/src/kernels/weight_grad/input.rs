//! The input operand of the weight gradient, shared by both kernels: each channel zero-padded
//! on every side and split into column-stride phases, so that a tap's input values for
//! consecutive grid columns are contiguous.

use ndarray::{ArrayView2, ArrayView4, Axis};

use super::{all_finite, fill_chunks};
use crate::memory::layout::{PlaneLayout, lay_out_plane};

/// Lays the input out for the kernel in `buffer`, and says whether every value is finite. Zeros
/// around the data and in the extra channel; columns split into `col_phases` phases, prepared
/// column `c` (input column `c - pad_left`) in phase `c % col_phases` at `c / col_phases`.
pub(crate) fn prepare_input(
    input: &ArrayView4<f32>,
    layout: PlaneLayout,
    (pad_top, pad_left): (usize, usize),
    parallel: bool,
    buffer: &mut [f32],
) -> bool {
    let channels = input.dim().1;
    let one_channel = |(index, target): (usize, &mut [f32])| -> bool {
        let (image, channel) = (index / layout.channels, index % layout.channels);
        if channel == channels {
            target.fill(0.0);
            return true; // The zero channel.
        }
        let plane = input.index_axis(Axis(0), image);
        let plane = plane.index_axis(Axis(0), channel);
        prepare_plane(&plane, layout, (pad_top, pad_left), target)
    };
    fill_chunks(buffer, layout.channel_stride(), parallel, one_channel)
}

/// One channel of [`prepare_input`]; whether its values are all finite.
fn prepare_plane(
    source: &ArrayView2<f32>,
    layout: PlaneLayout,
    pads: (usize, usize),
    target: &mut [f32],
) -> bool {
    let mut finite = true;
    lay_out_plane(source, layout, pads, target, |row| {
        finite &= all_finite(row);
    });
    finite
}
