//! Parity with PyTorch for the 1-D layers: `Conv1d` and `ConvTranspose1d` against the numbers
//! `nn.Conv1d` and `nn.ConvTranspose1d` compute for the same geometry, weights and input.
//!
//! The fixtures in `tests/fixtures/conv1d/` are written by `tools/make_goldens.py` (run it
//! only when a case changes; see its docstring), `CASES_1D` there. Each holds one layer:
//! geometry (plain integers; `padding` may also be "same" or "causal"), groups, weights in
//! PyTorch's layout (`[out, in / groups, k]` and `[in, out / groups, k]`), an `[N, C, L]`
//! input, the output, and the autograd gradients for a given `grad_output`, which `backward`
//! must reproduce. Each test below names its geometry as a real `conv1d!` invocation and
//! checks that it is exactly the fixture's (through the 2-D `GeometrySpec` it maps to), so
//! the Rust side and the fixture cannot drift apart unnoticed; `every_fixture_has_a_test`
//! checks that no fixture is left unused.
//!
//! On every available instruction set, each test runs `forward` on the input in standard
//! layout and in three others holding the same values (permuted storage, every other
//! element of a wider array, a reversed axis), `forward_into` into a permuted and a strided
//! output, and `backward`, with the input and output gradient in each of those layouts.

use conv_runtime::ndarray::{Array1, Array3, ArrayView3, ArrayViewMut3, Ix3, s};
use conv_runtime::prelude::*;
use conv_runtime::{GeometrySpec, Isa, Padding};
use convgen::assert_close;
use serde_json::Value;

mod common;
use common::Fixture;

/// Relative to the larger of 1 and the expected magnitude, as in `parity.rs`. The outputs
/// are sums of at most 15 products (`conv1d_strided`: 3 channels times 5 taps), of order 1,
/// in f32 on both sides, summed in different orders; the input gradients are sums of the
/// same kind, and the weight and bias gradients sums of at most 46 products (one per output
/// position and sequence).
const TOLERANCE: f32 = 1e-5;

/// One test per case: `name: Conv1d | ConvTranspose1d, conv1d!(...);`, the name being the
/// fixture's file stem. Also defines `CASES`, the list of every name.
///
/// The body is expanded in each test rather than written as a generic function, so that it
/// names the layer of the `conv1d!` value's own type and needs no trait bound.
macro_rules! parity_1d {
    ($($(#[$attr:meta])* $name:ident : $layer:ident, $geometry:expr;)*) => {
        const CASES: &[&str] = &[$(stringify!($name)),*];
        $(
            #[test]
            // The transposed cases are `convT1d_*`, as their fixtures.
            #[allow(non_snake_case)]
            $(#[$attr])*
            fn $name() {
                parity_1d!(@run $layer, stringify!($name), $geometry);
            }
        )*
    };
    (@run Conv1d, $case:expr, $geometry:expr) => {{
        let case: &str = $case;
        let geometry = $geometry;
        let fixture = load_fixture(case);
        fixture.expect_op("conv1d");
        fixture.expect_geometry(geometry.spec());
        assert!(
            fixture.output_size().is_none(),
            "{case}: output_size is a ConvTranspose1d argument"
        );
        for isa in Isa::available() {
            let layer = Conv1d::from_weights(
                geometry,
                fixture.tensor3("weight"),
                fixture.bias(),
                fixture.usize("groups"),
            )
            .and_then(|layer| layer.with_isa(isa))
            .unwrap_or_else(|error| panic!("{case}: from_weights ({isa}): {error}"));
            fixture.expect_channels(layer.in_channels(), layer.out_channels());
            check_layer(
                &fixture,
                isa,
                |x| layer.forward(x),
                |x, out| layer.forward_into(x, out),
                |x, grad_output| layer.backward(x, grad_output),
            );
        }
    }};
    // With `forward_with_output_size` when the fixture passes PyTorch's `output_size`.
    (@run ConvTranspose1d, $case:expr, $geometry:expr) => {{
        let case: &str = $case;
        let geometry = $geometry;
        let fixture = load_fixture(case);
        fixture.expect_op("convT1d");
        fixture.expect_geometry(geometry.spec());
        let output_size = fixture.output_size();
        for isa in Isa::available() {
            let layer = ConvTranspose1d::from_weights(
                geometry,
                fixture.tensor3("weight"),
                fixture.bias(),
                fixture.usize("groups"),
            )
            .and_then(|layer| layer.with_isa(isa))
            .unwrap_or_else(|error| panic!("{case}: from_weights ({isa}): {error}"));
            fixture.expect_channels(layer.in_channels(), layer.out_channels());
            check_layer(
                &fixture,
                isa,
                |x| match output_size {
                    Some(len) => layer.forward_with_output_size(x, len),
                    None => layer.forward(x),
                },
                |x, out| layer.forward_into(x, out),
                // `grad_output` has the output's shape, so it carries `output_size`.
                |x, grad_output| layer.backward(x, grad_output),
            );
        }
    }};
}

parity_1d! {
    conv1d_wavenet_causal: Conv1d, conv1d!(k = 2, dilation = 4, padding = causal);
    conv1d_causal_k3_d2: Conv1d, conv1d!(k = 3, dilation = 2, padding = causal);
    conv1d_same_k4_d3: Conv1d, conv1d!(k = 4, dilation = 3, padding = same);
    conv1d_strided: Conv1d, conv1d!(k = 5, stride = 2, padding = 2);

    conv1d_groups_depthwise: Conv1d, conv1d!(k = 3, dilation = 2, padding = 2);
    conv1d_groups2_nobias: Conv1d, conv1d!(k = 3, padding = 1);

    conv1d_reflect: Conv1d, conv1d!(k = 3, dilation = 2, padding = 2, padding_mode = reflect);
    conv1d_circular_same: Conv1d, conv1d!(k = 4, padding = same, padding_mode = circular);
    conv1d_replicate_strided: Conv1d,
        conv1d!(k = 3, stride = 2, padding = 2, padding_mode = replicate);

    convT1d_upsample2: ConvTranspose1d, conv1d!(k = 4, stride = 2, padding = 1);
    convT1d_dilated_output_padding: ConvTranspose1d,
        conv1d!(k = 3, stride = 3, dilation = 2, padding = 1, output_padding = 2);
    convT1d_groups2: ConvTranspose1d, conv1d!(k = 2, stride = 2);
    convT1d_output_size: ConvTranspose1d, conv1d!(k = 3, stride = 2, padding = 1);
}

/// Checks one layer, built for `isa`, against `fixture` through its `forward` (or
/// `forward_with_output_size`), `forward_into` and `backward`.
///
/// `forward` must give PyTorch's output on the input in every layout, and in the other
/// layouts exactly what it gives in standard layout; `forward_into` must write exactly
/// that into a permuted and a strided output and nothing beside it (skipped when the
/// fixture passes `output_size`, which `forward_into` does not take); `backward` must give
/// PyTorch's gradients with the input and output gradient in every layout.
fn check_layer(
    fixture: &Fixture,
    isa: Isa,
    forward: impl Fn(&ArrayView3<f32>) -> Result<Array3<f32>, ConvError>,
    forward_into: impl Fn(&ArrayView3<f32>, &mut ArrayViewMut3<f32>) -> Result<(), ConvError>,
    backward: impl Fn(&ArrayView3<f32>, &ArrayView3<f32>) -> Result<Gradients<Ix3>, ConvError>,
) {
    let case = &fixture.case;
    let input = fixture.tensor3("input");
    let expected = fixture.tensor3("output");
    let grad_output = fixture.tensor3("grad_output");
    fixture.expect_weight_layout(&input, &expected);

    // forward, standard layout.
    let output =
        forward(&input.view()).unwrap_or_else(|error| panic!("{case}: forward ({isa}): {error}"));
    assert_close(
        &output,
        &expected,
        TOLERANCE,
        &format!("{case}: forward ({isa})"),
    );

    // forward and backward, other layouts.
    let inputs = Layouts::of(&input);
    let grad_outputs = Layouts::of(&grad_output);
    let grads = backward(&input.view(), &grad_output.view())
        .unwrap_or_else(|error| panic!("{case}: backward ({isa}): {error}"));
    fixture.expect_gradients(&grads, &format!("{isa}"));
    for ((layout, x), (_, g)) in inputs.views().into_iter().zip(grad_outputs.views()) {
        assert!(
            !x.is_standard_layout(),
            "{case}: the {layout} input should not be contiguous"
        );
        assert_eq!(x, input, "{case}: the {layout} input holds other values");
        assert_eq!(
            g, grad_output,
            "{case}: the {layout} grad_output holds other values"
        );
        let what = format!("{case}: forward, {layout} input ({isa})");
        let y = forward(&x).unwrap_or_else(|error| panic!("{what}: {error}"));
        assert_close(&y, &expected, TOLERANCE, &what);
        assert_close(
            &y,
            &output,
            0.0,
            &format!("{what}, against standard layout"),
        );
        let grads = backward(&x, &g)
            .unwrap_or_else(|error| panic!("{case}: backward, {layout} ({isa}): {error}"));
        fixture.expect_gradients(&grads, &format!("{layout} input and grad_output, {isa}"));
    }

    // forward_into, into outputs that are not contiguous.
    if fixture.output_size().is_some() {
        return;
    }
    let (n, c, l) = expected.dim();
    // Stored [L, N, C], viewed as [N, C, L]; NaN until written.
    let mut storage = Array3::from_elem((l, n, c), f32::NAN);
    let mut permuted = storage.view_mut().permuted_axes([1, 2, 0]);
    assert!(!permuted.is_standard_layout());
    let what = format!("{case}: forward_into, permuted output ({isa})");
    forward_into(&input.view(), &mut permuted).unwrap_or_else(|error| panic!("{what}: {error}"));
    assert_close(&permuted, &expected, TOLERANCE, &what);
    assert_close(&permuted, &output, 0.0, &format!("{what}, against forward"));
    // Every other element of a wider array; the others must stay NaN.
    let mut wide = Array3::from_elem((n, c, 2 * l + 1), f32::NAN);
    let what = format!("{case}: forward_into, strided output ({isa})");
    forward_into(&input.view(), &mut wide.slice_mut(s![.., .., 1..;2]))
        .unwrap_or_else(|error| panic!("{what}: {error}"));
    assert_close(&wide.slice(s![.., .., 1..;2]), &output, 0.0, &what);
    assert!(
        wide.slice(s![.., .., ..;2]).iter().all(|v| v.is_nan()),
        "{what}: wrote outside its view"
    );
}

/// The values of an `[N, C, L]` array in three storages, none in standard layout.
struct Layouts {
    /// Stored `[L, N, C]`.
    permuted: Array3<f32>,
    /// Stored `[N, C, 2L + 1]`, the values at odd positions, NaN between.
    spread: Array3<f32>,
    /// Stored with the length axis reversed.
    reversed: Array3<f32>,
}

impl Layouts {
    fn of(a: &Array3<f32>) -> Self {
        let (n, c, l) = a.dim();
        let mut spread = Array3::from_elem((n, c, 2 * l + 1), f32::NAN);
        spread.slice_mut(s![.., .., 1..;2]).assign(a);
        Layouts {
            permuted: a
                .view()
                .permuted_axes([2, 0, 1])
                .as_standard_layout()
                .into_owned(),
            spread,
            // Assigned into standard storage: `to_owned` would keep the negative stride.
            reversed: {
                let mut reversed = Array3::zeros(a.dim());
                reversed.assign(&a.slice(s![.., .., ..;-1]));
                reversed
            },
        }
    }

    /// Views of the stored values as the original `[N, C, L]` array.
    fn views(&self) -> [(&'static str, ArrayView3<'_, f32>); 3] {
        [
            ("permuted", self.permuted.view().permuted_axes([1, 2, 0])),
            ("strided", self.spread.slice(s![.., .., 1..;2])),
            ("reversed", self.reversed.slice(s![.., .., ..;-1])),
        ]
    }
}

/// Every fixture file has a test above, and every test its fixture.
#[test]
fn every_fixture_has_a_test() {
    common::assert_every_fixture_tested(&common::fixtures_dir("conv1d"), CASES);
}

/// Case `case` of the 1-D fixtures.
fn load_fixture(case: &str) -> Fixture {
    Fixture::load(&common::fixtures_dir("conv1d"), case)
}

/// What the 1-D layer tests read from a fixture, beyond the shared accessors.
impl Fixture {
    /// The fixture's 1-D geometry is exactly the `conv1d!` invocation's, whose 2-D spec is
    /// one row: kernel `(1, k)`, stride `(1, s)`, dilation `(1, d)`, output padding
    /// `(0, op)`, padding `Explicit(0, p)`, `Same` or `Causal`.
    fn expect_geometry(&self, spec: GeometrySpec) {
        let padding = match self.get("padding") {
            Value::String(same) if same == "same" => Padding::Same,
            Value::String(causal) if causal == "causal" => Padding::Causal,
            _ => Padding::Explicit(0, self.usize("padding")),
        };
        let padding_mode = self.padding_mode();
        let expected = GeometrySpec {
            kernel_size: (1, self.usize("kernel_size")),
            stride: (1, self.usize("stride")),
            padding,
            padding_mode,
            dilation: (1, self.usize("dilation")),
            output_padding: (0, self.usize("output_padding")),
        };
        assert_eq!(
            spec, expected,
            "{}: the conv1d! invocation ({spec}) is not the fixture's geometry ({expected})",
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

    /// The fixture's arrays agree with its channels and groups: the weight in PyTorch's
    /// layout for the op, input and output channels.
    fn expect_weight_layout(&self, input: &Array3<f32>, output: &Array3<f32>) {
        let (in_channels, out_channels) = (self.usize("in_channels"), self.usize("out_channels"));
        let groups = self.usize("groups");
        let k = self.usize("kernel_size");
        let weight = self.tensor3("weight");
        let expected = match self.str("op") {
            "conv1d" => (out_channels, in_channels / groups, k),
            "convT1d" => (in_channels, out_channels / groups, k),
            op => panic!("{}: unknown op {op:?}", self.case),
        };
        assert_eq!(weight.dim(), expected, "{}: weight shape", self.case);
        assert_eq!(input.dim().1, in_channels, "{}: input channels", self.case);
        assert_eq!(
            output.dim().1,
            out_channels,
            "{}: output channels",
            self.case
        );
        assert_eq!(input.dim().0, output.dim().0, "{}: batch", self.case);
    }

    /// `backward`'s gradients are PyTorch's `grad_input`, `grad_weight` and `grad_bias`
    /// (null without bias).
    fn expect_gradients(&self, grads: &Gradients<Ix3>, context: &str) {
        let case = &self.case;
        let what = |name: &str| format!("{case}: {name} ({context})");
        assert_close(
            &grads.input,
            &self.tensor3("grad_input"),
            TOLERANCE,
            &what("grad_input"),
        );
        assert_close(
            &grads.weight,
            &self.tensor3("grad_weight"),
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

    /// `ConvTranspose1d.forward`'s `output_size` argument: an integer, or null.
    fn output_size(&self) -> Option<usize> {
        match self.get("output_size") {
            Value::Null => None,
            size => Some(self.as_usize(size, "output_size")),
        }
    }
}
