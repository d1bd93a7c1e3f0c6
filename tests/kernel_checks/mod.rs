//! What the generated-kernel tests share (`geometry_grid.rs`, `generated_kernels.rs`): a
//! layer of a geometry against the naive reference on every instruction set, at one thread
//! and three, on standard and strided inputs, and the adjoint identity. Two test crates, so
//! that the two halves of the kernels' instantiations compile side by side.

// Each test crate that includes this module uses only part of it.
#![allow(dead_code)]

pub use conv_runtime::ndarray::{Array1, Array4, ArrayView4, Zip, s};
pub use conv_runtime::prelude::*;
pub use conv_runtime::{Isa, reference};
pub use convgen::{assert_close, random_array};
pub use proptest::prelude::*;

/// Output elements are sums of up to a few hundred products of values in [-1, 1); the
/// kernels and the reference (which sums in f64) may round differently.
pub const TOLERANCE: f32 = 2e-5;

/// The layer sizes one case draws.
#[derive(Clone, Debug)]
pub struct Case {
    pub batch: usize,
    pub groups: usize,
    pub in_per_group: usize,
    pub out_per_group: usize,
    /// Added to the smallest legal input size.
    pub extra: (usize, usize),
    pub bias: bool,
    pub seed: u64,
}

pub fn cases() -> impl Strategy<Value = Case> {
    (
        1usize..=2,
        1usize..=3,
        1usize..=5,
        1usize..=6,
        0usize..=9,
        0usize..=75,
        any::<bool>(),
        any::<u64>(),
    )
        .prop_map(
            |(batch, groups, in_per_group, out_per_group, extra_h, extra_w, bias, seed)| Case {
                batch,
                groups,
                in_per_group,
                out_per_group,
                // Odd sizes mostly; the smallest legal input comes up often.
                extra: (extra_h, extra_w),
                bias,
                seed,
            },
        )
}

pub fn weights(
    shape: (usize, usize, usize, usize),
    bias: usize,
    case: &Case,
) -> (Array4<f32>, Option<Array1<f32>>) {
    let weight = random_array(shape, case.seed);
    let bias = case.bias.then(|| random_array(bias, case.seed ^ 1));
    (weight, bias)
}

pub fn inner_product(a: &ArrayView4<f32>, b: &ArrayView4<f32>) -> f64 {
    let mut sum = 0.0;
    Zip::from(a)
        .and(b)
        .for_each(|&a, &b| sum += f64::from(a) * f64::from(b));
    sum
}

pub fn check_geometry<G: ZeroPadded>(
    geometry: G,
    case: &Case,
    isa: Isa,
) -> Result<(), TestCaseError> {
    let spec = G::SPEC;
    let (kh, kw) = spec.kernel_size;
    let in_channels = case.groups * case.in_per_group;
    let out_channels = case.groups * case.out_per_group;

    // The convolution.
    let min = spec.min_input_size();
    let (h, w) = (min.0 + case.extra.0, min.1 + case.extra.1);
    let x = random_array((case.batch, in_channels, h, w), case.seed ^ 2);
    let (weight, bias) = weights(
        (out_channels, case.in_per_group, kh, kw),
        out_channels,
        case,
    );
    let conv = Conv2d::from_weights(geometry, weight.clone(), bias.clone(), case.groups)
        .and_then(|layer| layer.with_isa(isa))
        .unwrap();
    let y = conv.forward(&x).unwrap();
    let expected = reference::conv2d(&x, &weight, bias.as_ref(), &spec, case.groups).unwrap();
    assert_close(&y, &expected, TOLERANCE, &format!("{spec} conv, {case:?}"));

    // The transposed convolution, at every output size it can produce.
    let min = spec.transposed_min_input_size();
    let (th, tw) = (min.0 + case.extra.0, min.1 + case.extra.1);
    let x = random_array((case.batch, in_channels, th, tw), case.seed ^ 3);
    let (weight, bias) = weights(
        (in_channels, case.out_per_group, kh, kw),
        out_channels,
        case,
    );
    let up = ConvTranspose2d::from_weights(geometry, weight.clone(), bias.clone(), case.groups)
        .and_then(|layer| layer.with_isa(isa))
        .unwrap();
    let z = up.forward(&x).unwrap();
    let expected =
        reference::conv_transpose2d(&x, &weight, bias.as_ref(), &spec, case.groups, None).unwrap();
    assert_close(
        &z,
        &expected,
        TOLERANCE,
        &format!("{spec} transposed, {case:?}"),
    );
    let (min, max) = spec.transposed_output_range((th, tw)).unwrap();
    for out_h in min.0..=max.0 {
        for out_w in min.1..=max.1 {
            let z = up.forward_with_output_size(&x, (out_h, out_w)).unwrap();
            let expected = reference::conv_transpose2d(
                &x,
                &weight,
                bias.as_ref(),
                &spec,
                case.groups,
                Some((out_h, out_w)),
            )
            .unwrap();
            assert_close(
                &z,
                &expected,
                TOLERANCE,
                &format!("{spec} transposed to {out_h}x{out_w}, {case:?}"),
            );
        }
    }

    // The adjoint identity: the transposed convolution with the convolution's weights is its
    // adjoint, given the output size that maps back to the input's.
    let weight = random_array((out_channels, case.in_per_group, kh, kw), case.seed ^ 4);
    let conv = Conv2d::from_weights(geometry, weight.clone(), None, case.groups).unwrap();
    let adjoint = ConvTranspose2d::from_weights(geometry, weight, None, case.groups).unwrap();
    let x = random_array((case.batch, in_channels, h, w), case.seed ^ 5);
    let cx = conv.forward(&x).unwrap();
    let y = random_array(cx.dim(), case.seed ^ 6);
    let ty = adjoint.forward_with_output_size(&y, (h, w)).unwrap();
    let (left, right) = (
        inner_product(&cx.view(), &y.view()),
        inner_product(&x.view(), &ty.view()),
    );
    let scale = (x.len() as f64).max(1.0).sqrt() * (kh * kw * case.in_per_group) as f64;
    prop_assert!(
        (left - right).abs() <= 1e-5 * scale,
        "{spec}: <conv x, y> = {left} but <x, conv_transpose y> = {right}, {case:?}"
    );
    Ok(())
}

/// A layer's weights: the weight, the bias and the groups.
pub type Weights<'a> = (&'a Array4<f32>, &'a Option<Array1<f32>>, usize);

/// `run(isa, x)`, a layer built on every instruction set, at one thread and at three: every
/// output is `expected`.
pub fn matches_everywhere(
    run: impl Fn(Isa, &ArrayView4<f32>) -> Array4<f32> + Sync,
    x: &ArrayView4<f32>,
    expected: &Array4<f32>,
    what: &str,
) {
    for isa in Isa::available() {
        for threads in [1, 3] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let y = pool.install(|| run(isa, x));
            assert_close(
                &y,
                expected,
                TOLERANCE,
                &format!("{what}, {isa}, {threads} threads"),
            );
        }
    }
}

/// The convolution of `geometry` with `weights` on an instruction set, as
/// [`matches_everywhere`] runs it.
pub fn conv2d<G: Geometry>(
    geometry: G,
    (weight, bias, groups): Weights<'_>,
) -> impl Fn(Isa, &ArrayView4<f32>) -> Array4<f32> + Sync {
    move |isa, x| {
        Conv2d::from_weights(geometry, weight.clone(), bias.clone(), groups)
            .and_then(|layer| layer.with_isa(isa))
            .and_then(|layer| layer.forward(x))
            .unwrap()
    }
}

/// The transposed convolution of `geometry` with `weights` on an instruction set, as
/// [`matches_everywhere`] runs it.
pub fn conv_transpose2d<G: ZeroPadded>(
    geometry: G,
    (weight, bias, groups): Weights<'_>,
) -> impl Fn(Isa, &ArrayView4<f32>) -> Array4<f32> + Sync {
    move |isa, x| {
        ConvTranspose2d::from_weights(geometry, weight.clone(), bias.clone(), groups)
            .and_then(|layer| layer.with_isa(isa))
            .and_then(|layer| layer.forward(x))
            .unwrap()
    }
}

/// The smallest input a geometry takes, counting what a padding mode needs (reflection needs
/// more input than the padding).
pub fn smallest_input(spec: &GeometrySpec) -> (usize, usize) {
    let (min, reflect) = (spec.min_input_size(), spec.padding_min_input());
    (min.0.max(reflect.0), min.1.max(reflect.1))
}

/// [`matches_everywhere`] on a random input of `batch` images of `in_channels x h x w`
/// drawn from `seed`, against `reference` of it: for even seeds a standard-layout array, for
/// odd ones a strided view of it (rows of `w` inside rows of `w + 3`).
pub fn matches_in_either_layout(
    run: impl Fn(Isa, &ArrayView4<f32>) -> Array4<f32> + Sync,
    reference: impl Fn(&Array4<f32>) -> Array4<f32>,
    (batch, in_channels, h, w): (usize, usize, usize, usize),
    seed: u64,
    what: &str,
) {
    let wide = random_array((batch, in_channels, h, w + 3), seed);
    let view = wide.slice(s![.., .., .., 3..]);
    let x = view.to_owned();
    let expected = reference(&x);
    let input = if seed.is_multiple_of(2) {
        x.view()
    } else {
        view
    };
    let what = format!("{what}, input {h}x{w}");
    matches_everywhere(run, &input, &expected, &what);
}

/// [`matches_in_either_layout`] for the convolution of `geometry` with `weights`.
pub fn conv_matches_in_either_layout<G: Geometry>(
    geometry: G,
    weights: Weights<'_>,
    (batch, h, w): (usize, usize, usize),
    seed: u64,
) {
    let (weight, bias, groups) = weights;
    let spec = G::SPEC;
    let reference =
        |x: &Array4<f32>| reference::conv2d(x, weight, bias.as_ref(), &spec, groups).unwrap();
    let shape = (batch, weight.dim().1 * groups, h, w);
    let what = format!("{spec} conv");
    matches_in_either_layout(conv2d(geometry, weights), reference, shape, seed, &what);
}

/// [`matches_in_either_layout`] for the transposed convolution of `geometry` with `weight`
/// and `bias` (one group) into the largest output its input allows, asked for at run time.
pub fn largest_output_matches<G: ZeroPadded>(
    geometry: G,
    (weight, bias): (&Array4<f32>, &Option<Array1<f32>>),
    shape: (usize, usize, usize, usize),
    seed: u64,
) {
    let spec = G::SPEC;
    let (_, largest) = spec.transposed_output_range((shape.2, shape.3)).unwrap();
    let reference = |x: &Array4<f32>| {
        reference::conv_transpose2d(x, weight, bias.as_ref(), &spec, 1, Some(largest)).unwrap()
    };
    let run = |isa, x: &ArrayView4<f32>| {
        ConvTranspose2d::from_weights(geometry, weight.clone(), bias.clone(), 1)
            .and_then(|layer| layer.with_isa(isa))
            .and_then(|layer| layer.forward_with_output_size(x, largest))
            .unwrap()
    };
    let what = format!("{spec} transposed to {largest:?}");
    matches_in_either_layout(run, reference, shape, seed, &what);
}

/// [`check_geometry`] on every instruction set, for one image of `groups` groups of
/// `in_per_group` input channels, `extra_h` rows above the smallest input, with bias: for each
/// of `out_per_group` output channels per group and each of `extra_w` columns above the
/// smallest width.
pub fn check_sizes<G: ZeroPadded>(
    geometry: G,
    (groups, in_per_group, extra_h): (usize, usize, usize),
    out_per_group: &[usize],
    extra_w: &[usize],
) {
    for &out_per_group in out_per_group {
        for &extra_w in extra_w {
            let case = Case {
                batch: 1,
                groups,
                in_per_group,
                out_per_group,
                extra: (extra_h, extra_w),
                bias: true,
                seed: (out_per_group * 100 + extra_w) as u64,
            };
            for isa in Isa::available() {
                if let Err(error) = check_geometry(geometry, &case, isa) {
                    panic!("{isa}, {case:?}: {error}");
                }
            }
        }
    }
}
