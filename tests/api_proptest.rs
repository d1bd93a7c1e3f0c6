//! Property test of the layers' public API: every call either returns a typed `ConvError` or a
//! result equal to the reference's, and nothing ever panics.
//!
//! Each case draws a geometry (from a fixed set, since geometry is compile-time), a direction,
//! channel counts and groups (zero and non-dividing ones included), bias on or off, the
//! instruction set, and an input of any batch and any size from empty to 12 rows by 12 (now
//! and then 40) columns, in one of several memory layouts. For every other argument it draws
//! the right shape or a wrong one: the weight's kernel, the bias's length, the input's
//! channels, the array `forward_into` writes (also as a strided view), the output gradient,
//! and the size asked of `forward_with_output_size`. It then calls `builder().build()`,
//! `from_weights`, `output_shape`, `forward`, `forward_into`, `backward` and
//! `forward_with_output_size`, and checks each outcome against two oracles:
//!
//! - the naive implementations in `conv_runtime::reference`, given the same parameters: the
//!   layer refuses with the same `ConvError` when they refuse, and otherwise returns values
//!   within a tolerance scaled to the sum of the absolute products behind each value;
//! - PyTorch's shape rules, written out again in this file independently of the library:
//!   which error (or which kind of error) each call must return, and the exact shape of every
//!   result.
//!
//! Nothing is wrapped in `catch_unwind`: a panic in the library fails the case like a failed
//! assertion, and proptest shrinks it like one.
//!
//! # Reproducing a failure
//!
//! The cases come from a fixed RNG seed and no failure file is read or written, so every run
//! of `cargo test --test api_proptest` checks the same cases and a failure reproduces as is.
//! Proptest prints the minimal `Case` it shrank the failure to; the assertion message names
//! the layer, the geometry, the instruction set and the call. (`Case::isa` indexes the sets
//! the machine has, so a case can map to another set on another machine.) To explore beyond
//! the fixed cases, proptest's environment variables override the seed and the count, e.g.
//! `PROPTEST_RNG_SEED=7 PROPTEST_CASES=50000 cargo test --test api_proptest`.

use std::mem::discriminant;

use conv_runtime::ndarray::{
    Array, Array1, Array4, ArrayBase, ArrayView4, ArrayViewMut4, Data, Dimension, Ix4, s,
};
use conv_runtime::prelude::*;
use conv_runtime::{
    Accepts, Convolution, Direction, Isa, Layer, Operation, Padding, Transposed, reference,
};
use convgen::random_array;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestCaseError};

/// The seed of the cases: fixed, so that every run checks the same cases.
const RNG_SEED: u64 = 0x5eed_c0a7;

/// Enough cases that every geometry and direction meets each fault many times, few enough
/// that the test runs in about 10 s at the test profile's opt-level (the naive oracles take
/// most of it).
const CASES: u32 = 5000;

/// A value matches the reference's when they differ by at most `RELATIVE_TOLERANCE` times
/// the sum of the absolute values of the products (and bias) that make it, plus
/// `ABSOLUTE_TOLERANCE`. The reference sums in `f64`; the kernels sum in `f32`, in their own
/// order, up to a few thousand terms here: their error, measured, stays below 3e-7 of that
/// sum. A wrong or missing product, with values in [-1, 1), is orders of magnitude larger.
const RELATIVE_TOLERANCE: f32 = 1e-4;
const ABSOLUTE_TOLERANCE: f32 = 1e-6;

/// How many geometries [`check_case`] dispatches to.
const GEOMETRIES: usize = 8;

fn config() -> Config {
    Config {
        cases: CASES,
        rng_seed: RngSeed::Fixed(RNG_SEED),
        // A failure file would replay an old failure before the fixed cases; the fixed seed
        // already reproduces every failure.
        failure_persistence: None,
        // Bounds the time a failure takes to shrink (each case runs several naive oracles).
        max_shrink_iters: 2048,
        ..Config::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn every_call_refuses_like_the_reference_or_matches_it(case in cases()) {
        check_case(&case)?;
    }
}

/// Runs `case` on its geometry. Every `conv!` type compiles its own kernels, so the set is
/// small and chosen to reach distinct code paths: padding, dilation, strides in both
/// directions, per-axis values, `padding = same` with its uneven split, a 1x1 kernel, and
/// output padding (on one axis beyond the stride, where the dilation allows it).
fn check_case(case: &Case) -> Result<(), TestCaseError> {
    match case.geometry {
        0 => check_geometry(conv!(k = 3, padding = 1), case),
        1 => check_geometry(conv!(k = 3, dilation = 2, padding = 2), case),
        2 => check_geometry(
            conv!(k = 3, stride = 2, padding = 1, output_padding = 1),
            case,
        ),
        3 => check_geometry(
            conv!(
                kernel_size = (3, 2),
                stride = (2, 1),
                padding = (1, 0),
                dilation = (1, 2),
                output_padding = (1, 1)
            ),
            case,
        ),
        4 => check_geometry(conv!(k = 4, padding = same), case),
        5 => check_geometry(conv!(k = 1), case),
        6 => check_geometry(conv!(k = 2, stride = 2), case),
        7 => check_geometry(conv!(k = 4, stride = 2, padding = 1), case),
        other => unreachable!("the strategy draws geometries below {GEOMETRIES}, not {other}"),
    }
}

fn check_geometry<G: ZeroPadded>(geometry: G, case: &Case) -> Result<(), TestCaseError> {
    if case.transposed {
        check_transposed(geometry, case)
    } else {
        check_conv(geometry, case)
    }
}

fn check_conv<G: Geometry>(geometry: G, case: &Case) -> Result<(), TestCaseError> {
    check_layer::<G, Convolution>(geometry, case).map(drop)
}

fn check_transposed<G: ZeroPadded>(geometry: G, case: &Case) -> Result<(), TestCaseError> {
    match check_layer::<G, Transposed>(geometry, case)? {
        Some(checked) => check_output_size(&checked, case),
        None => Ok(()),
    }
}

// ---------------------------------------------------------------------------------------
// The cases.

/// One draw of everything a user controls at run time.
#[derive(Clone, Debug)]
struct Case {
    /// Which of [`check_case`]'s geometries.
    geometry: usize,
    /// `ConvTranspose2d` rather than `Conv2d`.
    transposed: bool,
    in_channels: usize,
    out_channels: usize,
    groups: usize,
    bias: bool,
    weight_fault: WeightFault,
    bias_fault: BiasFault,
    batch: usize,
    height: usize,
    width: usize,
    input_channels: InputChannels,
    input_layout: Layout,
    output_fault: ShapeFault,
    output_layout: OutputLayout,
    grad_fault: GradFault,
    /// The size asked of `forward_with_output_size`, as an offset from the smallest allowed
    /// on each axis: -1 is too small, and anything beyond `stride - 1` too large.
    size_offset: (isize, isize),
    /// Which of the instruction sets this machine has (`Isa::available`, cyclically) the
    /// layer's kernels use.
    isa: usize,
    /// Seeds the weight, bias, input and output gradient values, and the builder.
    seed: u64,
}

impl Case {
    fn isa(&self) -> Isa {
        let available = Isa::available();
        available[self.isa % available.len()]
    }
}

/// How the weight given to `from_weights` departs from PyTorch's shape.
#[derive(Clone, Copy, Debug)]
enum WeightFault {
    None,
    /// One more kernel row than the geometry's.
    TallerKernel,
    /// One kernel column fewer (none, for a one-column kernel).
    NarrowerKernel,
}

/// How the bias given to `from_weights` departs from one value per output channel.
#[derive(Clone, Copy, Debug)]
enum BiasFault {
    None,
    Longer,
    Shorter,
}

/// The input's channel count.
#[derive(Clone, Copy, Debug)]
enum InputChannels {
    /// The layer's `in_channels`.
    Matching,
    /// This many, which may happen to match.
    Exactly(usize),
}

/// How an input (or output gradient) is laid out in memory; every layout shows the layer
/// the same logical NCHW values it shows the reference.
#[derive(Clone, Copy, Debug)]
enum Layout {
    Standard,
    /// NHWC storage viewed as NCHW through `permuted_axes`: the channel axis has stride 1.
    ChannelsLast,
    /// Every other row and column of an array twice as high and wide.
    EveryOtherElement,
    /// Rows in reverse, a negative stride.
    ReversedRows,
    /// One image broadcast over the batch: a zero stride.
    BroadcastBatch,
}

/// How the array given to `forward_into` is laid out.
#[derive(Clone, Copy, Debug)]
enum OutputLayout {
    Standard,
    /// NHWC storage viewed as NCHW.
    ChannelsLast,
    /// Every other column of an array twice as wide; the columns between must stay untouched.
    EveryOtherColumn,
}

/// How the array given to `forward_into` departs from the output's shape.
#[derive(Clone, Copy, Debug)]
enum ShapeFault {
    None,
    ExtraImage,
    ExtraChannel,
    /// One column fewer (one more, when the output has none).
    OtherWidth,
}

/// How the output gradient given to `backward` departs from the output's shape.
#[derive(Clone, Copy, Debug)]
enum GradFault {
    None,
    ExtraImage,
    ExtraChannel,
    /// A convolution's: one more row. A transposed convolution's: the size asked of
    /// `forward_with_output_size`, which `backward` accepts when it is in range.
    OtherSize,
}

fn cases() -> impl Strategy<Value = Case> {
    // Each fault is drawn rarely enough that most cases get past `from_weights` to the
    // numerical checks, often enough that each one occurs hundreds of times per run.
    // Alternatives that break nothing come first: proptest shrinks towards them, so a
    // minimal failing case keeps only the faults it needs.
    let channels = || prop_oneof![12 => 1..=6usize, 1 => Just(0usize)];
    let layer = (
        0..GEOMETRIES,
        any::<bool>(),
        channels(),
        channels(),
        prop_oneof![4 => Just(1usize), 1 => 0..=4usize],
        any::<bool>(),
        prop_oneof![
            10 => Just(WeightFault::None),
            1 => Just(WeightFault::TallerKernel),
            1 => Just(WeightFault::NarrowerKernel),
        ],
        prop_oneof![
            10 => Just(BiasFault::None),
            1 => Just(BiasFault::Longer),
            1 => Just(BiasFault::Shorter),
        ],
    );
    let input = (
        0..=2usize,
        0..=12usize,
        // Now and then wider than the widest kernel tile (32 columns), so that rows hold
        // whole tiles and a remainder, not only a remainder.
        prop_oneof![3 => 0..=12usize, 1 => 13..=40usize],
        prop_oneof![
            5 => Just(InputChannels::Matching),
            1 => (0..=7usize).prop_map(InputChannels::Exactly),
        ],
        prop_oneof![
            Just(Layout::Standard),
            Just(Layout::ChannelsLast),
            Just(Layout::EveryOtherElement),
            Just(Layout::ReversedRows),
            Just(Layout::BroadcastBatch),
        ],
    );
    let calls = (
        prop_oneof![
            4 => Just(ShapeFault::None),
            1 => Just(ShapeFault::ExtraImage),
            1 => Just(ShapeFault::ExtraChannel),
            1 => Just(ShapeFault::OtherWidth),
        ],
        prop_oneof![
            Just(OutputLayout::Standard),
            Just(OutputLayout::ChannelsLast),
            Just(OutputLayout::EveryOtherColumn),
        ],
        prop_oneof![
            4 => Just(GradFault::None),
            1 => Just(GradFault::ExtraImage),
            1 => Just(GradFault::ExtraChannel),
            2 => Just(GradFault::OtherSize),
        ],
        // Mostly sizes in range (from 0 to `stride - 1` on each axis), else one below or
        // beyond it.
        prop_oneof![
            2 => Just((0, 0)),
            1 => (0..=1isize, 0..=1isize),
            1 => (-1..=2isize, -1..=2isize),
        ],
        0..Isa::ALL.len(),
        any::<u64>(),
    );
    (layer, input, calls).prop_map(
        |(
            (
                geometry,
                transposed,
                in_channels,
                out_channels,
                groups,
                bias,
                weight_fault,
                bias_fault,
            ),
            (batch, height, width, input_channels, input_layout),
            (output_fault, output_layout, grad_fault, size_offset, isa, seed),
        )| Case {
            geometry,
            transposed,
            in_channels,
            out_channels,
            groups,
            bias,
            weight_fault,
            bias_fault,
            batch,
            height,
            width,
            input_channels,
            input_layout,
            output_fault,
            output_layout,
            grad_fault,
            size_offset,
            isa,
            seed,
        },
    )
}

/// Separate value streams from one case seed.
const WEIGHT_STREAM: u64 = 1;
const BIAS_STREAM: u64 = 2;
const INPUT_STREAM: u64 = 3;
const GRAD_STREAM: u64 = 4;

// ---------------------------------------------------------------------------------------
// The two directions behind one interface, so that one body checks both layers: the calls
// are the generic `Layer<G, D>`'s, the rules and the reference each direction's own.

/// What differs between the two directions: PyTorch's rules and the reference. Written out
/// here, not taken from the library's own `Direction` rules, so that the oracle stays
/// independent of the code it checks. `NAME`, `OPERATION` and `weight_shape` share their
/// names with items of the library's rules, so calls spell out `<D as DirectionRules>::`.
trait DirectionRules: Direction {
    const NAME: &'static str;
    const OPERATION: Operation;

    /// PyTorch's weight shape for these channel counts (`groups = 0` taken as 1).
    fn weight_shape(
        in_channels: usize,
        out_channels: usize,
        groups: usize,
        kernel: (usize, usize),
    ) -> [usize; 4];
    /// `(in_channels, out_channels)` of a layer with a weight of `shape` and `groups`.
    fn channels_of(weight: [usize; 4], groups: usize) -> (usize, usize);
    /// PyTorch's output size for an input of `input`, if there is one.
    fn output_size(spec: &GeometrySpec, input: (usize, usize)) -> Option<(usize, usize)>;
    /// The smallest input with an output.
    fn min_input(spec: &GeometrySpec) -> (usize, usize);
    /// Whether `backward` takes an output gradient of spatial size `grad` for an input of
    /// `input`, whose default output size is `default`.
    fn accepts_grad_size(
        spec: &GeometrySpec,
        input: (usize, usize),
        default: (usize, usize),
        grad: (usize, usize),
    ) -> bool;
    /// The spatial size of a [`GradFault::OtherSize`] output gradient.
    fn other_grad_size(
        spec: &GeometrySpec,
        case: &Case,
        input: (usize, usize),
        default: (usize, usize),
    ) -> (usize, usize);

    fn reference(
        spec: &GeometrySpec,
        x: &ArrayView4<f32>,
        weight: &Array4<f32>,
        bias: Option<&Array1<f32>>,
        groups: usize,
    ) -> Result<Array4<f32>, ConvError>;
    fn reference_backward(
        spec: &GeometrySpec,
        x: &ArrayView4<f32>,
        weight: &Array4<f32>,
        bias: bool,
        grad_output: &ArrayView4<f32>,
        groups: usize,
    ) -> Result<Gradients, ConvError>;
}

impl DirectionRules for Convolution {
    const NAME: &'static str = "Conv2d";
    const OPERATION: Operation = Operation::Convolution;

    fn weight_shape(
        in_channels: usize,
        out_channels: usize,
        groups: usize,
        (kh, kw): (usize, usize),
    ) -> [usize; 4] {
        [out_channels, in_channels / groups.max(1), kh, kw]
    }

    fn channels_of(
        [out_channels, in_per_group, _, _]: [usize; 4],
        groups: usize,
    ) -> (usize, usize) {
        (in_per_group * groups, out_channels)
    }

    fn output_size(spec: &GeometrySpec, (h, w): (usize, usize)) -> Option<(usize, usize)> {
        let [rows, cols] = axes(spec);
        Some((rows.conv_output(h)?, cols.conv_output(w)?))
    }

    fn min_input(spec: &GeometrySpec) -> (usize, usize) {
        let [rows, cols] = axes(spec);
        (rows.conv_min_input(), cols.conv_min_input())
    }

    fn accepts_grad_size(
        _: &GeometrySpec,
        _: (usize, usize),
        default: (usize, usize),
        grad: (usize, usize),
    ) -> bool {
        grad == default
    }

    fn other_grad_size(
        _: &GeometrySpec,
        _: &Case,
        _: (usize, usize),
        (h, w): (usize, usize),
    ) -> (usize, usize) {
        (h + 1, w)
    }

    fn reference(
        spec: &GeometrySpec,
        x: &ArrayView4<f32>,
        weight: &Array4<f32>,
        bias: Option<&Array1<f32>>,
        groups: usize,
    ) -> Result<Array4<f32>, ConvError> {
        reference::conv2d(x, weight, bias, spec, groups)
    }

    fn reference_backward(
        spec: &GeometrySpec,
        x: &ArrayView4<f32>,
        weight: &Array4<f32>,
        bias: bool,
        grad_output: &ArrayView4<f32>,
        groups: usize,
    ) -> Result<Gradients, ConvError> {
        reference::conv2d_backward(x, weight, bias, grad_output, spec, groups)
    }
}

impl DirectionRules for Transposed {
    const NAME: &'static str = "ConvTranspose2d";
    const OPERATION: Operation = Operation::TransposedConvolution;

    fn weight_shape(
        in_channels: usize,
        out_channels: usize,
        groups: usize,
        (kh, kw): (usize, usize),
    ) -> [usize; 4] {
        [in_channels, out_channels / groups.max(1), kh, kw]
    }

    fn channels_of(
        [in_channels, out_per_group, _, _]: [usize; 4],
        groups: usize,
    ) -> (usize, usize) {
        (in_channels, out_per_group * groups)
    }

    fn output_size(spec: &GeometrySpec, (h, w): (usize, usize)) -> Option<(usize, usize)> {
        let [rows, cols] = axes(spec);
        Some((rows.transposed_output(h)?, cols.transposed_output(w)?))
    }

    fn min_input(spec: &GeometrySpec) -> (usize, usize) {
        let [rows, cols] = axes(spec);
        (rows.transposed_min_input(), cols.transposed_min_input())
    }

    fn accepts_grad_size(
        spec: &GeometrySpec,
        input: (usize, usize),
        default: (usize, usize),
        grad: (usize, usize),
    ) -> bool {
        // The output of `forward`, or of `forward_with_output_size` with any size it takes.
        grad == default
            || output_size_range(spec, input).is_some_and(|(min, max)| within(grad, min, max))
    }

    fn other_grad_size(
        spec: &GeometrySpec,
        case: &Case,
        input: (usize, usize),
        _: (usize, usize),
    ) -> (usize, usize) {
        requested_size(spec, case, input)
    }

    fn reference(
        spec: &GeometrySpec,
        x: &ArrayView4<f32>,
        weight: &Array4<f32>,
        bias: Option<&Array1<f32>>,
        groups: usize,
    ) -> Result<Array4<f32>, ConvError> {
        reference::conv_transpose2d(x, weight, bias, spec, groups, None)
    }

    fn reference_backward(
        spec: &GeometrySpec,
        x: &ArrayView4<f32>,
        weight: &Array4<f32>,
        bias: bool,
        grad_output: &ArrayView4<f32>,
        groups: usize,
    ) -> Result<Gradients, ConvError> {
        reference::conv_transpose2d_backward(x, weight, bias, grad_output, spec, groups)
    }
}

/// A layer's channel counts and parameter shapes.
#[derive(Debug, PartialEq)]
struct Summary {
    in_channels: usize,
    out_channels: usize,
    groups: usize,
    weight: [usize; 4],
    bias: Option<usize>,
}

impl Summary {
    /// What `layer`'s accessors report.
    fn of<G: Geometry, D: Direction>(layer: &Layer<G, D>) -> Self {
        Summary {
            in_channels: layer.in_channels(),
            out_channels: layer.out_channels(),
            groups: layer.groups(),
            weight: shape_of(layer.weight()),
            bias: layer.bias().map(Array1::len),
        }
    }
}

// ---------------------------------------------------------------------------------------
// The checks.

/// What [`check_layer`] leaves for [`check_output_size`].
struct Checked<L> {
    layer: L,
    weight: Array4<f32>,
    bias: Option<Array1<f32>>,
    input: Strided,
    /// The reference's output for `input`, or its refusal.
    expected: Result<Array4<f32>, ConvError>,
}

/// Checks every call both layers offer; returns the layer when `from_weights` built one.
fn check_layer<G: Geometry, D: DirectionRules + Accepts<G>>(
    geometry: G,
    case: &Case,
) -> Result<Option<Checked<Layer<G, D>>>, TestCaseError> {
    let spec = G::SPEC;
    let isa = case.isa();
    let name = format!("{} on {spec} ({isa})", <D as DirectionRules>::NAME);
    check_builder::<G, D>(geometry, case, &name)?;

    // The parameters, shared by the layer and the reference.
    let weight_shape = case.weight_fault.apply(<D as DirectionRules>::weight_shape(
        case.in_channels,
        case.out_channels,
        case.groups,
        spec.kernel_size,
    ));
    let (in_channels, out_channels) = D::channels_of(weight_shape, case.groups);
    let weight = random_array(weight_shape, case.seed ^ WEIGHT_STREAM);
    let bias = case
        .bias
        .then(|| random_array(case.bias_fault.apply(out_channels), case.seed ^ BIAS_STREAM));

    let channels = match case.input_channels {
        InputChannels::Matching => in_channels,
        InputChannels::Exactly(channels) => channels,
    };
    let input_shape = [case.batch, channels, case.height, case.width];
    let input = Strided::new(input_shape, case.input_layout, case.seed ^ INPUT_STREAM);
    let x = input.view();
    let expected = D::reference(&spec, &x, &weight, bias.as_ref(), case.groups);

    let rule = construction_rule::<D>(
        &spec,
        weight_shape,
        bias.as_ref().map(Array1::len),
        case.groups,
    );
    let built = Layer::<G, D>::from_weights(geometry, weight.clone(), bias.clone(), case.groups)
        .and_then(|layer| layer.with_isa(isa));
    let layer = match built {
        Ok(layer) => {
            prop_assert!(
                rule.is_none(),
                "{name}: from_weights built a layer; PyTorch's rules refuse it with {} error",
                rule.as_ref().map_or("no", kind_name)
            );
            layer
        }
        Err(error) => {
            prop_assert!(
                rule.as_ref().is_some_and(|rule| same_kind(rule, &error)),
                "{name}: from_weights refused with {error:?}; PyTorch's rules call for {} error",
                rule.as_ref().map_or("no", kind_name)
            );
            // The reference checks the same parameters first.
            prop_assert_eq!(
                expected.as_ref().err(),
                Some(&error),
                "{}: from_weights and the reference refuse differently",
                name
            );
            return Ok(None);
        }
    };
    prop_assert_eq!(
        Summary::of(&layer),
        Summary {
            in_channels,
            out_channels,
            groups: case.groups,
            weight: weight_shape,
            bias: bias.as_ref().map(Array1::len),
        },
        "{}: from_weights",
        name
    );

    // output_shape, against PyTorch's rules and the reference.
    let shape_rule = output_rule::<D>(&spec, input_shape, in_channels, out_channels);
    prop_assert_eq!(
        &expected.as_ref().map(shape_of),
        &shape_rule.as_ref().map(|&shape| shape),
        "{}: the reference disagrees with PyTorch's shape rules",
        name
    );
    prop_assert_eq!(
        layer.output_shape(input_shape),
        shape_rule.clone(),
        "{}: output_shape",
        name
    );

    // forward.
    let scale = expected.is_ok().then(|| {
        D::reference(
            &spec,
            &absolute(&x).view(),
            &absolute(&weight),
            bias.as_ref().map(absolute).as_ref(),
            case.groups,
        )
        .expect("the reference accepts what it accepted with signs")
    });
    check_forward(
        &format!("{name}: forward"),
        layer.forward(&x),
        &expected,
        scale.as_ref(),
    )?;

    // forward_into, into an array of the right shape or a wrong one, in several layouts.
    let nominal = shape_rule
        .clone()
        .unwrap_or([case.batch, out_channels, case.height, case.width]);
    let out_shape = case.output_fault.apply(nominal);
    let mut buffer = OutputBuffer::new(out_shape, case.output_layout);
    let result = layer.forward_into(&x, &mut buffer.view_mut());
    match (&expected, result) {
        (Err(error), result) => {
            prop_assert_eq!(result, Err(error.clone()), "{}: forward_into", name);
        }
        (Ok(y), result) if shape_of(y) != out_shape => prop_assert_eq!(
            result,
            Err(ConvError::OutputShape {
                expected: shape_of(y).to_vec(),
                got: out_shape.to_vec(),
            }),
            "{}: forward_into",
            name
        ),
        (Ok(y), Ok(())) => {
            let scale = scale.as_ref().expect("computed for every accepted input");
            check_close(&format!("{name}: forward_into"), &buffer.view(), y, scale)?;
            prop_assert!(
                buffer.gaps_untouched(),
                "{name}: forward_into wrote outside its view"
            );
        }
        (Ok(_), Err(error)) => {
            return Err(TestCaseError::fail(format!(
                "{name}: forward_into refused an output of the right shape with {error:?}"
            )));
        }
    }

    // backward, with an output gradient of the right shape or a wrong one.
    let input_size = (case.height, case.width);
    let default_size = (nominal[2], nominal[3]);
    let grad_shape = case.grad_fault.apply(
        nominal,
        D::other_grad_size(&spec, case, input_size, default_size),
    );
    let grad = Strided::new(grad_shape, case.input_layout, case.seed ^ GRAD_STREAM);
    let grad_output = grad.view();
    let has_bias = bias.is_some();
    let expected_grads =
        D::reference_backward(&spec, &x, &weight, has_bias, &grad_output, case.groups);
    let grad_accepted = shape_rule.is_ok()
        && grad_shape[..2] == nominal[..2]
        && D::accepts_grad_size(
            &spec,
            input_size,
            default_size,
            (grad_shape[2], grad_shape[3]),
        );
    prop_assert_eq!(
        expected_grads.is_ok(),
        grad_accepted,
        "{}: the reference's backward for a gradient of shape {:?} disagrees with PyTorch's rules: {:?}",
        name,
        grad_shape,
        expected_grads.as_ref().err()
    );
    match (layer.backward(&x, &grad_output), &expected_grads) {
        (Err(error), Err(expected)) => {
            prop_assert_eq!(&error, expected, "{}: backward", name);
        }
        (Ok(grads), Ok(expected)) => {
            let scale = D::reference_backward(
                &spec,
                &absolute(&x).view(),
                &absolute(&weight),
                has_bias,
                &absolute(&grad_output).view(),
                case.groups,
            )
            .expect("the reference accepts what it accepted with signs");
            check_gradients(&name, &grads, expected, &scale)?;
        }
        (Ok(_), Err(expected)) => {
            return Err(TestCaseError::fail(format!(
                "{name}: backward accepted a gradient of shape {grad_shape:?} that the reference \
                 refuses with {expected:?}"
            )));
        }
        (Err(error), Ok(_)) => {
            return Err(TestCaseError::fail(format!(
                "{name}: backward refused a gradient of shape {grad_shape:?} with {error:?}"
            )));
        }
    }

    Ok(Some(Checked {
        layer,
        weight,
        bias,
        input,
        expected,
    }))
}

/// `builder(..).build()` succeeds exactly when PyTorch's channel rules do, and refuses with
/// the error they name.
fn check_builder<G: Geometry, D: DirectionRules + Accepts<G>>(
    geometry: G,
    case: &Case,
    name: &str,
) -> Result<(), TestCaseError> {
    let (in_channels, out_channels, groups) = (case.in_channels, case.out_channels, case.groups);
    let built = Layer::<G, D>::builder(geometry, in_channels, out_channels)
        .groups(groups)
        .bias(case.bias)
        .seed(case.seed)
        .build()
        .map(|layer| Summary::of(&layer));
    let expected = match channel_rule(in_channels, out_channels, groups) {
        Some(error) => Err(error),
        None => Ok(Summary {
            in_channels,
            out_channels,
            groups,
            weight: <D as DirectionRules>::weight_shape(
                in_channels,
                out_channels,
                groups,
                G::SPEC.kernel_size,
            ),
            bias: case.bias.then_some(out_channels),
        }),
    };
    prop_assert_eq!(built, expected, "{}: builder", name);
    Ok(())
}

/// `forward_with_output_size` gives the reference's output for every size in PyTorch's
/// range, and refuses every other size with that range.
fn check_output_size<G: Geometry>(
    checked: &Checked<ConvTranspose2d<G>>,
    case: &Case,
) -> Result<(), TestCaseError> {
    let spec = G::SPEC;
    let name = format!(
        "ConvTranspose2d on {spec} ({}): forward_with_output_size",
        checked.layer.isa()
    );
    let x = checked.input.view();
    let (_, _, h, w) = x.dim();
    let requested = requested_size(&spec, case, (h, w));
    let groups = checked.layer.groups();
    let reference = |x: &ArrayView4<f32>, weight: &Array4<f32>, bias: Option<&Array1<f32>>| {
        reference::conv_transpose2d(x, weight, bias, &spec, groups, Some(requested))
    };
    let (expected, scale) = match &checked.expected {
        Err(error) => (Err(error.clone()), None),
        Ok(_) => {
            let (min, max) = output_size_range(&spec, (h, w))
                .expect("an input with an output has a range of output sizes");
            if within(requested, min, max) {
                let scale = reference(
                    &absolute(&x).view(),
                    &absolute(&checked.weight),
                    checked.bias.as_ref().map(absolute).as_ref(),
                )
                .expect("the reference accepts what it accepted with signs");
                (
                    reference(&x, &checked.weight, checked.bias.as_ref()),
                    Some(scale),
                )
            } else {
                let error = ConvError::OutputSize {
                    requested,
                    min,
                    max,
                };
                (Err(error), None)
            }
        }
    };
    check_forward(
        &name,
        checked.layer.forward_with_output_size(&x, requested),
        &expected,
        scale.as_ref(),
    )
}

/// A forward outcome against the reference's: the same error, or values within tolerance.
fn check_forward(
    name: &str,
    actual: Result<Array4<f32>, ConvError>,
    expected: &Result<Array4<f32>, ConvError>,
    scale: Option<&Array4<f32>>,
) -> Result<(), TestCaseError> {
    match (actual, expected) {
        (Err(error), Err(expected)) => {
            prop_assert_eq!(&error, expected, "{}", name);
        }
        (Ok(actual), Ok(expected)) => {
            let scale = scale.expect("computed for every accepted input");
            check_close(name, &actual, expected, scale)?;
        }
        (Ok(actual), Err(expected)) => {
            return Err(TestCaseError::fail(format!(
                "{name}: returned an output of shape {:?} where the reference refuses with \
                 {expected:?}",
                actual.shape()
            )));
        }
        (Err(error), Ok(_)) => {
            return Err(TestCaseError::fail(format!(
                "{name}: refused with {error:?} an input the reference accepts"
            )));
        }
    }
    Ok(())
}

fn check_gradients(
    name: &str,
    actual: &Gradients,
    expected: &Gradients,
    scale: &Gradients,
) -> Result<(), TestCaseError> {
    check_close(
        &format!("{name}: backward, input gradient"),
        &actual.input,
        &expected.input,
        &scale.input,
    )?;
    check_close(
        &format!("{name}: backward, weight gradient"),
        &actual.weight,
        &expected.weight,
        &scale.weight,
    )?;
    match (&actual.bias, &expected.bias, &scale.bias) {
        (None, None, _) => {}
        (Some(actual), Some(expected), Some(scale)) => check_close(
            &format!("{name}: backward, bias gradient"),
            actual,
            expected,
            scale,
        )?,
        (actual, expected, _) => {
            return Err(TestCaseError::fail(format!(
                "{name}: backward gave bias gradient {actual:?}, the reference {expected:?}"
            )));
        }
    }
    Ok(())
}

/// `actual` has `expected`'s shape, and each value is within tolerance of the reference's,
/// scaled by `scale`, the sum of the absolute products behind that value.
fn check_close<S, D>(
    name: &str,
    actual: &ArrayBase<S, D>,
    expected: &ArrayBase<impl Data<Elem = f32>, D>,
    scale: &ArrayBase<impl Data<Elem = f32>, D>,
) -> Result<(), TestCaseError>
where
    S: Data<Elem = f32>,
    D: Dimension,
{
    prop_assert_eq!(actual.shape(), expected.shape(), "{}: shape", name);
    for ((index, &got), (&want, &scale)) in
        actual.indexed_iter().zip(expected.iter().zip(scale.iter()))
    {
        let tolerance = RELATIVE_TOLERANCE * scale + ABSOLUTE_TOLERANCE;
        // Written so that NaN (an unwritten `forward_into` element) fails.
        prop_assert!(
            (got - want).abs() <= tolerance,
            "{name}: {got} at {index:?}, the reference gives {want} (tolerance {tolerance:e})"
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// PyTorch's rules, written out independently of the library's own shape arithmetic.

/// One spatial axis of a geometry.
#[derive(Clone, Copy)]
struct Axis {
    kernel: usize,
    stride: usize,
    dilation: usize,
    /// Zeros on both sides together.
    padding: usize,
    output_padding: usize,
}

fn axes(spec: &GeometrySpec) -> [Axis; 2] {
    let (kh, kw) = spec.kernel_size;
    let (dh, dw) = spec.dilation;
    let (ph, pw) = match spec.padding {
        Padding::Explicit(h, w) => (2 * h, 2 * w),
        // `same` and `causal` pad the receptive field less one, however they split it.
        Padding::Same | Padding::Causal => (dh * (kh - 1), dw * (kw - 1)),
    };
    [
        Axis {
            kernel: kh,
            stride: spec.stride.0,
            dilation: dh,
            padding: ph,
            output_padding: spec.output_padding.0,
        },
        Axis {
            kernel: kw,
            stride: spec.stride.1,
            dilation: dw,
            padding: pw,
            output_padding: spec.output_padding.1,
        },
    ]
}

impl Axis {
    fn field(self) -> usize {
        self.dilation * (self.kernel - 1) + 1
    }

    /// `(input + padding - field) / stride + 1`, when the padded input holds the field.
    fn conv_output(self, input: usize) -> Option<usize> {
        let padded = input + self.padding;
        (input > 0 && padded >= self.field()).then(|| (padded - self.field()) / self.stride + 1)
    }

    fn conv_min_input(self) -> usize {
        self.field().saturating_sub(self.padding).max(1)
    }

    /// `(input - 1) * stride - padding + field + output_padding`, when positive.
    fn transposed_output(self, input: usize) -> Option<usize> {
        self.transposed_full(input, self.output_padding)
            .and_then(|full| full.checked_sub(self.padding))
            .filter(|&size| size > 0)
    }

    fn transposed_full(self, input: usize, output_padding: usize) -> Option<usize> {
        (input > 0).then(|| (input - 1) * self.stride + self.field() + output_padding)
    }

    fn transposed_min_input(self) -> usize {
        (1..)
            .find(|&input| self.transposed_output(input).is_some())
            .expect("large enough inputs have an output")
    }

    /// PyTorch's `output_size` range: the size without output padding (at least 1) to
    /// `stride - 1` more.
    fn output_size_range(self, input: usize) -> Option<(usize, usize)> {
        let largest = self
            .transposed_full(input, self.stride - 1)?
            .checked_sub(self.padding)
            .filter(|&size| size > 0)?;
        let smallest = (largest + 1).saturating_sub(self.stride).max(1);
        Some((smallest, largest))
    }
}

fn output_size_range(
    spec: &GeometrySpec,
    (h, w): (usize, usize),
) -> Option<((usize, usize), (usize, usize))> {
    let [rows, cols] = axes(spec);
    let (min_h, max_h) = rows.output_size_range(h)?;
    let (min_w, max_w) = cols.output_size_range(w)?;
    Some(((min_h, min_w), (max_h, max_w)))
}

fn within((h, w): (usize, usize), min: (usize, usize), max: (usize, usize)) -> bool {
    (min.0..=max.0).contains(&h) && (min.1..=max.1).contains(&w)
}

/// The size the case asks of `forward_with_output_size`: its offset from the smallest size
/// in range (from the input's size, when there is no range).
fn requested_size(spec: &GeometrySpec, case: &Case, input: (usize, usize)) -> (usize, usize) {
    let base = output_size_range(spec, input).map_or(input, |(min, _)| min);
    (
        base.0.saturating_add_signed(case.size_offset.0),
        base.1.saturating_add_signed(case.size_offset.1),
    )
}

/// PyTorch's rule on channel counts and groups, as the builder applies it.
fn channel_rule(in_channels: usize, out_channels: usize, groups: usize) -> Option<ConvError> {
    if in_channels == 0 || out_channels == 0 {
        Some(ConvError::ZeroChannels {
            in_channels,
            out_channels,
        })
    } else if groups == 0
        || !in_channels.is_multiple_of(groups)
        || !out_channels.is_multiple_of(groups)
    {
        Some(ConvError::Groups {
            groups,
            in_channels,
            out_channels,
        })
    } else {
        None
    }
}

/// Why `from_weights` must refuse these parameters, if it must. Only the kind of error is
/// compared: the channel counts a `groups = 0` error reports are not defined.
fn construction_rule<D: DirectionRules>(
    spec: &GeometrySpec,
    weight: [usize; 4],
    bias: Option<usize>,
    groups: usize,
) -> Option<ConvError> {
    let [channels, per_group, kh, kw] = weight;
    let (in_channels, out_channels) = D::channels_of(weight, groups);
    if channels == 0 || per_group == 0 {
        // A weight without channels on one axis, whatever `groups` is.
        Some(ConvError::ZeroChannels {
            in_channels,
            out_channels,
        })
    } else if groups == 0 || !channels.is_multiple_of(groups) {
        // The weight has channels on both axes, so `groups` is what is wrong (PyTorch:
        // "non-positive groups is not supported"), even though a per-group count times zero
        // groups is zero channels.
        Some(ConvError::Groups {
            groups,
            in_channels,
            out_channels,
        })
    } else if (kh, kw) != spec.kernel_size {
        Some(ConvError::KernelSize {
            expected: spec.kernel_size,
            got: weight,
        })
    } else if let Some(len) = bias
        && len != out_channels
    {
        Some(ConvError::BiasShape {
            expected: out_channels,
            got: len,
        })
    } else {
        None
    }
}

/// The output shape for an input of `input`, or the exact error refusing it.
fn output_rule<D: DirectionRules>(
    spec: &GeometrySpec,
    [batch, channels, h, w]: [usize; 4],
    in_channels: usize,
    out_channels: usize,
) -> Result<[usize; 4], ConvError> {
    if channels != in_channels {
        return Err(ConvError::InputChannels {
            expected: in_channels,
            got: channels,
        });
    }
    match D::output_size(spec, (h, w)) {
        Some((out_h, out_w)) => Ok([batch, out_channels, out_h, out_w]),
        None => Err(ConvError::InputTooSmall {
            operation: <D as DirectionRules>::OPERATION,
            min: D::min_input(spec),
            got: (h, w),
        }),
    }
}

fn same_kind(a: &ConvError, b: &ConvError) -> bool {
    discriminant(a) == discriminant(b)
}

/// The variant's name, for messages.
fn kind_name(error: &ConvError) -> &'static str {
    match error {
        ConvError::ZeroChannels { .. } => "a ZeroChannels",
        ConvError::Groups { .. } => "a Groups",
        ConvError::KernelSize { .. } => "a KernelSize",
        ConvError::BiasShape { .. } => "a BiasShape",
        _ => "another",
    }
}

// ---------------------------------------------------------------------------------------
// Arguments in the shapes and layouts the case asks for.

impl WeightFault {
    fn apply(self, [a, b, kh, kw]: [usize; 4]) -> [usize; 4] {
        match self {
            WeightFault::None => [a, b, kh, kw],
            WeightFault::TallerKernel => [a, b, kh + 1, kw],
            WeightFault::NarrowerKernel => [a, b, kh, kw - 1],
        }
    }
}

impl BiasFault {
    fn apply(self, len: usize) -> usize {
        match self {
            BiasFault::None => len,
            BiasFault::Longer => len + 1,
            BiasFault::Shorter => len.saturating_sub(1),
        }
    }
}

impl ShapeFault {
    fn apply(self, [n, c, h, w]: [usize; 4]) -> [usize; 4] {
        match self {
            ShapeFault::None => [n, c, h, w],
            ShapeFault::ExtraImage => [n + 1, c, h, w],
            ShapeFault::ExtraChannel => [n, c + 1, h, w],
            ShapeFault::OtherWidth if w == 0 => [n, c, h, 1],
            ShapeFault::OtherWidth => [n, c, h, w - 1],
        }
    }
}

impl GradFault {
    fn apply(self, [n, c, h, w]: [usize; 4], other_size: (usize, usize)) -> [usize; 4] {
        match self {
            GradFault::None => [n, c, h, w],
            GradFault::ExtraImage => [n + 1, c, h, w],
            GradFault::ExtraChannel => [n, c + 1, h, w],
            GradFault::OtherSize => [n, c, other_size.0, other_size.1],
        }
    }
}

/// Seeded values behind a view of logical shape NCHW in one of the [`Layout`]s.
struct Strided {
    storage: Array4<f32>,
    shape: [usize; 4],
    layout: Layout,
}

impl Strided {
    fn new(shape: [usize; 4], layout: Layout, seed: u64) -> Self {
        let [n, c, h, w] = shape;
        let storage_shape = match layout {
            Layout::Standard | Layout::ReversedRows => [n, c, h, w],
            Layout::ChannelsLast => [n, h, w, c],
            Layout::EveryOtherElement => [n, c, 2 * h, 2 * w],
            Layout::BroadcastBatch => [1, c, h, w],
        };
        Strided {
            storage: random_array(storage_shape, seed),
            shape,
            layout,
        }
    }

    fn view(&self) -> ArrayView4<'_, f32> {
        let storage = self.storage.view();
        match self.layout {
            Layout::Standard => storage,
            Layout::ChannelsLast => storage.permuted_axes([0, 3, 1, 2]),
            Layout::EveryOtherElement => storage.slice_move(s![.., .., ..;2, ..;2]),
            Layout::ReversedRows => storage.slice_move(s![.., .., ..;-1, ..]),
            Layout::BroadcastBatch => self
                .storage
                .broadcast(self.shape)
                .expect("a batch of one broadcasts to any batch"),
        }
    }
}

/// The array given to `forward_into`, filled with NaN so that an element left unwritten
/// fails the comparison.
struct OutputBuffer {
    storage: Array4<f32>,
    layout: OutputLayout,
}

impl OutputBuffer {
    fn new([n, c, h, w]: [usize; 4], layout: OutputLayout) -> Self {
        let storage_shape = match layout {
            OutputLayout::Standard => [n, c, h, w],
            OutputLayout::ChannelsLast => [n, h, w, c],
            OutputLayout::EveryOtherColumn => [n, c, h, 2 * w],
        };
        OutputBuffer {
            storage: Array4::from_elem(storage_shape, f32::NAN),
            layout,
        }
    }

    fn view_mut(&mut self) -> ArrayViewMut4<'_, f32> {
        let storage = self.storage.view_mut();
        match self.layout {
            OutputLayout::Standard => storage,
            OutputLayout::ChannelsLast => storage.permuted_axes([0, 3, 1, 2]),
            OutputLayout::EveryOtherColumn => storage.slice_move(s![.., .., .., ..;2]),
        }
    }

    fn view(&self) -> ArrayView4<'_, f32> {
        let storage = self.storage.view();
        match self.layout {
            OutputLayout::Standard => storage,
            OutputLayout::ChannelsLast => storage.permuted_axes([0, 3, 1, 2]),
            OutputLayout::EveryOtherColumn => storage.slice_move(s![.., .., .., ..;2]),
        }
    }

    /// The storage outside the view still holds NaN.
    fn gaps_untouched(&self) -> bool {
        match self.layout {
            OutputLayout::Standard | OutputLayout::ChannelsLast => true,
            OutputLayout::EveryOtherColumn => self
                .storage
                .slice(s![.., .., .., 1..;2])
                .iter()
                .all(|value| value.is_nan()),
        }
    }
}

/// `array` with every value made positive: the reference run on absolute values sums the
/// absolute products, the scale of each value's rounding error.
fn absolute<S: Data<Elem = f32>, D: Dimension>(array: &ArrayBase<S, D>) -> Array<f32, D> {
    array.mapv(f32::abs)
}

fn shape_of<S: Data<Elem = f32>>(array: &ArrayBase<S, Ix4>) -> [usize; 4] {
    array.dim().into()
}
