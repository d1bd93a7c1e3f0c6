//! Support code shared by the workspace's integration tests, benchmarks and examples: seeded
//! test data, closeness checks, and the upsampling demo ([`demo`]). Not published.
//!
//! The benchmark suite's layers live in `benches/common`, not here: the demo binary links this
//! library, and each suite geometry would add its kernels to the demo's build.

use conv_runtime::ndarray::{Array, ArrayBase, Data, Dimension, IntoDimension};

pub mod demo;
pub mod lessons;
pub mod side_by_side;

/// An array of `shape` filled with values uniform in `[-1, 1)`, a fixed function of `seed`.
pub fn random_array<D: Dimension>(shape: impl IntoDimension<Dim = D>, seed: u64) -> Array<f32, D> {
    let mut state = seed ^ 0x5851_f42d_4c95_7f2d;
    Array::from_shape_simple_fn(shape, move || {
        // A 64-bit LCG (Knuth's MMIX constants); the top 24 bits are plenty for test data.
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    })
}

/// The largest difference between two arrays of the same shape, measured relative to the
/// larger of 1 and the magnitude of the expected value, with the index where it occurs.
/// NaN in either array at the same place counts as equal; anywhere else as infinitely far.
pub fn max_difference<S, T, D>(
    actual: &ArrayBase<S, D>,
    expected: &ArrayBase<T, D>,
) -> (f32, D::Pattern)
where
    S: Data<Elem = f32>,
    T: Data<Elem = f32>,
    D: Dimension,
{
    assert_eq!(actual.shape(), expected.shape(), "shapes differ");
    let mut worst = (0.0f32, D::default().into_pattern());
    for ((index, &a), &e) in actual.indexed_iter().zip(expected.iter()) {
        let difference = if a.is_nan() && e.is_nan() || a == e {
            0.0
        } else if a.is_finite() && e.is_finite() {
            (a - e).abs() / e.abs().max(1.0)
        } else {
            f32::INFINITY
        };
        if difference > worst.0 || difference.is_nan() {
            worst = (difference, index);
        }
    }
    worst
}

/// Panics, naming `what` and the worst element, unless every element of `actual` is within
/// `tolerance` of `expected` (see [`max_difference`]).
#[track_caller]
pub fn assert_close<S, T, D>(
    actual: &ArrayBase<S, D>,
    expected: &ArrayBase<T, D>,
    tolerance: f32,
    what: &str,
) where
    S: Data<Elem = f32>,
    T: Data<Elem = f32>,
    D: Dimension,
    D::Pattern: std::fmt::Debug,
{
    let (difference, index) = max_difference(actual, expected);
    assert!(
        difference <= tolerance,
        "{what}: difference {difference:e} at {index:?} exceeds {tolerance:e}"
    );
}
