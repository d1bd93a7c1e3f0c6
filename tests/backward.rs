//! Training: `backward` of both layers against the naive reference, finite differences, the
//! adjoint identities, thread-count independence, and the optimisers.
//!
//! The grid below stamps a few `conv!` geometries (stride, dilation, padding, `same`,
//! output padding, per-axis pairs), each a real invocation so that each test runs the
//! gradient kernels unrolled for it. For each, proptest draws channel counts, groups
//! (depthwise included), batch, odd sizes from the smallest legal input to widths past 64,
//! standard or non-contiguous `x` and `grad_output`, and checks on every instruction set the
//! machine supports:
//!
//! * `Conv2d::backward` against `reference::conv2d_backward`;
//! * `ConvTranspose2d::backward` against `reference::conv_transpose2d_backward`, at the
//!   default output size and at every size `output_size` may choose;
//! * the adjoint identities `<conv(x), y> = <x, dx(y)>` and, with no bias,
//!   `<conv_V(x), y> = <V, dW(x, y)>` for any weight `V`, for both layers.

use conv_runtime::ndarray::{Array1, Array4, ArrayView4, Axis, Ix4, Zip, s};
use conv_runtime::optim::{Adam, Sgd};
use conv_runtime::prelude::*;
use conv_runtime::{Isa, reference};
use convgen::{assert_close, random_array};
use proptest::prelude::*;
use proptest::test_runner::Config;

/// Input gradients are sums of at most a few hundred products, as forward outputs are.
const INPUT_TOLERANCE: f32 = 2e-5;

/// Weight gradients sum one product per output position and image: up to a few thousand
/// here, in f32 in the kernels and f64 in the reference.
const WEIGHT_TOLERANCE: f32 = 1e-4;

/// The layer sizes and layouts one case draws.
#[derive(Clone, Debug)]
struct Case {
    batch: usize,
    groups: usize,
    in_per_group: usize,
    out_per_group: usize,
    /// Added to the smallest legal input size.
    extra: (usize, usize),
    bias: bool,
    /// How `x` and `grad_output` are stored: 0 standard, 1 NHWC viewed as NCHW, 2 every
    /// other column of a wider array, 3 standard starting on a cache line (as a layer's
    /// output does; the column kernel may read such a grad operand where it is).
    layout: u8,
    seed: u64,
}

fn cases() -> impl Strategy<Value = Case> {
    (
        1usize..=2,
        prop_oneof![Just(1usize), Just(2), Just(3)],
        1usize..=5,
        1usize..=6,
        0usize..=7,
        prop_oneof![0usize..=12, 60usize..=75],
        any::<bool>(),
        0u8..4,
        any::<u64>(),
    )
        .prop_map(
            |(batch, groups, in_per_group, out_per_group, h, w, bias, layout, seed)| Case {
                batch,
                groups,
                in_per_group,
                out_per_group,
                extra: (h, w),
                bias,
                layout,
                seed,
            },
        )
}

/// Random values of `shape` in the case's layout.
fn array(shape: (usize, usize, usize, usize), layout: u8, seed: u64) -> Array4<f32> {
    let (n, c, h, w) = shape;
    match layout {
        0 => random_array(shape, seed),
        1 => random_array((n, h, w, c), seed).permuted_axes([0, 3, 1, 2]),
        2 => {
            let wide = random_array((n, c, h, 2 * w), seed);
            // An owned array whose rows have a step of 2: `slice_move` keeps the strides.
            wide.slice_move(s![.., .., .., ..;2])
        }
        _ => {
            let values = random_array(shape, seed);
            let len = values.len();
            // 64 bytes: a cache line, the most any instruction set's vectors align to.
            let storage = Array1::<f32>::zeros(len + 15);
            let start = storage.as_ptr().align_offset(64);
            let mut aligned = storage.slice_move(s![start..start + len]);
            aligned.assign(&Array1::from_iter(values.iter().copied()));
            aligned.into_shape_with_order(shape).unwrap()
        }
    }
}

fn inner_product(a: &ArrayView4<f32>, b: &ArrayView4<f32>) -> f64 {
    let mut sum = 0.0;
    Zip::from(a)
        .and(b)
        .for_each(|&a, &b| sum += f64::from(a) * f64::from(b));
    sum
}

/// `left` and `right`, sums of `terms` products of values below 1 in magnitude, agree to
/// f32 rounding.
fn assert_identity(left: f64, right: f64, terms: usize, what: &str) {
    let tolerance = 1e-5 * (terms as f64).sqrt() + 1e-6 * left.abs().max(right.abs());
    assert!(
        (left - right).abs() <= tolerance,
        "{what}: {left} != {right}"
    );
}

fn check_conv<G: Geometry>(geometry: G, case: &Case, isa: Isa) {
    let spec = G::SPEC;
    let (kh, kw) = spec.kernel_size;
    let in_channels = case.groups * case.in_per_group;
    let out_channels = case.groups * case.out_per_group;
    let (conv_min, mode_min) = (spec.min_input_size(), spec.padding_min_input());
    let min = (conv_min.0.max(mode_min.0), conv_min.1.max(mode_min.1));
    let (h, w) = (min.0 + case.extra.0, min.1 + case.extra.1);
    let weight = random_array((out_channels, case.in_per_group, kh, kw), case.seed);
    let bias = case.bias.then(|| random_array(out_channels, case.seed ^ 1));
    let layer = Conv2d::from_weights(geometry, weight.clone(), bias, case.groups)
        .and_then(|layer| layer.with_isa(isa))
        .unwrap();
    let x = array((case.batch, in_channels, h, w), case.layout, case.seed ^ 2);
    let shape = layer.output_shape(x.dim().into()).unwrap();
    let gy = array(shape.into(), case.layout, case.seed ^ 3);
    let what = format!("{spec} conv, {case:?}");

    let grads = layer.backward(&x, &gy).unwrap();
    let expected =
        reference::conv2d_backward(&x, &weight, case.bias, &gy, &spec, case.groups).unwrap();
    assert_close(&grads.input, &expected.input, INPUT_TOLERANCE, &what);
    assert_close(&grads.weight, &expected.weight, WEIGHT_TOLERANCE, &what);
    match (&grads.bias, &expected.bias) {
        (Some(bias), Some(expected)) => assert_close(bias, expected, WEIGHT_TOLERANCE, &what),
        (None, None) => {}
        _ => panic!("{what}: a bias gradient exactly when the layer has a bias"),
    }

    // The adjoint identities, with a bias-free layer of another weight `v`.
    let v = random_array(weight.dim(), case.seed ^ 4);
    let plain = Conv2d::from_weights(geometry, v.clone(), None, case.groups)
        .and_then(|layer| layer.with_isa(isa))
        .unwrap();
    let y = plain.forward(&x).unwrap();
    let grads = plain.backward(&x, &gy).unwrap();
    let terms = gy.len() * kh * kw * case.in_per_group;
    assert_identity(
        inner_product(&y.view(), &gy.view()),
        inner_product(&x.view(), &grads.input.view()),
        terms,
        &format!("{what}: <conv x, y> = <x, dx y>"),
    );
    assert_identity(
        inner_product(&y.view(), &gy.view()),
        inner_product(&v.view(), &grads.weight.view()),
        terms,
        &format!("{what}: <conv_v x, y> = <v, dW>"),
    );
}

fn check_conv_transpose<G: ZeroPadded>(geometry: G, case: &Case, isa: Isa) {
    let spec = G::SPEC;
    let (kh, kw) = spec.kernel_size;
    let in_channels = case.groups * case.in_per_group;
    let out_channels = case.groups * case.out_per_group;
    let min = spec.transposed_min_input_size();
    // Narrower than the convolution's: the output is up to `stride` times wider.
    let (h, w) = (min.0 + case.extra.0, min.1 + case.extra.1 / 2);
    let weight = random_array((in_channels, case.out_per_group, kh, kw), case.seed);
    let bias = case.bias.then(|| random_array(out_channels, case.seed ^ 1));
    let layer = ConvTranspose2d::from_weights(geometry, weight.clone(), bias, case.groups)
        .and_then(|layer| layer.with_isa(isa))
        .unwrap();
    let x = array((case.batch, in_channels, h, w), case.layout, case.seed ^ 2);
    let (min, max) = spec.transposed_output_range((h, w)).unwrap();
    let default = layer.output_shape(x.dim().into()).unwrap();
    // The default size, and the smallest and largest `output_size` may choose.
    for (out_h, out_w) in [(default[2], default[3]), min, max] {
        let gy = array(
            (case.batch, out_channels, out_h, out_w),
            case.layout,
            case.seed ^ 3 ^ out_h as u64,
        );
        let what = format!("{spec} transposed to {out_h}x{out_w}, {case:?}");
        let grads = layer.backward(&x, &gy).unwrap();
        let expected =
            reference::conv_transpose2d_backward(&x, &weight, case.bias, &gy, &spec, case.groups)
                .unwrap();
        assert_close(&grads.input, &expected.input, INPUT_TOLERANCE, &what);
        assert_close(&grads.weight, &expected.weight, WEIGHT_TOLERANCE, &what);
        assert_eq!(grads.bias.is_some(), case.bias, "{what}");
        if let (Some(bias), Some(expected)) = (&grads.bias, &expected.bias) {
            assert_close(bias, expected, WEIGHT_TOLERANCE, &what);
        }

        let v = random_array(weight.dim(), case.seed ^ 4);
        let plain = ConvTranspose2d::from_weights(geometry, v.clone(), None, case.groups)
            .and_then(|layer| layer.with_isa(isa))
            .unwrap();
        let y = if [out_h, out_w] == default[2..] {
            // The default size may lie outside the range `output_size` accepts: output
            // padding can reach the dilation, past the stride.
            plain.forward(&x).unwrap()
        } else {
            plain.forward_with_output_size(&x, (out_h, out_w)).unwrap()
        };
        let grads = plain.backward(&x, &gy).unwrap();
        let terms = x.len() * kh * kw * case.out_per_group;
        assert_identity(
            inner_product(&y.view(), &gy.view()),
            inner_product(&x.view(), &grads.input.view()),
            terms,
            &format!("{what}: <convT x, y> = <x, dx y>"),
        );
        assert_identity(
            inner_product(&y.view(), &gy.view()),
            inner_product(&v.view(), &grads.weight.view()),
            terms,
            &format!("{what}: <convT_v x, y> = <v, dW>"),
        );
    }
}

// The geometries, named so that the other tests reuse them: each `conv!` type costs compile
// time for its kernels.
conv! { struct K1; k = 1 }
conv! { struct K1Stride3; k = 1, stride = 3, padding = 2, output_padding = 2 }
conv! { struct K2Stride2; k = 2, stride = 2 }
conv! { struct K3; k = 3, padding = 1 }
conv! { struct K3Padding2; k = 3, padding = 2 }
conv! { struct Strided; k = 3, stride = 2, padding = 1, output_padding = 1 }
conv! { struct Dilated; k = 3, dilation = 2, padding = 2 }
// Output padding 2 reaches past the stride (allowed below the dilation).
conv! { struct Dilated3; k = 3, dilation = 3, padding = 2, output_padding = 2 }
conv! { struct SameDilated; k = 4, padding = same, dilation = 2 }
conv! { struct Up; k = 4, stride = 2, padding = 1 }
conv! { struct Wide; k = (2, 5), stride = (1, 3), dilation = (2, 1), padding = (1, 2), output_padding = (1, 2) }
// Causal: all padding before; the transposed direction crops only at the top and left.
conv! { struct Causal; k = (2, 3), stride = (1, 2), dilation = (3, 2), padding = causal }
conv! { struct Tall; k = (5, 2), stride = (3, 2), dilation = (1, 3), padding = (3, 0), output_padding = (2, 1) }

// Padding modes (Conv2d only): the border is a copy of input elements, so its gradient
// folds back onto them. Inputs start at the smallest the mode pads (reflect: one more than
// the pad).
conv! { struct Reflect; k = 3, dilation = 2, padding = 2, padding_mode = reflect }
conv! { struct ReplicateStrided; k = (3, 4), stride = 2, padding = (1, 3), padding_mode = replicate }
conv! { struct CircularSame; k = 4, padding = same, dilation = (1, 2), padding_mode = circular }

/// Runs `check` on six drawn cases, each on every instruction set.
fn run_grid(check: impl Fn(&Case, Isa)) {
    let config = Config {
        cases: 6,
        failure_persistence: None,
        ..Config::default()
    };
    proptest!(config, |(case in cases())| {
        for isa in Isa::available() {
            check(&case, isa);
        }
    });
}

/// One test per geometry, both layers.
macro_rules! grid {
    ($($name:ident: $geometry:expr;)*) => {$(
        #[test]
        fn $name() {
            run_grid(|case, isa| {
                check_conv($geometry, case, isa);
                check_conv_transpose($geometry, case, isa);
            });
        }
    )*};
}

grid! {
    k1: K1;
    k1_stride3_padding2: K1Stride3;
    k2_stride2: K2Stride2;
    k3_padding1: K3;
    k3_stride2_padding1_output_padding1: Strided;
    k3_dilation2_padding2: Dilated;
    k3_dilation3_output_padding_above_stride: Dilated3;
    k4_same_dilation2: SameDilated;
    k4_stride2_padding1: Up;
    k2x5_asymmetric: Wide;
    k5x2_asymmetric: Tall;
    k2x3_causal: Causal;
}

/// One test per geometry, `Conv2d` only (padding modes have no transposed layer).
macro_rules! conv_grid {
    ($($name:ident: $geometry:expr;)*) => {$(
        #[test]
        fn $name() {
            run_grid(|case, isa| check_conv($geometry, case, isa));
        }
    )*};
}

conv_grid! {
    k3_dilation2_reflect: Reflect;
    k3x4_stride2_replicate: ReplicateStrided;
    k4_same_dilated_circular: CircularSame;
}

/// Depthwise layers (one input and one output channel per group, or a multiplier) take the
/// narrow kernels; wide layers the widest blocking, with channel counts not a multiple of
/// it; three channels a side (an RGB image) the blockings made for three.
#[test]
fn depthwise_and_wide_blockings() {
    for isa in Isa::available() {
        let layers = [
            (7, 1, 1),
            (4, 1, 2),
            (1, 9, 11),
            (2, 5, 6),
            (1, 3, 11),
            (2, 11, 3),
            // Enough channels on both sides for the channel kernel, with a partial block
            // of each.
            (1, 7, 50),
            (1, 50, 7),
        ];
        for (groups, in_per_group, out_per_group) in layers {
            let case = Case {
                batch: 2,
                groups,
                in_per_group,
                out_per_group,
                extra: (4, 70),
                bias: true,
                layout: 0,
                seed: (groups * 100 + in_per_group) as u64,
            };
            check_conv(Dilated, &case, isa);
            check_conv_transpose(Dilated, &case, isa);
        }
    }
}

/// The column kernel reads the grad operand (`grad_output` of a convolution, `x` of a
/// transposed one) where it is, not a copy, where it starts on a cache line, its rows are
/// whole vectors on every set (64 columns) and every block of grad channels is full (12 a
/// group, a whole number of every set's blocks: the convolution's output channels, the
/// transposed layer's input channels): that path against the reference,
/// the adjoint identities and the copied path, on every instruction set.
#[test]
fn aligned_grads_are_read_in_place() {
    let spec = Dilated::SPEC;
    // `Dilated` keeps the size: the convolution's grid is its input's 64 columns.
    let conv_extra = (1, 64 - spec.min_input_size().1);
    // The transposed layer's grid is its input: `check_conv_transpose` takes half the extra.
    let transposed_extra = (1, 2 * (64 - spec.transposed_min_input_size().1));
    for isa in Isa::available() {
        for layout in [3, 0] {
            let case = |(in_per_group, out_per_group), extra| Case {
                batch: 2,
                groups: 2,
                in_per_group,
                out_per_group,
                extra,
                bias: true,
                layout,
                seed: 70 + u64::from(layout),
            };
            check_conv(Dilated, &case((4, 12), conv_extra), isa);
            check_conv_transpose(Dilated, &case((12, 4), transposed_extra), isa);
        }
    }
}

/// 3x3 layers of stride 1 with at least 16 channels a side compute the weight gradient by
/// Winograd's transforms (2x2 tiles): odd and even grids (a last tile half outside), grids
/// of one tile and of more than one chunk of 64 tiles, padding 1 and 2 (a grid larger than
/// the input), channel counts that are not whole vectors on any set, both directions (the
/// transposed layer's weight gradient correlates its output gradient with its input),
/// standard and non-contiguous operands, batches: the reference's numbers and the adjoint
/// identities, on every instruction set.
#[test]
fn winograd_weight_gradients_match_the_reference() {
    for isa in Isa::available() {
        let cases = [
            (1, 16, 16, (0, 0), 0),
            (2, 17, 23, (4, 70), 1),
            (1, 24, 40, (11, 12), 2),
            (2, 33, 16, (12, 5), 0),
            (1, 16, 20, (16, 17), 1),
        ];
        for (n, (batch, in_per_group, out_per_group, extra, layout)) in
            cases.into_iter().enumerate()
        {
            let case = Case {
                batch,
                groups: 1,
                in_per_group,
                out_per_group,
                extra,
                bias: n % 2 == 0,
                layout,
                seed: 40 + n as u64,
            };
            check_conv(K3, &case, isa);
            check_conv(K3Padding2, &case, isa);
            check_conv_transpose(K3, &case, isa);
            check_conv_transpose(K3Padding2, &case, isa);
        }

        // An infinity in either operand goes where the direct correlation sends it (the
        // transforms would spread it over every tap of its tiles).
        let layer = Conv2d::builder(K3, 16, 17)
            .seed(3)
            .isa(isa)
            .build()
            .unwrap();
        let x = random_array((1, 16, 9, 12), 11);
        let gy = random_array((1, 17, 9, 12), 12);
        let (mut bad_x, mut bad_gy) = (x.clone(), gy.clone());
        bad_x[[0, 3, 4, 5]] = f32::INFINITY;
        bad_gy[[0, 2, 0, 11]] = f32::NEG_INFINITY;
        for (x, gy, what) in [(&bad_x, &gy, "x"), (&x, &bad_gy, "grad_output")] {
            let what = format!("{isa}: an infinity in {what}");
            let grads = layer.backward(x, gy).unwrap();
            let expected =
                reference::conv2d_backward(x, layer.weight(), true, gy, &K3::SPEC, 1).unwrap();
            assert_close(&grads.weight, &expected.weight, WEIGHT_TOLERANCE, &what);
            assert!(grads.weight.iter().any(|v| !v.is_finite()), "{what}");
            assert!(grads.weight.iter().any(|v| v.is_finite()), "{what}");
        }
    }
}

/// Infinities and NaN in `x` spread to the weight gradient exactly as in the reference (and
/// PyTorch): wherever they are multiplied, including by the zero padding, and nowhere else,
/// in particular not from columns past the last the convolution reaches (the kernels sum
/// those grid columns one by one instead of in zero-padded vectors). Two channels into three
/// take the column kernel; seven into fifty, the channel kernel.
#[test]
fn nonfinite_inputs_reach_exactly_the_weights_they_multiply() {
    for isa in Isa::available() {
        for (channels, width, position) in [
            ((2, 3), 21, 20),
            ((2, 3), 37, 36),
            ((2, 3), 37, 0),
            ((2, 3), 40, 17),
            ((7, 50), 21, 20),
            ((7, 50), 9, 0),
        ] {
            nonfinite_case(isa, channels, width, position);
        }
    }
}

fn nonfinite_case(isa: Isa, (inputs, outputs): (usize, usize), width: usize, position: usize) {
    let layer = Conv2d::builder(Strided, inputs, outputs)
        .seed(1)
        .isa(isa)
        .build()
        .unwrap();
    // The weight gradient of `x` and `gy`, checked against the reference's.
    let weight_gradient = |x: &Array4<f32>, gy: &Array4<f32>, what: &str| {
        let grads = layer.backward(x, gy).unwrap();
        let expected =
            reference::conv2d_backward(x, layer.weight(), true, gy, &Strided::SPEC, 1).unwrap();
        assert_close(&grads.weight, &expected.weight, WEIGHT_TOLERANCE, what);
        grads.weight
    };
    let mut x = random_array((1, inputs, 7, width), 5);
    x[[0, 1, 3, position]] = f32::INFINITY;
    x[[0, 0, 6, position / 2]] = f32::NAN;
    let gy = random_array(layer.output_shape(x.dim().into()).unwrap(), 6);
    let what = format!("{isa}, {inputs} -> {outputs}, width {width}, inf at column {position}");
    let weight = weight_gradient(&x, &gy, &what);
    assert!(weight.iter().any(|v| !v.is_finite()), "{what}");

    // An infinity in the output gradient meets the zero padding row above the input: the
    // kernel must not skip that row's products (they are NaN).
    let (x, mut gy) = (random_array(x.dim(), 8), gy);
    gy[[0, 1, 0, 1]] = f32::INFINITY;
    let what = format!("{isa}, {inputs} -> {outputs}, width {width}, inf in the output gradient");
    let weight = weight_gradient(&x, &gy, &what);
    assert!(weight.iter().any(|v| v.is_nan()), "{what}");

    // Likewise the zero padding column left of the input, from a middle row: the channel
    // kernel must not skip that column's products either.
    let mut gy = random_array(gy.dim(), 9);
    gy[[0, 1, 2, 0]] = f32::INFINITY;
    let what = format!("{what}, in column 0 of row 2");
    let weight = weight_gradient(&x, &gy, &what);
    assert!(weight.iter().any(|v| v.is_nan()), "{what}");

    let up = ConvTranspose2d::builder(Strided, inputs, outputs)
        .seed(2)
        .isa(isa)
        .build()
        .unwrap();
    let gy = random_array(up.output_shape(x.dim().into()).unwrap(), 7);
    let grads = up.backward(&x, &gy).unwrap();
    let expected =
        reference::conv_transpose2d_backward(&x, up.weight(), true, &gy, &Strided::SPEC, 1)
            .unwrap();
    assert_close(&grads.weight, &expected.weight, WEIGHT_TOLERANCE, &what);
}

/// The loss `sum(y^2) / 2`, accumulated in f64, whose gradient with respect to `y` is `y`.
fn loss(y: &Array4<f32>) -> f64 {
    y.iter().map(|&v| 0.5 * f64::from(v) * f64::from(v)).sum()
}

/// Central differences of `loss(forward(..))` against `backward`, for every weight and bias
/// element and a sample of input elements. The loss is quadratic, so the central difference
/// is exact but for rounding: the tolerance covers the f32 rounding of the outputs over the
/// step.
fn finite_differences<L: Trainable<Dim = Ix4>>(
    layer: &L,
    x: &Array4<f32>,
    forward: impl Fn(&L, &Array4<f32>) -> Array4<f32>,
    backward: impl Fn(&L, &Array4<f32>, &Array4<f32>) -> Gradients,
    rebuild: impl Fn(Array4<f32>, Option<Array1<f32>>) -> L,
    what: &str,
) {
    const STEP: f32 = 1e-2;
    let y = forward(layer, x);
    let grads = backward(layer, x, &y);
    let check = |numeric: f64, analytic: f32, name: String| {
        let error = (numeric - f64::from(analytic)).abs() / (1.0 + f64::from(analytic).abs());
        assert!(
            error < 2e-3,
            "{what}: d loss / d {name}: finite differences give {numeric}, backward {analytic}"
        );
    };
    let weight = layer.weight().to_owned();
    let bias = layer.bias().map(|b| b.to_owned());
    for (index, &analytic) in grads.weight.indexed_iter() {
        let at = |delta: f32| {
            let mut w = weight.clone();
            w[index] += delta;
            loss(&forward(&rebuild(w, bias.clone()), x))
        };
        let numeric = (at(STEP) - at(-STEP)) / (2.0 * f64::from(STEP));
        check(numeric, analytic, format!("weight{index:?}"));
    }
    if let (Some(bias), Some(grad)) = (&bias, &grads.bias) {
        for (index, &analytic) in grad.indexed_iter() {
            let at = |delta: f32| {
                let mut b = bias.clone();
                b[index] += delta;
                loss(&forward(&rebuild(weight.clone(), Some(b)), x))
            };
            let numeric = (at(STEP) - at(-STEP)) / (2.0 * f64::from(STEP));
            check(numeric, analytic, format!("bias[{index}]"));
        }
    }
    // Every 7th input element: the first, the last rows and columns, and the interior.
    for (index, &analytic) in grads.input.indexed_iter().step_by(7) {
        let at = |delta: f32| {
            let mut x = x.clone();
            x[index] += delta;
            loss(&forward(layer, &x))
        };
        let numeric = (at(STEP) - at(-STEP)) / (2.0 * f64::from(STEP));
        let (n, c, h, w) = index;
        check(numeric, analytic, format!("x[{n}, {c}, {h}, {w}]"));
    }
}

fn finite_differences_for<G: ZeroPadded>(geometry: G, groups: usize, seed: u64) {
    let spec = G::SPEC;
    let (kh, kw) = spec.kernel_size;
    let (in_channels, out_channels) = (2 * groups, groups * (1 + seed as usize % 2));
    let min = spec.min_input_size();
    let size = (min.0 + 2 + seed as usize % 3, min.1 + 3);
    let weight = random_array((out_channels, in_channels / groups, kh, kw), seed);
    let bias = Some(random_array(out_channels, seed ^ 1));
    let layer = Conv2d::from_weights(geometry, weight, bias.clone(), groups).unwrap();
    let x = random_array((2, in_channels, size.0, size.1), seed ^ 2);
    finite_differences(
        &layer,
        &x,
        |layer, x| layer.forward(x).unwrap(),
        |layer, x, gy| layer.backward(x, gy).unwrap(),
        |w, b| Conv2d::from_weights(geometry, w, b, groups).unwrap(),
        &format!("{spec} conv, groups {groups}"),
    );

    let weight = random_array((in_channels, out_channels / groups, kh, kw), seed ^ 3);
    let layer = ConvTranspose2d::from_weights(geometry, weight, bias, groups).unwrap();
    let min = spec.transposed_min_input_size();
    let x = random_array((2, in_channels, min.0 + 2, min.1 + 3), seed ^ 4);
    finite_differences(
        &layer,
        &x,
        |layer, x| layer.forward(x).unwrap(),
        |layer, x, gy| layer.backward(x, gy).unwrap(),
        |w, b| ConvTranspose2d::from_weights(geometry, w, b, groups).unwrap(),
        &format!("{spec} transposed, groups {groups}"),
    );
}

#[test]
fn finite_differences_on_random_geometries() {
    let config = Config {
        cases: 3,
        failure_persistence: None,
        ..Config::default()
    };
    proptest!(config, |(seed in any::<u64>(), groups in 1usize..=2)| {
        finite_differences_for(Strided, groups, seed);
        finite_differences_for(Wide, groups, seed);
        finite_differences_for(Tall, groups, seed);
    });
}

/// The same backward on one thread and on several gives bit-identical gradients: every sum
/// is made by one task in a fixed order.
#[test]
fn gradients_do_not_depend_on_the_thread_count() {
    // Large enough for every part to run in parallel.
    let conv = Conv2d::builder(K3, 16, 24).seed(1).build().unwrap();
    let up = ConvTranspose2d::builder(Up, 24, 16)
        .seed(2)
        .build()
        .unwrap();
    let x = random_array((2, 16, 70, 67), 3);
    let gy = random_array((2, 24, 70, 67), 4);
    let up_x = random_array((2, 24, 35, 34), 5);
    let up_gy = random_array((2, 16, 70, 68), 6);
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            (
                conv.backward(&x, &gy).unwrap(),
                up.backward(&up_x, &up_gy).unwrap(),
            )
        })
    };
    let one = run(1);
    for threads in [2, 3] {
        assert!(
            run(threads) == one,
            "{threads} threads differ from one thread"
        );
    }
}

/// An empty batch has zero gradients, as in PyTorch.
#[test]
fn empty_batch_has_zero_parameter_gradients() {
    let layer = Conv2d::new(K3, 2, 4);
    let grads = layer
        .backward(
            &Array4::<f32>::zeros((0, 2, 5, 5)),
            &Array4::<f32>::zeros((0, 4, 5, 5)),
        )
        .unwrap();
    assert_eq!(grads.input.shape(), &[0, 2, 5, 5]);
    assert!(grads.weight.iter().all(|&v| v == 0.0));
    assert!(grads.bias.unwrap().iter().all(|&v| v == 0.0));
}

// The optimisers.

/// A layer with weight `[0.5, -1, 2]` (three input channels, a 1x1 kernel) and bias
/// `[0.25]`.
fn small_layer() -> Conv2d<K1> {
    Conv2d::from_weights(
        K1,
        Array4::from_shape_vec((1, 3, 1, 1), vec![0.5, -1.0, 2.0]).unwrap(),
        Some(Array1::from(vec![0.25])),
        1,
    )
    .unwrap()
}

/// Three fixed gradients for [`small_layer`].
fn fixed_gradients() -> Vec<Gradients> {
    [
        ([0.1, -0.2, 0.3], 0.5),
        ([-0.4, 0.05, 0.2], -0.25),
        ([0.3, 0.3, -0.1], 0.125),
    ]
    .into_iter()
    .map(|(weight, bias)| Gradients {
        input: Array4::zeros((1, 3, 1, 1)),
        weight: Array4::from_shape_vec((1, 3, 1, 1), weight.to_vec()).unwrap(),
        bias: Some(Array1::from(vec![bias])),
    })
    .collect()
}

/// `optimizer`'s three steps on [`small_layer`] give `weight` and `bias`.
fn assert_steps(mut optimizer: impl Optimizer, weight: [f64; 3], bias: f64, what: &str) {
    let mut layer = small_layer();
    for grads in fixed_gradients() {
        optimizer.step(&mut layer, &grads).unwrap();
    }
    let got: Vec<f64> = layer.weight().iter().map(|&v| f64::from(v)).collect();
    let got_bias = f64::from(layer.bias().unwrap()[0]);
    for (got, expected) in got
        .iter()
        .chain([&got_bias])
        .zip(weight.iter().chain([&bias]))
    {
        assert!(
            (got - expected).abs() < 1e-6,
            "{what}: weight {got:?} bias {got_bias}, expected {weight:?} {bias}"
        );
    }
    // The packed kernels follow the update.
    let y = layer.forward(&Array4::<f32>::ones((1, 3, 1, 1))).unwrap();
    let expected = got.iter().sum::<f64>() + got_bias;
    assert!(
        (f64::from(y[[0, 0, 0, 0]]) - expected).abs() < 1e-5,
        "{what}: forward"
    );
}

/// SGD against PyTorch's `torch.optim.SGD` (values printed by torch 2.x for the same
/// parameters and gradients) and against its update rule computed by hand in f64.
#[test]
fn sgd_matches_pytorch() {
    assert_steps(
        Sgd::new(0.1),
        [0.5, -1.0149999856948853, 1.9600000381469727],
        0.21250000596046448,
        "plain",
    );
    assert_steps(
        Sgd::new(0.1).momentum(0.9),
        [0.5189000368118286, -0.9853000044822693, 1.8906999826431274],
        0.1495000123977661,
        "momentum",
    );
    assert_steps(
        Sgd::new(0.1)
            .momentum(0.9)
            .weight_decay(0.01)
            .nesterov(true),
        [0.5129509568214417, -0.9939226508140564, 1.8459407091140747],
        0.12046553939580917,
        "nesterov, weight decay",
    );

    // The rule by hand: momentum 0.9, weight decay 0.01, Nesterov, on the first weight.
    let (lr, mu, wd) = (0.1, 0.9, 0.01);
    let (mut p, mut b) = (0.5f64, 0.0f64);
    for (step, g) in [0.1, -0.4, 0.3].into_iter().enumerate() {
        let d = g + wd * p;
        b = if step == 0 { d } else { mu * b + d };
        p -= lr * (d + mu * b);
    }
    assert!((p - 0.5129509568214417).abs() < 1e-6, "by hand: {p}");
}

/// Adam against PyTorch's `torch.optim.Adam` (torch 2.x) and its rule by hand in f64.
#[test]
fn adam_matches_pytorch() {
    assert_steps(
        Adam::new(0.01),
        [0.49533185362815857, -0.9885178804397583, 1.9747775793075562],
        0.23393233120441437,
        "defaults",
    );
    assert_steps(
        Adam::new(0.01).betas(0.8, 0.99).eps(1e-6).weight_decay(0.1),
        [0.4924919903278351, -0.9819384217262268, 1.9720711708068848],
        0.23366239666938782,
        "betas, eps, weight decay",
    );

    let (lr, b1, b2, eps) = (0.01, 0.9f64, 0.999f64, 1e-8);
    let (mut p, mut m, mut v) = (-1.0f64, 0.0, 0.0);
    for (step, g) in [-0.2, 0.05, 0.3].into_iter().enumerate() {
        let t = step as i32 + 1;
        m = b1 * m + (1.0 - b1) * g;
        v = b2 * v + (1.0 - b2) * g * g;
        let (m_hat, v_hat) = (m / (1.0 - b1.powi(t)), v / (1.0 - b2.powi(t)));
        p -= lr * m_hat / (v_hat.sqrt() + eps);
    }
    assert!((p - -0.9885178804397583).abs() < 1e-6, "by hand: {p}");
    let mut adam = Adam::new(0.01);
    let mut layer = small_layer();
    adam.step(&mut layer, &fixed_gradients()[0]).unwrap();
    assert_eq!(adam.steps(), 1);
}

/// A few steps of training fit an upsampling layer to a target, for both optimisers, on
/// every instruction set.
#[test]
fn training_lowers_the_loss() {
    let teacher = ConvTranspose2d::builder(Up, 3, 2).seed(1).build().unwrap();
    let x = random_array((2, 3, 6, 7), 2);
    let target = teacher.forward(&x).unwrap();
    let train = |isa: Isa, optimizer: &mut dyn FnMut(&mut ConvTranspose2d<Up>, &Gradients)| {
        let mut student = ConvTranspose2d::builder(Up, 3, 2)
            .seed(3)
            .isa(isa)
            .build()
            .unwrap();
        let mut losses = Vec::new();
        for _ in 0..40 {
            let y = student.forward(&x).unwrap();
            let error = &y - &target;
            losses.push(error.iter().map(|e| f64::from(e * e)).sum::<f64>());
            let grads = student.backward(&x, &error).unwrap();
            optimizer(&mut student, &grads);
        }
        (losses[0], losses[losses.len() - 1])
    };
    for isa in Isa::available() {
        let mut adam = Adam::new(0.05);
        let (first, last) = train(isa, &mut |layer, grads| adam.step(layer, grads).unwrap());
        assert!(last < 0.05 * first, "{isa}, Adam: {first} -> {last}");
        let mut sgd = Sgd::new(0.01).momentum(0.9);
        let (first, last) = train(isa, &mut |layer, grads| sgd.step(layer, grads).unwrap());
        assert!(last < 0.05 * first, "{isa}, SGD: {first} -> {last}");
    }
}

#[test]
fn optimizers_refuse_gradients_of_another_shape() {
    let mut layer = small_layer();
    let mut grads = fixed_gradients().remove(0);
    grads.weight = Array4::zeros((1, 2, 1, 1));
    let error = Adam::new(0.1).step(&mut layer, &grads).unwrap_err();
    assert_eq!(
        error,
        ConvError::GradientShape {
            parameter: conv_runtime::Parameter::Weight,
            expected: vec![1, 3, 1, 1],
            got: vec![1, 2, 1, 1],
        }
    );
    assert_eq!(
        error.to_string(),
        "weight gradient has shape [1, 2, 1, 1], but the layer's weight has shape [1, 3, 1, 1]"
    );
    let mut grads = fixed_gradients().remove(0);
    grads.bias = None;
    assert!(matches!(
        Sgd::new(0.1).step(&mut layer, &grads),
        Err(ConvError::GradientShape { .. })
    ));
    assert_eq!(
        layer.weight()[[0, 0, 0, 0]],
        0.5,
        "a refused step changes nothing"
    );
}

#[test]
fn an_optimizer_belongs_to_one_layer() {
    let mut adam = Adam::new(0.1);
    let mut layer = small_layer();
    adam.step(&mut layer, &fixed_gradients()[0]).unwrap();
    let mut other = Conv2d::new(K3, 1, 2);
    let grads = other
        .backward(
            &Array4::<f32>::ones((1, 1, 3, 3)),
            &Array4::<f32>::ones((1, 2, 3, 3)),
        )
        .unwrap();
    let before = other.weight().clone();
    let error = adam.step(&mut other, &grads).unwrap_err();
    assert!(
        error.to_string().contains("use one optimiser per layer"),
        "{error}"
    );
    assert_eq!(other.weight(), &before);
    assert_eq!(adam.steps(), 1);
    let mut sgd = Sgd::new(0.1).momentum(0.5);
    sgd.step(&mut layer, &fixed_gradients()[0]).unwrap();
    assert!(matches!(
        sgd.step(&mut other, &grads),
        Err(ConvError::OptimizerState { .. })
    ));
    // Without momentum SGD has no state, and serves any layer.
    let mut plain = Sgd::new(0.1);
    plain.step(&mut layer, &fixed_gradients()[0]).unwrap();
    plain.step(&mut other, &grads).unwrap();
}

/// Batch-mean gradients: the bias gradient is the sum of `grad_output` over the batch and
/// space, per channel, whatever its layout.
#[test]
fn bias_gradient_sums_over_batch_and_space() {
    let layer = Conv2d::new(K1, 1, 3);
    let x = Array4::<f32>::zeros((3, 1, 4, 5));
    let gy = random_array((3, 4, 5, 3), 9).permuted_axes([0, 3, 1, 2]);
    let grads = layer.backward(&x, &gy).unwrap();
    let expected: Vec<f32> = (0..3)
        .map(|c| gy.index_axis(Axis(1), c).iter().sum())
        .collect();
    assert_close(&grads.bias.unwrap(), &Array1::from(expected), 1e-5, "bias");
}
