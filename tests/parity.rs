//! Parity with PyTorch: every layer against the numbers PyTorch computes for the same
//! geometry, weights and input.
//!
//! The fixtures in `tests/fixtures/` are written by `tools/make_goldens.py` (run it only
//! when a case changes; see its docstring). Each holds one `nn.Conv2d` or
//! `nn.ConvTranspose2d`: geometry, groups, weights in PyTorch's layout, input, output, and
//! the autograd gradients for a given `grad_output`, which `backward` must reproduce. Each
//! test below names its geometry as a real `conv!` invocation (those several cases share
//! defined once above the tests) and checks that it is exactly the fixture's, so the Rust
//! side and the fixture cannot drift apart unnoticed; `every_fixture_has_a_test` checks
//! that no fixture is left unused.

use conv_runtime::ndarray::Array1;
use conv_runtime::prelude::*;
use conv_runtime::{GeometrySpec, Isa, Padding};
use convgen::assert_close;
use serde_json::Value;

mod common;
use common::Fixture;

/// Relative to the larger of 1 and the expected magnitude. The outputs are sums of at most
/// 147 products (the 7x7 case), of order 1, in f32 on both sides, summed in different orders;
/// the input gradients are sums of the same kind, and the weight and bias gradients sums of
/// at most a few hundred products (one per output position and image), whose largest
/// difference from PyTorch's is below 3e-6.
const TOLERANCE: f32 = 1e-5;

// The geometries several cases share, each defined once: every `conv!` is a type of its
// own, and every type compiles its kernel families again (defined once, this crate's 50
// types became 42, its kernel instances 795 -> 671, and its build alone 176 -> 144 s in
// the test profile, one build each on the model 207 Xeon, whose speed drifts by a tenth).
conv! { struct PerAxis; k = (3, 5), stride = (2, 1), padding = (1, 2), dilation = (1, 2) }
conv! { struct Padded3x3; k = 3, padding = 1 }
conv! { struct Stride2Padded; k = 3, stride = 2, padding = 1 }
conv! { struct Stride2; k = 3, stride = 2 }
conv! { struct StrideAboveKernel; k = 2, stride = 3 }

/// One test per case: `name: Conv2d | ConvTranspose2d, GEOMETRY;`, the geometry a `conv!`
/// invocation or one of the shared ones above, the name being the fixture's file stem. Also
/// defines `CASES`, the list of every name.
macro_rules! parity {
    ($($(#[$attr:meta])* $name:ident : $layer:ident, $geometry:expr;)*) => {
        const CASES: &[&str] = &[$(stringify!($name)),*];
        $(
            #[test]
            $(#[$attr])*
            fn $name() {
                parity!(@run $layer, stringify!($name), $geometry);
            }
        )*
    };
    (@run Conv2d, $case:expr, $geometry:expr) => {
        check_conv($case, $geometry)
    };
    (@run ConvTranspose2d, $case:expr, $geometry:expr) => {
        check_conv_transpose($case, $geometry)
    };
}

parity! {
    seed_dilated_conv: Conv2d, conv!(k = 3, dilation = 2, padding = 2);
    seed_upconv: ConvTranspose2d, conv!(k = 2, stride = 2);

    conv_per_axis: Conv2d, PerAxis;
    convt_per_axis: ConvTranspose2d, PerAxis;
    convt_per_axis_output_padding: ConvTranspose2d, conv!(
        k = (3, 5), stride = (2, 1), padding = (1, 2), dilation = (1, 2), output_padding = 1
    );

    conv_groups2: Conv2d, Padded3x3;
    conv_groups3_multiplier: Conv2d, Stride2Padded;
    conv_depthwise: Conv2d, Padded3x3;
    conv_depthwise_multiplier: Conv2d, conv!(k = 5, padding = 2);
    convt_groups2: ConvTranspose2d, conv!(k = 3, stride = 2, padding = 1, output_padding = 1);
    convt_groups3_multiplier: ConvTranspose2d,
        conv!(k = (2, 3), stride = (2, 1), padding = (0, 1));
    convt_depthwise_multiplier: ConvTranspose2d, conv!(k = 4, stride = 2, padding = 1);

    convt_dilated_strided_output_padding: ConvTranspose2d,
        conv!(k = 3, stride = 2, dilation = 2, padding = 1, output_padding = 1);
    convt_output_padding_ge_stride: ConvTranspose2d,
        conv!(k = 3, dilation = 3, padding = 2, output_padding = 2);
    convt_output_padding_per_axis: ConvTranspose2d, conv!(
        k = (2, 3), stride = (3, 1), dilation = (2, 3), padding = (1, 0), output_padding = 2
    );

    conv_same_k4: Conv2d, conv!(k = 4, padding = same);
    conv_same_k4_dilated: Conv2d, conv!(k = 4, padding = same, dilation = 3);
    conv_same_per_axis_dilated: Conv2d, conv!(k = (2, 3), padding = same, dilation = (3, 2));

    conv_stride_gt_kernel: Conv2d, StrideAboveKernel;
    convt_stride_gt_kernel: ConvTranspose2d, StrideAboveKernel;
    convt_stride_gt_kernel_per_axis: ConvTranspose2d,
        conv!(k = (3, 1), stride = (4, 2), padding = (1, 0), output_padding = 1);

    conv_padding_gt_kernel: Conv2d, conv!(k = (3, 2), padding = (4, 5));
    convt_padding_gt_kernel: ConvTranspose2d, conv!(k = 3, stride = 2, padding = (4, 5));

    conv_batch3: Conv2d, conv!(k = 3, stride = (1, 2), padding = 1);
    convt_batch2: ConvTranspose2d, Stride2Padded;

    conv_no_bias: Conv2d, conv!(k = (3, 2), padding = (1, 0));
    convt_no_bias: ConvTranspose2d, Stride2;

    convt_output_size: ConvTranspose2d, conv!(k = 3, stride = 3, padding = 1);
    convt_output_size_overrides_output_padding: ConvTranspose2d,
        conv!(k = 4, stride = 2, padding = 1, output_padding = 1);

    conv_1x1_kernel: Conv2d, conv!(k = 1);
    convt_1x1_kernel_stride2: ConvTranspose2d, conv!(k = 1, stride = 2, output_padding = 1);
    conv_7x7_stride2: Conv2d, conv!(k = 7, stride = 2, padding = 3);
    conv_1x1_input: Conv2d, Padded3x3;
    convt_1x1_input: ConvTranspose2d, Stride2;

    conv_reflect_dilated: Conv2d, conv!(k = 3, dilation = 2, padding = 2, padding_mode = reflect);
    conv_reflect_stride2: Conv2d, conv!(k = 3, stride = 2, padding = (1, 2), padding_mode = reflect);
    conv_reflect_same_k4: Conv2d, conv!(k = 4, padding = same, padding_mode = reflect);
    conv_replicate_dilated: Conv2d,
        conv!(k = 3, dilation = 2, padding = 2, padding_mode = replicate);
    conv_replicate_stride2: Conv2d,
        conv!(k = (3, 5), stride = 2, padding = (1, 3), padding_mode = replicate);
    conv_replicate_same_per_axis_dilated: Conv2d,
        conv!(k = (2, 3), padding = same, dilation = (3, 2), padding_mode = replicate);
    conv_circular_dilated: Conv2d, conv!(k = 3, dilation = 2, padding = 2, padding_mode = circular);
    conv_circular_stride2_depthwise: Conv2d,
        conv!(k = 3, stride = 2, padding = 1, padding_mode = circular);
    conv_circular_same_k4_dilated: Conv2d,
        conv!(k = 4, padding = same, dilation = 3, padding_mode = circular);
    conv_reflect_widest: Conv2d, conv!(k = 3, padding = (3, 4), padding_mode = reflect);
    conv_circular_widest: Conv2d, conv!(k = 3, padding = (4, 5), padding_mode = circular);

    conv_causal_1d_dilated: Conv2d, conv!(k = (1, 2), dilation = (1, 4), padding = causal);
    conv_causal_stride2: Conv2d, conv!(k = 3, stride = 2, dilation = (1, 2), padding = causal);

    conv_nonfinite: Conv2d, Padded3x3;
    convt_nonfinite: ConvTranspose2d, Stride2Padded;
}

/// Runs the `Conv2d` case `case` on `geometry`.
fn check_conv<G: Geometry>(case: &str, geometry: G) {
    let fixture = load_fixture(case);
    fixture.expect_op("conv");
    fixture.expect_geometry(geometry.spec());
    assert!(
        fixture.output_size().is_none(),
        "{case}: output_size is a ConvTranspose2d argument"
    );
    let layer = Conv2d::from_weights(
        geometry,
        fixture.tensor4("weight"),
        fixture.bias(),
        fixture.usize("groups"),
    )
    .unwrap_or_else(|error| panic!("{case}: from_weights: {error}"));
    fixture.expect_channels(layer.in_channels(), layer.out_channels());
    let input = fixture.tensor4("input");
    let output = layer
        .forward(&input)
        .unwrap_or_else(|error| panic!("{case}: forward: {error}"));
    assert_close(&output, &fixture.tensor4("output"), TOLERANCE, case);
    // Backward on every instruction set: each has its own weight-gradient kernels.
    for isa in Isa::available() {
        let layer = Conv2d::from_weights(
            geometry,
            layer.weight().clone(),
            layer.bias().cloned(),
            layer.groups(),
        )
        .and_then(|layer| layer.with_isa(isa));
        let grads = layer
            .and_then(|layer| layer.backward(&input, &fixture.tensor4("grad_output")))
            .unwrap_or_else(|error| panic!("{case}: backward: {error}"));
        fixture.expect_gradients(&grads, isa);
    }
}

/// Runs the `ConvTranspose2d` case `case` on `geometry`, with `forward_with_output_size`
/// when the fixture passes PyTorch's `output_size`.
fn check_conv_transpose<G: ZeroPadded>(case: &str, geometry: G) {
    let fixture = load_fixture(case);
    fixture.expect_op("convT");
    fixture.expect_geometry(geometry.spec());
    let layer = ConvTranspose2d::from_weights(
        geometry,
        fixture.tensor4("weight"),
        fixture.bias(),
        fixture.usize("groups"),
    )
    .unwrap_or_else(|error| panic!("{case}: from_weights: {error}"));
    fixture.expect_channels(layer.in_channels(), layer.out_channels());
    let input = fixture.tensor4("input");
    let output = match fixture.output_size() {
        Some(size) => layer.forward_with_output_size(&input, size),
        None => layer.forward(&input),
    }
    .unwrap_or_else(|error| panic!("{case}: forward: {error}"));
    assert_close(&output, &fixture.tensor4("output"), TOLERANCE, case);
    // `grad_output` has the output's shape, so it carries `output_size` to `backward`.
    for isa in Isa::available() {
        let layer = ConvTranspose2d::from_weights(
            geometry,
            layer.weight().clone(),
            layer.bias().cloned(),
            layer.groups(),
        )
        .and_then(|layer| layer.with_isa(isa));
        let grads = layer
            .and_then(|layer| layer.backward(&input, &fixture.tensor4("grad_output")))
            .unwrap_or_else(|error| panic!("{case}: backward: {error}"));
        fixture.expect_gradients(&grads, isa);
    }
}

/// NaN and infinities spread through the layers as in PyTorch: the `*_nonfinite` tests
/// compare them element by element (`assert_close` requires NaN where PyTorch has NaN and
/// the same infinity where it has one); this checks those fixtures really hold them, in
/// the input and in the output.
#[test]
fn nonfinite_fixtures_hold_nan_and_infinities() {
    for case in ["conv_nonfinite", "convt_nonfinite"] {
        let fixture = load_fixture(case);
        let input = fixture.tensor4("input");
        assert!(
            input.iter().any(|v| v.is_nan()),
            "{case}: no NaN in the input"
        );
        assert!(
            input.iter().any(|&v| v == f32::INFINITY),
            "{case}: no +inf in the input"
        );
        let output = fixture.tensor4("output");
        assert!(
            output.iter().any(|v| v.is_nan()),
            "{case}: no NaN in the output"
        );
        assert!(
            output.iter().any(|&v| v == f32::INFINITY)
                && output.iter().any(|&v| v == f32::NEG_INFINITY),
            "{case}: the output lacks an infinity"
        );
        assert!(
            output.iter().any(|v| v.is_finite()),
            "{case}: nothing finite left in the output"
        );
    }
}

/// Every fixture file has a test above, and every test its fixture.
#[test]
fn every_fixture_has_a_test() {
    common::assert_every_fixture_tested(&common::fixtures_dir(""), CASES);
}

/// Case `case` of the top-level fixtures.
fn load_fixture(case: &str) -> Fixture {
    Fixture::load(&common::fixtures_dir(""), case)
}

/// What the layer tests read from a fixture, beyond the shared accessors.
impl Fixture {
    /// The fixture's geometry is exactly the `conv!` invocation's.
    fn expect_geometry(&self, spec: GeometrySpec) {
        let padding = match self.get("padding") {
            Value::String(same) if same == "same" => Padding::Same,
            Value::String(causal) if causal == "causal" => Padding::Causal,
            other => {
                let (h, w) = self.pair_of(other, "padding");
                Padding::Explicit(h, w)
            }
        };
        let padding_mode = self.padding_mode();
        let expected = GeometrySpec {
            kernel_size: self.pair("kernel_size"),
            stride: self.pair("stride"),
            padding,
            padding_mode,
            dilation: self.pair("dilation"),
            output_padding: self.pair("output_padding"),
        };
        assert_eq!(
            spec, expected,
            "{}: the conv! invocation ({spec}) is not the fixture's geometry ({expected})",
            self.case
        );
    }

    fn expect_channels(&self, in_channels: usize, out_channels: usize) {
        assert_eq!(
            (in_channels, out_channels),
            (self.usize("in_channels"), self.usize("out_channels")),
            "{}: (in_channels, out_channels)",
            self.case
        );
    }

    /// `backward`'s gradients are PyTorch's `grad_input`, `grad_weight` and `grad_bias`
    /// (null without bias).
    fn expect_gradients(&self, grads: &Gradients, isa: Isa) {
        let case = &self.case;
        let what = |name: &str| format!("{case}: {name} ({isa})");
        assert_close(
            &grads.input,
            &self.tensor4("grad_input"),
            TOLERANCE,
            &what("grad_input"),
        );
        assert_close(
            &grads.weight,
            &self.tensor4("grad_weight"),
            TOLERANCE,
            &what("grad_weight"),
        );
        let expected = match self.get("grad_bias") {
            Value::Null => None,
            _ => Some(Array1::from(self.tensor("grad_bias").1)),
        };
        match (&grads.bias, &expected) {
            (Some(bias), Some(expected)) => {
                assert_close(bias, expected, TOLERANCE, &what("grad_bias"))
            }
            (None, None) => {}
            (got, expected) => panic!(
                "{case}: grad_bias is {got:?}, PyTorch's is {expected:?} (a bias gradient \
                 exactly when the layer has a bias)"
            ),
        }
    }

    fn output_size(&self) -> Option<(usize, usize)> {
        match self.get("output_size") {
            Value::Null => None,
            size => Some(self.pair_of(size, "output_size")),
        }
    }
}
