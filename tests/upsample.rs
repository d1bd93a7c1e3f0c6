//! `Upsample` against PyTorch's `nn.Upsample`, on any layout, and its errors.
//!
//! The fixtures in `tests/fixtures/upsample/` are written by `tools/make_goldens.py` (run it
//! only when a case changes; see its docstring). Each holds one `nn.Upsample(scale_factor,
//! mode, align_corners)`, a standard normal input and PyTorch's output. Each test below
//! names its layer as Rust code and checks that it is exactly the fixture's;
//! `every_fixture_has_a_test` checks that no fixture is left unused.

use std::path::PathBuf;

use conv_runtime::ndarray::{Array4, Axis, s};
use conv_runtime::prelude::*;
use conv_runtime::{ScaleFactor, UpsampleMode};
use convgen::{assert_close, random_array};
use serde_json::Value;

mod common;
use common::Fixture;

/// As in `tests/parity.rs`: relative to the larger of 1 and the expected magnitude. Each
/// output is a few products summed (four for bilinear, four sums of four for bicubic) in
/// ATen's order, so the only differences left are where PyTorch's compiled kernels fuse
/// multiplies and adds into FMAs (for bicubic: the source position, the outer weights and
/// the sums), a few ulps: at most 1e-6 for bilinear and 1.7e-6 for bicubic in these
/// fixtures. Nearest copies and is checked exactly.
const TOLERANCE: f32 = 1e-5;

/// One test per case: `name: Upsample::...;`, the name being the fixture's file stem. Also
/// defines `CASES`, the list of every name.
macro_rules! golden {
    ($($name:ident : $layer:expr;)*) => {
        const CASES: &[&str] = &[$(stringify!($name)),*];
        $(
            #[test]
            fn $name() {
                check(stringify!($name), $layer.expect("a valid scale factor"));
            }
        )*
    };
}

golden! {
    nearest_x2: Upsample::nearest(2);
    nearest_x3_batch2: Upsample::nearest(3);
    nearest_per_axis: Upsample::nearest((2, 3));
    nearest_x41_rounding: Upsample::nearest((41, 1));
    nearest_1x1_input: Upsample::nearest(3);
    bilinear_x2: Upsample::bilinear(2, false);
    bilinear_x3_batch2: Upsample::bilinear(3, false);
    bilinear_per_axis: Upsample::bilinear((3, 2), false);
    bilinear_1x1_input: Upsample::bilinear(2, false);
    bilinear_align_corners_x2: Upsample::bilinear(2, true);
    bilinear_align_corners_x3_batch3: Upsample::bilinear(3, true);
    bilinear_align_corners_per_axis: Upsample::bilinear((1, 4), true);
    bilinear_align_corners_one_row: Upsample::bilinear((1, 2), true);
    bilinear_nonfinite: Upsample::new(2, UpsampleMode::Bilinear { align_corners: false });
    bicubic_x2: Upsample::bicubic(2, false);
    bicubic_x3_batch2: Upsample::bicubic(3, false);
    bicubic_per_axis: Upsample::bicubic((3, 2), false);
    bicubic_1x1_input: Upsample::bicubic(2, false);
    bicubic_align_corners_x2: Upsample::bicubic(2, true);
    bicubic_align_corners_per_axis: Upsample::bicubic((1, 4), true);
    bicubic_nonfinite: Upsample::new(2, UpsampleMode::Bicubic { align_corners: false });
}

/// The fixture `case` was made by `layer`'s PyTorch twin, and `layer` gives its output.
fn check(case: &str, layer: Upsample) {
    let fixture = load_fixture(case);
    let (mode, align_corners) = match layer.mode() {
        UpsampleMode::Nearest => ("nearest", Value::Null),
        UpsampleMode::Bilinear { align_corners } => ("bilinear", Value::Bool(align_corners)),
        UpsampleMode::Bicubic { align_corners } => ("bicubic", Value::Bool(align_corners)),
    };
    assert_eq!(fixture.get("op"), "upsample", "{case}: op");
    assert_eq!(fixture.get("mode"), mode, "{case}: mode");
    assert_eq!(
        fixture.get("align_corners"),
        &align_corners,
        "{case}: align_corners"
    );
    let ScaleFactor { h, w } = layer.scale_factor();
    assert_eq!(
        fixture.get("scale_factor"),
        &serde_json::json!([h, w]),
        "{case}: scale"
    );

    let input = fixture.tensor4("input");
    let expected = fixture.tensor4("output");
    let output = layer
        .forward(&input)
        .unwrap_or_else(|error| panic!("{case}: forward: {error}"));
    assert!(output.is_standard_layout(), "{case}: output layout");
    match layer.mode() {
        UpsampleMode::Nearest => assert_close(&output, &expected, 0.0, case),
        UpsampleMode::Bilinear { .. } | UpsampleMode::Bicubic { .. } => {
            assert_close(&output, &expected, TOLERANCE, case)
        }
    }
    // The same numbers from a permuted view, and into a permuted output (NaN-filled, so that
    // a value left unwritten shows).
    let transposed = input.view().permuted_axes([0, 1, 3, 2]).to_owned();
    let from_view = layer
        .forward(&transposed.view().permuted_axes([0, 1, 3, 2]))
        .unwrap();
    let what = format!("{case}: from a permuted view");
    assert_close(&from_view, &output, 0.0, &what);
    let mut into = Array4::<f32>::from_elem(output.raw_dim(), f32::NAN);
    let mut into_view = into.view_mut();
    into_view.swap_axes(0, 1);
    let mut into_view = into_view.permuted_axes([1, 0, 2, 3]);
    layer.forward_into(&input, &mut into_view).unwrap();
    assert_close(&into, &output, 0.0, case);
}

#[test]
fn every_mode_accepts_views_with_steps_and_permuted_axes() {
    let base = random_array((3, 4, 12, 10), 7);
    // Every other channel, every third row, the columns reversed, batch and channels swapped.
    let view = base
        .slice(s![.., ..;2, ..;3, ..;-1])
        .permuted_axes([1, 0, 2, 3]);
    assert!(!view.is_standard_layout());
    let copy = view.to_owned();
    for mode in [
        UpsampleMode::Nearest,
        UpsampleMode::Bilinear {
            align_corners: false,
        },
        UpsampleMode::Bilinear {
            align_corners: true,
        },
        UpsampleMode::Bicubic {
            align_corners: false,
        },
        UpsampleMode::Bicubic {
            align_corners: true,
        },
    ] {
        for scale in [(1, 1), (2, 2), (3, 2), (1, 5)] {
            let layer = Upsample::new(scale, mode).unwrap();
            let from_view = layer.forward(&view).unwrap();
            let from_copy = layer.forward(&copy).unwrap();
            assert!(from_view.is_standard_layout());
            assert_eq!(from_view, from_copy, "{mode:?} x{scale:?}");
            assert_eq!(from_view.shape(), &[2, 3, 4 * scale.0, 10 * scale.1]);
        }
    }
}

#[test]
fn scale_one_is_the_identity() {
    let x = random_array((2, 3, 5, 4), 3);
    for layer in [
        Upsample::nearest(1).unwrap(),
        Upsample::bilinear(1, false).unwrap(),
        Upsample::bilinear(1, true).unwrap(),
        // The source lands on a pixel (t = 0), whose weight is exactly 1, the others 0.
        Upsample::bicubic(1, false).unwrap(),
        Upsample::bicubic(1, true).unwrap(),
    ] {
        assert_eq!(layer.forward(&x).unwrap(), x, "{layer:?}");
    }
}

/// Large outputs are filled in parallel, plane by plane; every plane is what it is alone.
#[test]
fn parallel_planes_match_single_planes() {
    let x = random_array((2, 5, 64, 48), 11);
    for layer in [
        Upsample::nearest(3).unwrap(),
        Upsample::bilinear(3, false).unwrap(),
        Upsample::bilinear((2, 3), true).unwrap(),
        Upsample::bicubic((3, 2), false).unwrap(),
    ] {
        let all = layer.forward(&x).unwrap();
        assert!(all.len() >= 1 << 16, "big enough to run in parallel");
        for n in 0..2 {
            for c in 0..5 {
                let plane = x.slice(s![n..n + 1, c..c + 1, .., ..]);
                let alone = layer.forward(&plane).unwrap();
                assert_eq!(
                    all.slice(s![n..n + 1, c..c + 1, .., ..]),
                    alone,
                    "{layer:?} plane {n}, {c}"
                );
            }
        }
    }
}

#[test]
fn nearest_by_two_repeats_each_pixel() {
    let x = random_array((1, 2, 7, 9), 5);
    let y = Upsample::nearest(2).unwrap().forward(&x).unwrap();
    for ((n, c, i, j), &v) in y.indexed_iter() {
        assert_eq!(v, x[[n, c, i / 2, j / 2]]);
    }
}

#[test]
fn empty_batches_and_channels_give_empty_outputs() {
    let layer = Upsample::bilinear(2, false).unwrap();
    let y = layer.forward(&Array4::<f32>::zeros((0, 3, 4, 5))).unwrap();
    assert_eq!(y.shape(), &[0, 3, 8, 10]);
    let y = layer.forward(&Array4::<f32>::zeros((2, 0, 4, 5))).unwrap();
    assert_eq!(y.shape(), &[2, 0, 8, 10]);
}

#[test]
fn zero_scale_factors_are_refused() {
    for scale in [(0, 0), (0, 2), (3, 0)] {
        let error = Upsample::nearest(scale).unwrap_err();
        assert_eq!(error, ConvError::ScaleFactor { got: scale });
        let error = Upsample::bilinear(scale, true).unwrap_err();
        assert_eq!(error, ConvError::ScaleFactor { got: scale });
        let error = Upsample::bicubic(scale, false).unwrap_err();
        assert_eq!(error, ConvError::ScaleFactor { got: scale });
    }
    assert_eq!(
        Upsample::nearest(0).unwrap_err().to_string(),
        "scale factor 0x0 is refused: each factor (h x w) must be at least 1"
    );
}

#[test]
fn inputs_without_rows_or_columns_are_refused() {
    let layer = Upsample::bilinear(2, false).unwrap();
    for shape in [(1, 1, 0, 4), (1, 1, 4, 0), (0, 0, 0, 0)] {
        let error = layer.forward(&Array4::<f32>::zeros(shape)).unwrap_err();
        assert_eq!(
            error,
            ConvError::EmptyInput {
                got: (shape.2, shape.3)
            }
        );
    }
    assert_eq!(
        layer
            .forward(&Array4::<f32>::zeros((1, 2, 0, 3)))
            .unwrap_err()
            .to_string(),
        "input of 0x3 is empty: upsampling needs at least 1x1 (h x w)"
    );
}

#[test]
fn outputs_too_large_to_address_are_refused() {
    let x = Array4::<f32>::zeros((1, 1, 2, 3));
    for scale in [(usize::MAX, 1), (1, usize::MAX / 2), (1 << 31, 1 << 31)] {
        let error = Upsample::nearest(scale).unwrap().forward(&x).unwrap_err();
        assert_eq!(error, ConvError::TooLarge { got: (2, 3) }, "x{scale:?}");
    }
    let layer = Upsample::nearest(2).unwrap();
    assert_eq!(
        layer.output_shape([usize::MAX, 1, 2, 3]),
        Err(ConvError::TooLarge { got: (2, 3) })
    );
    assert_eq!(layer.output_shape([4, 3, 2, 3]), Ok([4, 3, 4, 6]));
}

#[test]
fn forward_into_a_wrong_shape_is_refused() {
    let layer = Upsample::nearest((2, 3)).unwrap();
    let x = Array4::<f32>::zeros((1, 2, 4, 5));
    let mut out = Array4::<f32>::zeros((1, 2, 8, 10));
    let error = layer.forward_into(&x, &mut out).unwrap_err();
    assert_eq!(
        error,
        ConvError::OutputShape {
            expected: vec![1, 2, 8, 15],
            got: vec![1, 2, 8, 10]
        }
    );
    assert!(out.iter().all(|&v| v == 0.0), "left unchanged");
    let mut out = Array4::<f32>::zeros((1, 2, 8, 15));
    layer.forward_into(&x.view(), &mut out.view_mut()).unwrap();
}

/// Every fixture file has a test above, and every test its fixture.
#[test]
fn every_fixture_has_a_test() {
    common::assert_every_fixture_tested(&fixtures_dir(), CASES);
}

/// The nonfinite fixtures really hold NaN and both infinities, in and out.
#[test]
fn nonfinite_fixtures_hold_nan_and_infinities() {
    for case in ["bilinear_nonfinite", "bicubic_nonfinite"] {
        let fixture = load_fixture(case);
        for key in ["input", "output"] {
            let values = fixture.tensor4(key);
            assert!(values.iter().any(|v| v.is_nan()), "{case} {key}: no NaN");
            assert!(
                values.iter().any(|&v| v == f32::INFINITY),
                "{case} {key}: no +inf"
            );
            assert!(
                values.iter().any(|&v| v == f32::NEG_INFINITY),
                "{case} {key}: no -inf"
            );
        }
        // The channel without non-finite values stays finite.
        let output = fixture.tensor4("output");
        assert!(output.index_axis(Axis(1), 1).iter().any(|v| v.is_finite()));
    }
}

fn fixtures_dir() -> PathBuf {
    common::fixtures_dir("upsample")
}

fn load_fixture(case: &str) -> Fixture {
    Fixture::load(&fixtures_dir(), case)
}
