//! Padding that is not zeros, as data: the padded copy of an input that a convolution with
//! `padding_mode = reflect`, `replicate` or `circular` runs its kernels on, and the adjoint
//! of that copy, which folds the padded input's gradient back onto the input.
//!
//! Both map each padded position to the input element it holds with
//! [`PaddingMode::source`](crate::shape::geometry::PaddingMode::source), one axis at a time: a padded row is a copy of one input row
//! with its margins filled from that row.

use ndarray::{Array4, ArrayView4, s};

use super::layout::contiguous;
use super::scratch::with_scratch;

use crate::shape::geometry::GeometrySpec;

/// Lends `f` a view of `x` with `spec`'s padding around each plane, filled as its mode says,
/// in a buffer of the thread's pool (as the kernels' layouts are, see `memory::scratch`; no
/// gain was measured against a fresh array here). The input must be large enough for the mode
/// ([`GeometrySpec::padding_min_input`]); a position the mode does not fill (zero padding)
/// is a zero.
pub(crate) fn with_padded<R>(
    spec: &GeometrySpec,
    x: &ArrayView4<f32>,
    f: impl FnOnce(&ArrayView4<f32>) -> R,
) -> R {
    let (batch, channels, h, w) = x.dim();
    let (padded_h, padded_w) = spec.padded_size((h, w));
    let shape = (batch, channels, padded_h, padded_w);
    with_scratch(batch * channels * padded_h * padded_w, |buffer| {
        pad_into(spec, x, (padded_h, padded_w), buffer);
        let padded = ArrayView4::from_shape(shape, &*buffer).expect("the buffer's length");
        f(&padded)
    })
}

/// Writes every element of `target`, the padded planes of `x` (`padded` high and wide, in
/// standard layout): `x` in the interior, the border as `spec`'s mode fills it. Rows are
/// copied as slices, and only the margins are looked up one by one: on a 3-channel 64x64
/// input, indexing every element through ndarray took a fifth of the layer's time.
fn pad_into(spec: &GeometrySpec, x: &ArrayView4<f32>, padded: (usize, usize), target: &mut [f32]) {
    let (_, _, h, w) = x.dim();
    let (padded_h, padded_w) = padded;
    let (top, left) = spec.pad_before();
    let rows = sources(spec, top, padded_h, h);
    let cols = sources(spec, left, padded_w, w);
    let (left_cols, rest) = cols.split_at(left);
    let right_cols = &rest[w..];
    let planes = x.outer_iter().flat_map(|image| image.into_outer_iter());
    let mut gathered = Vec::new();
    for (source, target) in planes.zip(target.chunks_exact_mut(padded_h * padded_w)) {
        for (target_row, row) in target.chunks_exact_mut(padded_w).zip(&rows) {
            let Some(row) = *row else {
                target_row.fill(0.0);
                continue;
            };
            let source_row = source.row(row);
            let source_row = contiguous(&source_row, &mut gathered);
            let (left_part, rest) = target_row.split_at_mut(left);
            let (interior, right_part) = rest.split_at_mut(w);
            interior.copy_from_slice(source_row);
            for (value, col) in left_part.iter_mut().zip(left_cols) {
                *value = col.map_or(0.0, |col| source_row[col]);
            }
            for (value, col) in right_part.iter_mut().zip(right_cols) {
                *value = col.map_or(0.0, |col| source_row[col]);
            }
        }
    }
}

/// The gradient with respect to an input of `size` `(h, w)`, from `padded`, the gradient
/// with respect to its padded copy: each input element receives the gradient of every
/// padded position that holds it.
pub(crate) fn fold(spec: &GeometrySpec, padded: &Array4<f32>, size: (usize, usize)) -> Array4<f32> {
    let (h, w) = size;
    let (_, _, padded_h, padded_w) = padded.dim();
    let (top, left) = spec.pad_before();
    let rows = sources(spec, top, padded_h, h);
    let cols = sources(spec, left, padded_w, w);
    let mut input = padded
        .slice(s![.., .., top..top + h, left..left + w])
        .as_standard_layout()
        .into_owned();
    let planes = padded
        .outer_iter()
        .flat_map(|image| image.into_outer_iter());
    let targets = input.as_slice_mut().expect("standard layout");
    for (source, target) in planes.zip(targets.chunks_exact_mut(h * w)) {
        for (i, (source_row, row)) in source.outer_iter().zip(&rows).enumerate() {
            // A zero of the padding holds no input element: its gradient goes nowhere.
            let Some(row) = *row else { continue };
            let target_row = &mut target[row * w..(row + 1) * w];
            // An interior row's own columns were copied above; a border row has none.
            let columns: Box<dyn Iterator<Item = usize>> = if (top..top + h).contains(&i) {
                Box::new((0..left).chain(left + w..padded_w))
            } else {
                Box::new(0..padded_w)
            };
            for j in columns {
                if let Some(col) = cols[j] {
                    target_row[col] += source_row[j];
                }
            }
        }
    }
    input
}

/// For each of the `padded` positions of one axis, the input index it holds (`None` for a
/// zero), where the input (`len` long) starts at position `before`. The layer has checked
/// that the input is long enough for the mode, so every other mode reaches an element.
fn sources(spec: &GeometrySpec, before: usize, padded: usize, len: usize) -> Vec<Option<usize>> {
    (0..padded)
        .map(|position| {
            let index = position as isize - before as isize;
            spec.padding_mode.source(index, len)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shape::geometry::{Padding, PaddingMode};
    use ndarray::Array;

    fn spec(mode: PaddingMode, padding: Padding) -> GeometrySpec {
        GeometrySpec {
            kernel_size: (2, 3),
            stride: (1, 1),
            padding,
            padding_mode: mode,
            dilation: (1, 1),
            output_padding: (0, 0),
        }
    }

    fn pad(spec: &GeometrySpec, x: &ArrayView4<f32>) -> Array4<f32> {
        with_padded(spec, x, |padded| padded.to_owned())
    }

    #[test]
    fn reflect_mirrors_rows_and_columns_about_the_edge() {
        let x = Array::from_shape_fn((1, 1, 3, 3), |(_, _, i, j)| (10 * i + j) as f32);
        let padded = pad(
            &spec(PaddingMode::Reflect, Padding::Explicit(1, 2)),
            &x.view(),
        );
        assert_eq!(padded.dim(), (1, 1, 5, 7));
        assert_eq!(
            padded.slice(s![0, 0, 0, ..]).to_vec(),
            [12.0, 11.0, 10.0, 11.0, 12.0, 11.0, 10.0]
        );
        assert_eq!(
            padded.slice(s![0, 0, 4, ..]).to_vec(),
            [12.0, 11.0, 10.0, 11.0, 12.0, 11.0, 10.0]
        );
        assert_eq!(
            padded.slice(s![0, 0, 2, ..]).to_vec(),
            [12.0, 11.0, 10.0, 11.0, 12.0, 11.0, 10.0]
        );
    }

    /// `fold` is the adjoint of `pad`: <pad(x), y> = <x, fold(y)> for every mode and for
    /// asymmetric padding, on a non-square plane.
    #[test]
    fn fold_is_the_adjoint_of_pad() {
        let x = Array::from_shape_fn((2, 3, 4, 5), |(n, c, i, j)| {
            ((n * 7 + c * 5 + i * 3 + j) % 11) as f32 - 5.0
        });
        for mode in [
            PaddingMode::Zeros,
            PaddingMode::Reflect,
            PaddingMode::Replicate,
            PaddingMode::Circular,
        ] {
            for padding in [Padding::Explicit(2, 3), Padding::Same] {
                let spec = spec(mode, padding);
                let padded = pad(&spec, &x.view());
                let y = Array::from_shape_fn(padded.dim(), |(n, c, i, j)| {
                    ((n + 3 * c + 5 * i + 7 * j) % 13) as f32 - 6.0
                });
                let folded = fold(&spec, &y, (4, 5));
                assert_eq!(folded.dim(), x.dim());
                let left: f32 = (&padded * &y).sum();
                let right: f32 = (&x * &folded).sum();
                assert_eq!(left, right, "{mode} {padding:?}");
            }
        }
    }
}
