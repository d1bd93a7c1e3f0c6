//! Winograd on the phases of a strided transposed convolution whose filter is three strides
//! wide (`k = 3 * s`: super-resolution's 9x9 upsampler of stride 3).
//!
//! Output `y` of a transposed convolution of stride `s` and padding `p` gathers input `iy`
//! times tap `ky` where `y = s * iy - p + ky`. Writing `ky = r + s * j` (`r < s`, `j < 3`)
//! and `q = iy + j` gives `y + p = s * q + r`: the outputs with `(y + p) % s == r` form
//! phase `r`, output `q = (y + p) / s` of which is
//! `input[q] * w[r] + input[q - 1] * w[r + s] + input[q - 2] * w[r + 2 * s]`, a 3x3 stride-1
//! convolution of the input with the phase's taps turned around. All `sh * sw` phases read the same input, so they are one such
//! convolution with `sh * sw` times the output channels, on the grid of `q` from the first
//! output's: the dense Winograd kernel computes it (every input tile transformed once for
//! all phases), and the phases' outputs go to their rows and columns `s` apart.
//!
//! sr-x3 (32 -> 3 channels, 64x64 input) becomes a 32 -> 27 channel 3x3 layer on 64x64:
//! 16 multiply-adds per 2x2 tile and channel pair where the row kernel takes 36.
//!
//! The convolution of that geometry (the input gradient of such a layer) is the adjoint:
//! output `q` reads input `s * (q + j) + r - p` times tap `r + s * j`, so the input's
//! phases, gathered into `sh * sw` times the input channels, make it a 3x3 stride-1
//! convolution ([`plan_strided`]).

use std::mem::MaybeUninit;

use ndarray::{Array4, ArrayView4, ArrayViewMut4};
use rayon::prelude::*;

use super::{K, MIN_CHANNELS, Winograd, transform_weights};
use crate::isa::{Compiled, Isa};
use crate::kernels::forward_threads;
use crate::kernels::winograd::kernel::Tiles;
use crate::memory::aligned::AlignedFloats;
use crate::memory::scratch::with_scratch;
use crate::shape::geometry::GeometrySpec;

/// How a strided layer maps onto its phases' stride-1 convolution.
#[derive(Clone, Debug)]
pub(super) enum Phases {
    /// A transposed convolution: the phase convolution's output channels are its output
    /// channels phase by phase, scattered to their rows and columns.
    Outputs(OutputPhases),
    /// A convolution: the phase convolution's input channels are the input's channels phase
    /// by phase, gathered from their rows and columns.
    Inputs(InputPhases),
}

#[derive(Clone, Debug)]
pub(super) struct OutputPhases {
    /// The transposed convolution's stride and padding above and left of its output.
    stride: (usize, usize),
    pad: (usize, usize),
    /// The grid index `q = p / s` of output 0, per axis: the first grid row and column.
    first: (usize, usize),
    /// The transposed convolution's output channels.
    out_channels: usize,
}

#[derive(Clone, Debug)]
pub(super) struct InputPhases {
    /// The convolution's stride and padding above and left of its input.
    stride: (usize, usize),
    pad: (usize, usize),
}

/// The Winograd packing of a transposed convolution of `spec` with `weight` (`[in_channels,
/// out_channels, kh, kw]`), if it is one whose phases the family runs: one group, no
/// dilation, a stride above 1 and a filter of three strides on both axes, padding of less
/// than three strides on every side (so that each phase's convolution pads its input by
/// at most two), and at least `MIN_CHANNELS` input channels and phase channels.
pub(super) fn plan(
    isa: Isa,
    spec: GeometrySpec,
    weight: &Array4<f32>,
    groups: usize,
) -> Option<Winograd> {
    let (in_channels, out_channels, kh, kw) = weight.dim();
    let (sh, sw) = spec.stride;
    let (pad, pad_after) = (spec.pad_before(), spec.pad_after());
    let phase_channels = sh * sw * out_channels;
    let fits = three_strides_wide(&spec, (kh, kw), groups)
        && pad.0.max(pad_after.0) < K * sh
        && pad.1.max(pad_after.1) < K * sw
        && in_channels >= MIN_CHANNELS
        && phase_channels >= MIN_CHANNELS;
    if !fits {
        return None;
    }
    let first = (pad.0 / sh, pad.1 / sw);
    // Phase channel `(ry * sw + rx) * out_channels + o`, tap `(ty, tx)` of the phase
    // convolution reads input `q - 2 + t`: the transposed filter's `j = 2 - t`.
    let phase_weight = Array4::from_shape_fn(
        (phase_channels, in_channels, K, K),
        |(channel, i, ty, tx)| {
            let (phase, o) = (channel / out_channels, channel % out_channels);
            let (ry, rx) = (phase / sw, phase % sw);
            weight[[i, o, ry + sh * (K - 1 - ty), rx + sw * (K - 1 - tx)]]
        },
    );
    Some(Winograd {
        kernel: Compiled::for_isa::<Tiles>(isa),
        pad: (K - 1 - first.0, K - 1 - first.1),
        dilation: (1, 1),
        weights: AlignedFloats::from(transform_weights(&phase_weight)),
        out_channels: phase_channels,
        phases: Some(Phases::Outputs(OutputPhases {
            stride: spec.stride,
            pad,
            first,
            out_channels,
        })),
        strided: false,
    })
}

/// The Winograd packing of a convolution of `spec` with `weight` (`[out_channels,
/// in_channels, kh, kw]`), if it is one whose input phases the family runs: one group, no
/// dilation, a stride above 1 and a filter of three strides on both axes, and
/// at least `MIN_CHANNELS` output channels and input phase channels. The input gradient of
/// a transposed layer that [`plan`] runs is one.
///
/// Output `q` of a convolution of stride `s` and padding `p` reads input `s * q - p + ky`;
/// with `ky = r + s * j`, that is `s * (q + j) + r - p`, so it is a 3x3 stride-1
/// convolution (no padding) of the grid whose phase `r` holds input `s * m + r - p` at
/// index `m` (zero outside the input).
pub(super) fn plan_strided(
    isa: Isa,
    spec: GeometrySpec,
    weight: &Array4<f32>,
    groups: usize,
) -> Option<Winograd> {
    let (out_channels, in_channels, kh, kw) = weight.dim();
    let (sh, sw) = spec.stride;
    let phase_channels = sh * sw * in_channels;
    let fits = three_strides_wide(&spec, (kh, kw), groups)
        && out_channels >= MIN_CHANNELS
        && phase_channels >= MIN_CHANNELS;
    if !fits {
        return None;
    }
    // Input channel `(ry * sw + rx) * in_channels + i`, tap `(jy, jx)`.
    let phase_weight = Array4::from_shape_fn(
        (out_channels, phase_channels, K, K),
        |(o, channel, jy, jx)| {
            let (phase, i) = (channel / in_channels, channel % in_channels);
            let (ry, rx) = (phase / sw, phase % sw);
            weight[[o, i, ry + sh * jy, rx + sw * jx]]
        },
    );
    Some(Winograd {
        kernel: Compiled::for_isa::<Tiles>(isa),
        pad: (0, 0),
        dilation: (1, 1),
        weights: AlignedFloats::from(transform_weights(&phase_weight)),
        out_channels,
        phases: Some(Phases::Inputs(InputPhases {
            stride: spec.stride,
            pad: spec.pad_before(),
        })),
        strided: false,
    })
}

/// Whether a layer of `spec` with filters of `kernel_size` in `groups` has the phases the
/// family runs: one group, no dilation, a stride above 1 and a filter of three strides on
/// both axes.
fn three_strides_wide(spec: &GeometrySpec, kernel_size: (usize, usize), groups: usize) -> bool {
    let (sh, sw) = spec.stride;
    groups == 1
        && spec.dilation == (1, 1)
        && spec.stride != (1, 1)
        && kernel_size == (K * sh, K * sw)
}

/// The layer on a checked `input` into `output` (standard layout, of the checked shape) by
/// `winograd`, planned as `phases`, adding `bias` (one per output channel).
pub(super) fn run(
    winograd: &Winograd,
    phases: &Phases,
    bias: &[f32],
    input: &ArrayView4<f32>,
    output: &mut ArrayViewMut4<MaybeUninit<f32>>,
) {
    match phases {
        Phases::Outputs(phases) => scatter_outputs(winograd, phases, bias, input, output),
        Phases::Inputs(phases) => gather_inputs(winograd, phases, bias, input, output),
    }
}

/// A transposed convolution: the phase convolution into a grid, then each output plane
/// from its phases' grid planes.
fn scatter_outputs(
    winograd: &Winograd,
    &OutputPhases {
        stride: (sh, sw),
        pad,
        first,
        out_channels,
    }: &OutputPhases,
    bias: &[f32],
    input: &ArrayView4<f32>,
    output: &mut ArrayViewMut4<MaybeUninit<f32>>,
) {
    let (batch, channels, out_h, out_w) = output.dim();
    assert_eq!(channels, out_channels);
    if batch * out_channels * out_h * out_w == 0 {
        return;
    }
    // The grid runs from output 0's `q` to the last output's.
    let grid_h = (out_h - 1 + pad.0) / sh + 1 - first.0;
    let grid_w = (out_w - 1 + pad.1) / sw + 1 - first.1;
    let phase_bias: Vec<f32> = bias
        .iter()
        .copied()
        .cycle()
        .take(sh * sw * out_channels)
        .collect();
    let mut grid = Array4::uninit((batch, winograd.out_channels, grid_h, grid_w));
    winograd.run_dense(&phase_bias, input, &mut grid.view_mut());
    // SAFETY: the dense run writes every element of its standard-layout output.
    let grid = unsafe { grid.assume_init() };
    let grid = grid.as_slice().expect("standard layout");
    let grid_plane = grid_h * grid_w;
    let row_phases: Vec<(Span, usize)> = (0..sh)
        .map(|ry| phase_axis(ry, sh, pad.0, first.0, out_h))
        .collect();
    // Where each output column reads, from its row phase's grid row of phase column 0:
    // its column phase's plane, then its grid column.
    let mut column_offsets = vec![0; out_w];
    for rx in 0..sw {
        let (columns, first_column) = phase_axis(rx, sw, pad.1, first.1, out_w);
        for index in 0..columns.len {
            let offset = rx * out_channels * grid_plane + columns.start + index;
            column_offsets[first_column + index * sw] = offset;
        }
    }
    // Each output plane from its phases' grid planes, row by row, each row's columns in
    // order (stores in order, loads from `sw` grid rows).
    let scatter = |(index, plane): (usize, &mut [MaybeUninit<f32>])| {
        let (image, channel) = (index / out_channels, index % out_channels);
        for (ry, (rows, first_row)) in row_phases.iter().enumerate() {
            let phase_channel = image * winograd.out_channels + ry * sw * out_channels + channel;
            for row in 0..rows.len {
                let from = &grid[phase_channel * grid_plane + (rows.start + row) * grid_w..];
                let to = &mut plane[(first_row + row * sh) * out_w..][..out_w];
                for (slot, &offset) in to.iter_mut().zip(&column_offsets) {
                    slot.write(from[offset]);
                }
            }
        }
    };
    let output = output.as_slice_mut().expect("output is in standard layout");
    let plane = out_h * out_w;
    let threads = forward_threads(out_channels * input.dim().1 * plane * 9);
    if threads == 1 {
        output.chunks_exact_mut(plane).enumerate().for_each(scatter);
    } else {
        output
            .par_chunks_exact_mut(plane)
            .enumerate()
            .for_each(scatter);
    }
}

/// A convolution: each input plane's phases into the grid's planes, then the phase
/// convolution of the grid.
fn gather_inputs(
    winograd: &Winograd,
    &InputPhases {
        stride: (sh, sw),
        pad,
    }: &InputPhases,
    bias: &[f32],
    input: &ArrayView4<f32>,
    output: &mut ArrayViewMut4<MaybeUninit<f32>>,
) {
    let (batch, in_channels, in_h, in_w) = input.dim();
    let (out_h, out_w) = (output.dim().2, output.dim().3);
    // Output `q` reads grid indices `q..q + 3`.
    let (grid_h, grid_w) = (out_h + K - 1, out_w + K - 1);
    let phase_channels = sh * sw * in_channels;
    let grid_plane = grid_h * grid_w;
    let row_phases: Vec<(Span, usize)> = (0..sh)
        .map(|ry| input_phase(ry, sh, pad.0, in_h, grid_h))
        .collect();
    let column_phases: Vec<(Span, usize)> = (0..sw)
        .map(|rx| input_phase(rx, sw, pad.1, in_w, grid_w))
        .collect();
    // Each grid plane (one phase of one input channel) from its input plane's rows and
    // columns of that phase, zeros around them. Plane by plane, so that the planes are
    // gathered in parallel: gathered on the calling thread, input row by input row, the
    // gather and the zeroing before it were a tenth of sr-x3's backward, left serial while
    // the second thread waited (Intel Xeon, two threads, `perf record`).
    let input = input.as_standard_layout();
    let input = input.as_slice().expect("standard layout");
    let in_plane = in_h * in_w;
    let gather = |(index, plane): (usize, &mut [f32])| {
        let (image, phase_channel) = (index / phase_channels, index % phase_channels);
        let (phase, channel) = (phase_channel / in_channels, phase_channel % in_channels);
        let ((rows, first_row), (columns, first_column)) =
            (&row_phases[phase / sw], &column_phases[phase % sw]);
        let (above, rest) = plane.split_at_mut(rows.start * grid_w);
        above.fill(0.0);
        let (data, below) = rest.split_at_mut(rows.len * grid_w);
        below.fill(0.0);
        let source = &input[(image * in_channels + channel) * in_plane..][..in_plane];
        for (row, to) in data.chunks_exact_mut(grid_w).enumerate() {
            let (left, to) = to.split_at_mut(columns.start);
            let (to, right) = to.split_at_mut(columns.len);
            left.fill(0.0);
            right.fill(0.0);
            if columns.len == 0 {
                // An input narrower than the stride: the phase reads nothing.
                continue;
            }
            // Every `sw`-th value of the row from the phase's first column. The gather waits
            // mostly on its reads: each grad line is read once per column phase.
            let from = &source[(first_row + row * sh) * in_w + first_column..];
            every_nth(from, sw, to);
        }
    };
    let grid_len = batch * phase_channels * grid_plane;
    let threads = forward_threads(output.len() * phase_channels * K * K);
    with_scratch(grid_len, |grid| {
        if threads == 1 {
            grid.chunks_exact_mut(grid_plane)
                .enumerate()
                .for_each(gather);
        } else {
            grid.par_chunks_exact_mut(grid_plane)
                .enumerate()
                .for_each(gather);
        }
        let grid = ArrayView4::from_shape((batch, phase_channels, grid_h, grid_w), grid)
            .expect("the grid's shape");
        winograd.run_dense(bias, &grid, output);
    });
}

/// Fills `to` with every `step`-th value of `from` from its first, as whole groups of
/// `step` and then the last value alone (a last whole group could run past `from`):
/// `step_by` recounted what was left at every value, and the gather's share of sr-x3's
/// backward went 6.6% -> 6.0% of `perf record` samples without it (Intel Xeon, one
/// thread). The common strides are arms of their own, so that the step is a constant
/// there: a value, it cost a multiplication per float (`perf annotate`, stride 3).
fn every_nth(from: &[f32], step: usize, to: &mut [f32]) {
    #[inline(always)]
    fn gather(from: &[f32], step: usize, to: &mut [f32]) {
        let Some((last, body)) = to.split_last_mut() else {
            return;
        };
        for (slot, group) in body.iter_mut().zip(from.chunks_exact(step)) {
            *slot = group[0];
        }
        *last = from[body.len() * step];
    }
    match step {
        2 => gather(from, 2, to),
        3 => gather(from, 3, to),
        4 => gather(from, 4, to),
        _ => gather(from, step, to),
    }
}

/// Grid indices from `start`, `len` of them.
struct Span {
    start: usize,
    len: usize,
}

/// Phase `r`'s outputs along an axis of `outputs` with stride `s` and padding `pad`, whose
/// grid starts at `first`: their grid indices, and the first output (the rest follow `s`
/// apart). Output `y` is in phase `(y + pad) % s`, at grid index `(y + pad) / s - first`.
fn phase_axis(r: usize, s: usize, pad: usize, first: usize, outputs: usize) -> (Span, usize) {
    let first_output = (r + s - pad % s) % s;
    let len = outputs.saturating_sub(first_output).div_ceil(s);
    let start = (first_output + pad) / s - first;
    (Span { start, len }, first_output)
}

/// Input phase `r` along an axis of `inputs` with stride `s` and padding `pad`, in a grid of
/// `grid` indices: the indices `m` whose input `s * m + r - pad` is inside the input, and
/// the first of those inputs (the rest follow `s` apart).
fn input_phase(r: usize, s: usize, pad: usize, inputs: usize, grid: usize) -> (Span, usize) {
    let start = pad.saturating_sub(r).div_ceil(s);
    let first_input = s * start + r - pad;
    let len = inputs
        .saturating_sub(first_input)
        .div_ceil(s)
        .min(grid.saturating_sub(start));
    (Span { start, len }, first_input)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every output of an axis falls in exactly one phase, at the grid index its `q` says,
    /// inside the grid the run allocates.
    #[test]
    fn phases_cover_every_output_once() {
        for s in 1..5 {
            for pad in 0..3 * s {
                let first = pad / s;
                for outputs in 1..20 {
                    let grid = (outputs - 1 + pad) / s + 1 - first;
                    let mut seen = vec![0; outputs];
                    for r in 0..s {
                        let (span, first_output) = phase_axis(r, s, pad, first, outputs);
                        assert!(span.start + span.len <= grid);
                        for i in 0..span.len {
                            let y = first_output + i * s;
                            assert_eq!((y + pad) % s, r);
                            assert_eq!((y + pad) / s - first, span.start + i);
                            seen[y] += 1;
                        }
                    }
                    assert!(seen.iter().all(|&n| n == 1), "s {s} pad {pad} n {outputs}");
                }
            }
        }
    }

    /// Each input phase holds exactly the inputs of its phase that the grid reaches, at the
    /// grid index that reads them, and every input inside the grid is in one.
    #[test]
    fn input_phases_hold_every_input_the_grid_reads() {
        for s in 2..5 {
            for pad in 0..4 * s {
                for inputs in 1..20 {
                    for grid in [1, 3, 9, 20] {
                        let mut seen = vec![0; inputs];
                        for r in 0..s {
                            let (span, first_input) = input_phase(r, s, pad, inputs, grid);
                            assert!(span.len == 0 || span.start + span.len <= grid);
                            for i in 0..span.len {
                                let x = first_input + i * s;
                                assert!(x < inputs);
                                assert_eq!(s * (span.start + i) + r, x + pad);
                                seen[x] += 1;
                            }
                        }
                        // The grid reaches input `s * (grid - 1) + s - 1 - pad` at most.
                        for (x, &n) in seen.iter().enumerate() {
                            let reached = x + pad < s * grid;
                            assert_eq!(n, usize::from(reached), "s {s} pad {pad} x {x}");
                        }
                    }
                }
            }
        }
    }
}
