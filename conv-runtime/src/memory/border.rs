//! Padding that is not zeros, as data: the padded copy of an input that a convolution with
//! `padding_mode = reflect`, `replicate` or `circular` runs its kernels on, and the adjoint
//! of that copy, which folds the padded input's gradient back onto the input.
//!
//! Both map each padded position to the input element it holds with
//! [`PaddingMode::source`], one axis at a time: a padded row is a copy of one input row
//! with its margins filled from that row.

use ndarray::{Array4, ArrayView4, s};

use crate::shape::geometry::GeometrySpec;

/// `x` with `spec`'s padding around each plane, filled as its mode says. The input must be
/// large enough for the mode ([`GeometrySpec::padding_min_input`]); an element the mode
/// cannot reach (zero padding) is a zero.
pub(crate) fn pad(spec: &GeometrySpec, x: &ArrayView4<f32>) -> Array4<f32> {
    let (batch, channels, h, w) = x.dim();
    let (top, left) = spec.pad_before();
    let (padded_h, padded_w) = spec.padded_size((h, w));
    let rows = sources(spec, top, padded_h, h);
    let cols = sources(spec, left, padded_w, w);
    let mut padded = Array4::zeros((batch, channels, padded_h, padded_w));
    for (n, c) in planes(batch, channels) {
        let mut target = padded.slice_mut(s![n, c, .., ..]);
        let source = x.slice(s![n, c, .., ..]);
        for (mut target_row, row) in target.outer_iter_mut().zip(&rows) {
            // A row of zeros (zero padding) stays as allocated.
            let Some(row) = *row else { continue };
            let source_row = source.row(row);
            target_row.slice_mut(s![left..left + w]).assign(&source_row);
            for (j, col) in cols.iter().enumerate() {
                if let (true, Some(col)) = (j < left || j >= left + w, *col) {
                    target_row[j] = source_row[col];
                }
            }
        }
    }
    padded
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
        .to_owned();
    for (n, c) in planes(padded.dim().0, padded.dim().1) {
        let mut target = input.slice_mut(s![n, c, .., ..]);
        let source = padded.slice(s![n, c, .., ..]);
        for (i, (source_row, row)) in source.outer_iter().zip(&rows).enumerate() {
            let interior_row = i >= top && i < top + h;
            for (j, col) in cols.iter().enumerate() {
                let border = !interior_row || j < left || j >= left + w;
                // A zero of the padding holds no input element: its gradient goes nowhere.
                if let (true, Some(row), Some(col)) = (border, *row, *col) {
                    target[[row, col]] += source_row[j];
                }
            }
        }
    }
    input
}

/// Every `(image, channel)` plane.
fn planes(batch: usize, channels: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..batch).flat_map(move |n| (0..channels).map(move |c| (n, c)))
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
