//! `BatchNorm2d` in eval mode and its folding into the convolution before it, against
//! PyTorch: each fixture in `tests/fixtures/batch_norm/` (written by
//! `tools/make_goldens.py`) is a convolution followed by `nn.BatchNorm2d` with trained running
//! statistics, its input, the convolution's output and the batch norm's.

use conv_runtime::ndarray::{Array1, Array4};
use conv_runtime::prelude::*;
use conv_runtime::{Accepts, BatchNorm1d, BatchNorm2d, Direction, Isa, Layer};
use convgen::assert_close;

mod common;
use common::Fixture;

/// Relative to the larger of 1 and the expected magnitude. Batch norm alone is one multiply
/// and one add per value, as PyTorch computes them. Folded, the scale multiplies each weight
/// before the sum instead of the sum after it, which rounds differently: the outputs are of
/// order 10 (the statistics were trained on inputs scaled by 3), sums of at most 36 products.
const TOLERANCE: f32 = 1e-5;
const FOLDED_TOLERANCE: f32 = 1e-4;

const CASES: &[&str] = &[
    "conv_bn",
    "conv_bias_bn_dilated",
    "convT_bn_groups",
    "conv1d_bn_dilated",
];

fn load(case: &str) -> Fixture {
    Fixture::load(&common::fixtures_dir("batch_norm"), case)
}

fn batch_norm(fixture: &Fixture) -> BatchNorm2d {
    let eps = fixture.float(fixture.get("eps"), "eps") as f64;
    BatchNorm2d::new(
        fixture.vector("bn_weight"),
        fixture.vector("bn_bias"),
        fixture.vector("running_mean"),
        fixture.vector("running_var"),
        eps,
    )
    .unwrap()
}

fn bias(fixture: &Fixture) -> Option<Array1<f32>> {
    match fixture.get("bias") {
        serde_json::Value::Null => None,
        _ => Some(fixture.vector("bias")),
    }
}

/// The layer alone, batch norm alone and the folded layer against PyTorch, on every ISA.
fn check<G: Geometry, D: Direction + Accepts<G>>(fixture: &Fixture, layer: Layer<G, D>) {
    let case = &fixture.case;
    let x = fixture.tensor4("input");
    let conv_output = fixture.tensor4("conv_output");
    let expected = fixture.tensor4("output");
    let bn = batch_norm(fixture);
    let normalised = bn.forward(&conv_output).unwrap();
    assert_close(&normalised, &expected, TOLERANCE, &format!("{case}: bn"));
    for isa in Isa::available() {
        let layer = layer.clone().with_isa(isa).unwrap();
        let y = layer.forward(&x).unwrap();
        assert_close(
            &y,
            &conv_output,
            TOLERANCE,
            &format!("{case}: conv ({isa})"),
        );
        let folded = layer.fold_batch_norm(&bn).unwrap();
        assert_eq!(folded.isa(), isa);
        assert!(folded.bias().is_some(), "{case}: the shift becomes a bias");
        let z = folded.forward(&x).unwrap();
        assert_close(
            &z,
            &expected,
            FOLDED_TOLERANCE,
            &format!("{case}: folded ({isa})"),
        );
    }
}

#[test]
fn conv_bn() {
    let fixture = load("conv_bn");
    let geometry = conv!(k = 3, padding = 1);
    let layer = Conv2d::from_weights(geometry, fixture.tensor4("weight"), bias(&fixture), 1);
    check(&fixture, layer.unwrap());
}

#[test]
fn conv_bias_bn_dilated() {
    let fixture = load("conv_bias_bn_dilated");
    let geometry = conv!(k = 3, padding = 2, dilation = 2);
    let layer = Conv2d::from_weights(geometry, fixture.tensor4("weight"), bias(&fixture), 1);
    check(&fixture, layer.unwrap());
}

#[test]
#[allow(non_snake_case)]
fn convT_bn_groups() {
    let fixture = load("convT_bn_groups");
    let geometry = conv!(k = 4, stride = 2, padding = 1);
    let groups = fixture.usize("groups");
    let layer =
        ConvTranspose2d::from_weights(geometry, fixture.tensor4("weight"), bias(&fixture), groups);
    check(&fixture, layer.unwrap());
}

/// `nn.Conv1d` then `nn.BatchNorm1d`: the batch norm alone and folded into the `Conv1d`.
#[test]
fn conv1d_bn_dilated() {
    let fixture = load("conv1d_bn_dilated");
    fixture.expect_op("conv1d");
    let case = &fixture.case;
    let x = fixture.tensor3("input");
    let conv_output = fixture.tensor3("conv_output");
    let expected = fixture.tensor3("output");
    let bn = BatchNorm1d::from(batch_norm(&fixture));
    let normalised = bn.forward(&conv_output).unwrap();
    assert_close(&normalised, &expected, TOLERANCE, &format!("{case}: bn"));
    let geometry = conv1d!(k = 3, padding = 2, dilation = 2);
    let layer = Conv1d::from_weights(geometry, fixture.tensor3("weight"), bias(&fixture), 1);
    for isa in Isa::available() {
        let layer = layer.clone().unwrap().with_isa(isa).unwrap();
        let y = layer.forward(&x).unwrap();
        assert_close(
            &y,
            &conv_output,
            TOLERANCE,
            &format!("{case}: conv ({isa})"),
        );
        let folded = layer.fold_batch_norm(&bn).unwrap();
        let z = folded.forward(&x).unwrap();
        assert_close(
            &z,
            &expected,
            FOLDED_TOLERANCE,
            &format!("{case}: folded ({isa})"),
        );
    }
    // A batch norm of another width is refused, as for the 2-D layers.
    let ones = Array1::<f32>::ones(2);
    let narrow = BatchNorm1d::new(ones.clone(), ones.clone(), ones.clone(), ones, 1e-5).unwrap();
    assert_eq!(
        layer.unwrap().fold_batch_norm(&narrow).unwrap_err(),
        ConvError::BatchNormFeatures {
            expected: 5,
            got: 2
        }
    );
}

#[test]
fn every_fixture_has_a_test() {
    common::assert_every_fixture_tested(&common::fixtures_dir("batch_norm"), CASES);
}

#[test]
fn mismatched_shapes_are_refused() {
    let ones = |n: usize| Array1::<f32>::ones(n);
    assert_eq!(
        BatchNorm2d::new(ones(4), ones(4), ones(3), ones(4), 1e-5).unwrap_err(),
        ConvError::BatchNormShape {
            tensor: "running_mean",
            expected: 4,
            got: 3
        }
    );
    let bn = BatchNorm2d::new(ones(4), ones(4), ones(4), ones(4), 1e-5).unwrap();
    assert_eq!(
        bn.forward(&Array4::<f32>::zeros((1, 3, 2, 2))).unwrap_err(),
        ConvError::InputChannels {
            expected: 4,
            got: 3
        }
    );
    let conv = Conv2d::new(conv!(k = 1), 2, 3);
    let error = conv.fold_batch_norm(&bn).unwrap_err();
    assert_eq!(
        error,
        ConvError::BatchNormFeatures {
            expected: 3,
            got: 4
        }
    );
    assert_eq!(
        error.to_string(),
        "batch norm has 4 features, but the layer it folds into has 3 output channels"
    );
}
