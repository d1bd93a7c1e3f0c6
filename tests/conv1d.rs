//! The 1-D layers beyond PyTorch parity (which `tests/parity_1d.rs` checks): the
//! `conv1d!` geometry's constants, the receptive field of a WaveNet stack against the
//! gradient, layouts, the adjoint identity, errors in lengths, and training.

use conv_runtime::ndarray::{Array1, Array3, Axis, Ix3, s};
use conv_runtime::optim::{Adam, Optimizer};
use conv_runtime::prelude::*;
use conv_runtime::{Isa, Operation, Padding, PaddingMode};
use convgen::{assert_close, random_array};

conv1d! { struct Causal1; k = 2, dilation = 1, padding = causal }
conv1d! { struct Causal2; k = 2, dilation = 2, padding = causal }
conv1d! { struct Causal4; k = 2, dilation = 4, padding = causal }
conv1d! { struct Causal8; k = 2, dilation = 8, padding = causal }
conv1d! { struct Causal16; k = 2, dilation = 16, padding = causal }
conv1d! { struct Causal32; k = 2, dilation = 32, padding = causal }
conv1d! { struct Causal64; k = 2, dilation = 64, padding = causal }
conv1d! { struct Causal128; k = 2, dilation = 128, padding = causal }
conv1d! { struct Causal256; k = 2, dilation = 256, padding = causal }
conv1d! { struct Causal512; k = 2, dilation = 512, padding = causal }

/// The receptive field of WaveNet's stack of ten causal layers, k = 2, dilations 1 to 512,
/// as a compile-time constant.
const WAVENET_FIELD: usize = GeometrySpec::stack_receptive_field(&[
    Causal1::SPEC,
    Causal2::SPEC,
    Causal4::SPEC,
    Causal8::SPEC,
    Causal16::SPEC,
    Causal32::SPEC,
    Causal64::SPEC,
    Causal128::SPEC,
    Causal256::SPEC,
    Causal512::SPEC,
])
.1;

#[test]
fn conv1d_geometries_have_lengths_for_constants() {
    conv1d! { struct Strided; k = 5, stride = 2, padding = 2, dilation = 3 }
    assert_eq!(Strided::KERNEL_SIZE, 5);
    assert_eq!(Strided::STRIDE, 2);
    assert_eq!((Strided::PADDING, Strided::PADDING_AFTER), (2, 2));
    assert_eq!(Strided::DILATION, 3);
    assert_eq!(Strided::RECEPTIVE_FIELD, 13);
    // PyTorch: floor((L + 2p - d(k - 1) - 1) / s) + 1.
    assert_eq!(Strided::output_size(20), Some(6));
    assert_eq!(Strided::output_size(8), None);
    assert_eq!(Strided::transposed_output_size(6), Some(19));
    // The 2-D geometry it runs as: one row of taps.
    assert_eq!(Strided::SPEC.kernel_size, (1, 5));
    assert_eq!(Strided::SPEC.stride, (1, 2));
    assert_eq!(Strided::SPEC.padding, Padding::Explicit(0, 2));
    assert_eq!(
        format!("{Strided:?}"),
        "conv1d!(k = 5, stride = 2, padding = 2, dilation = 3)"
    );

    assert_eq!((Causal8::PADDING, Causal8::PADDING_AFTER), (8, 0));
    assert_eq!(Causal8::output_size(100), Some(100));
    assert_eq!(
        format!("{Causal8:?}"),
        "conv1d!(k = 2, padding = causal, dilation = 8)"
    );
    let same = conv1d!(k = 4, padding = same, padding_mode = reflect);
    assert_eq!(same.spec().padding_mode, PaddingMode::Reflect);
    assert_eq!(same.spec().pad_before(), (0, 1));
    assert_eq!(same.spec().pad_after(), (0, 2));
    let layer = Conv1d::new(Causal8, 3, 4);
    assert_eq!(
        format!("{layer:?}"),
        format!(
            "Conv1d {{ geometry: conv1d!(k = 2, padding = causal, dilation = 8), \
             in_channels: 3, out_channels: 4, groups: 1, bias: true, isa: {:?} }}",
            layer.isa()
        )
    );
}

/// One layer's forward pass, whatever its geometry type.
type Forward = Box<dyn Fn(&Array3<f32>) -> Array3<f32>>;
/// One layer's input gradient for its input and output gradient.
type InputGradient = Box<dyn Fn(&Array3<f32>, &Array3<f32>) -> Array3<f32>>;

/// A WaveNet stack: ten causal layers (k = 2, dilations 1, 2, ..., 512), a few channels.
struct Stack {
    layers: Vec<Forward>,
    backward: Vec<InputGradient>,
}

macro_rules! stack {
    ($channels:expr; $($geometry:ident),*) => {{
        let mut stack = Stack { layers: Vec::new(), backward: Vec::new() };
        let mut seed = 0;
        $(
            seed += 1;
            let layer = Conv1d::builder($geometry, $channels, $channels).seed(seed).build().unwrap();
            let copy = layer.clone();
            stack.layers.push(Box::new(move |x| layer.forward(x).unwrap()));
            stack
                .backward
                .push(Box::new(move |x, g| copy.backward(x, g).unwrap().input));
        )*
        stack
    }};
}

impl Stack {
    fn wavenet(channels: usize) -> Stack {
        stack!(channels; Causal1, Causal2, Causal4, Causal8, Causal16, Causal32, Causal64,
            Causal128, Causal256, Causal512)
    }

    /// The output and every layer's input.
    fn forward(&self, x: &Array3<f32>) -> (Array3<f32>, Vec<Array3<f32>>) {
        let mut inputs = Vec::new();
        let mut h = x.clone();
        for layer in &self.layers {
            let next = layer(&h);
            inputs.push(h);
            h = next;
        }
        (h, inputs)
    }

    /// The gradient of `sum(grad_output * output)` with respect to the input.
    fn input_gradient(&self, inputs: &[Array3<f32>], grad_output: Array3<f32>) -> Array3<f32> {
        let mut g = grad_output;
        for (backward, x) in self.backward.iter().zip(inputs).rev() {
            g = backward(x, &g);
        }
        g
    }
}

#[test]
fn the_wavenet_field_is_a_constant_the_gradient_confirms() {
    assert_eq!(WAVENET_FIELD, 1024);
    let (channels, length, t) = (2, 1500, 1300);
    let stack = Stack::wavenet(channels);
    let x = random_array((1, channels, length), 1);
    let (y, inputs) = stack.forward(&x);
    assert_eq!(y.dim(), (1, channels, length));

    // The gradient of output position t reaches exactly the 1024 inputs t - 1023 ..= t.
    let mut grad_output = Array3::zeros(y.dim());
    grad_output[[0, 0, t]] = 1.0;
    let grad = stack.input_gradient(&inputs, grad_output);
    let reached: Vec<usize> = (0..length)
        .filter(|&i| grad.slice(s![0, .., i]).iter().any(|&g| g != 0.0))
        .collect();
    assert_eq!(reached.first(), Some(&(t + 1 - WAVENET_FIELD)));
    assert_eq!(reached.last(), Some(&t));
    assert_eq!(
        reached.len(),
        WAVENET_FIELD,
        "the field is dense: no gridding holes"
    );

    // A change outside the field moves nothing at t; one at its far edge does.
    let changed_at = |i: usize| {
        let mut x2 = x.clone();
        x2[[0, 1, i]] += 10.0;
        let (y2, _) = stack.forward(&x2);
        y2[[0, 0, t]] != y[[0, 0, t]]
    };
    assert!(!changed_at(t - WAVENET_FIELD));
    assert!(
        !changed_at(t + 1),
        "causal: the future does not reach the present"
    );
    assert!(!changed_at(0));
    assert!(changed_at(t + 1 - WAVENET_FIELD));
    assert!(changed_at(t));
}

#[test]
fn any_layout_gives_the_same_numbers() {
    conv1d! { struct Strided; k = 3, stride = 2, padding = 1, dilation = 2 }
    let conv = Conv1d::builder(Strided, 4, 6).seed(3).build().unwrap();
    let up = ConvTranspose1d::builder(Strided, 6, 4)
        .seed(4)
        .build()
        .unwrap();
    let x = random_array((2, 4, 19), 5);
    let y = conv.forward(&x).unwrap();
    assert_eq!(y.dim(), (2, 6, 9));

    // Permuted (length-major) and strided inputs.
    let mut length_major = Array3::<f32>::zeros((19, 2, 4));
    length_major.assign(&x.view().permuted_axes([2, 0, 1]));
    let permuted = length_major.view().permuted_axes([1, 2, 0]);
    assert_eq!(conv.forward(&permuted).unwrap(), y);
    let mut spaced = Array3::<f32>::zeros((2, 4, 38));
    spaced.slice_mut(s![.., .., ..;2]).assign(&x);
    assert_eq!(conv.forward(&spaced.slice(s![.., .., ..;2])).unwrap(), y);

    // forward_into a permuted output.
    let mut out = Array3::<f32>::zeros((9, 2, 6));
    let mut out_view = out.view_mut().permuted_axes([1, 2, 0]);
    conv.forward_into(&x, &mut out_view).unwrap();
    assert_eq!(out_view, y);

    // The gradients too.
    let g = random_array(y.dim(), 6);
    let grads = conv.backward(&x, &g).unwrap();
    let permuted_grads = conv.backward(&permuted, &g.view()).unwrap();
    assert_eq!(grads, permuted_grads);

    // <conv(x), g> = <x, conv_transpose(g)> with the transposed layer holding conv's weight.
    let adjoint = ConvTranspose1d::from_weights(Strided, conv.weight().to_owned(), None, 1)
        .unwrap()
        .forward_with_output_size(&g, 19)
        .unwrap();
    let bias_part: f32 = conv
        .bias()
        .unwrap()
        .iter()
        .zip(g.axis_iter(Axis(1)))
        .map(|(b, plane)| b * plane.sum())
        .sum();
    let lhs = (&y * &g).sum() - bias_part;
    let rhs = (&x * &adjoint).sum();
    assert!(
        (lhs - rhs).abs() <= 1e-4 * lhs.abs().max(1.0),
        "{lhs} vs {rhs}"
    );
    assert_close(
        &grads.input,
        &adjoint,
        1e-5,
        "input gradient is the adjoint",
    );
    assert_eq!(up.forward(&y).unwrap().dim(), (2, 4, 19));
}

#[test]
fn every_instruction_set_agrees() {
    let x = random_array((1, 8, 301), 7);
    let layer = Conv1d::builder(Causal4, 8, 8).seed(8).build().unwrap();
    let expected = layer
        .clone()
        .with_isa(Isa::Portable)
        .unwrap()
        .forward(&x)
        .unwrap();
    for isa in Isa::available() {
        let y = layer.clone().with_isa(isa).unwrap().forward(&x).unwrap();
        assert_close(&y, &expected, 1e-5, &format!("{isa:?}"));
    }
}

#[test]
fn errors_speak_in_lengths() {
    conv1d! { struct K5; k = 5, dilation = 2 }
    let layer = Conv1d::new(K5, 2, 3);
    let error = layer.forward(&Array3::<f32>::zeros((1, 2, 8))).unwrap_err();
    assert_eq!(
        error,
        ConvError::InputTooShort {
            operation: Operation::Convolution,
            min: 9,
            got: 8
        }
    );
    assert_eq!(
        error.to_string(),
        "input of length 8 is too short: this convolution needs at least 9"
    );
    assert_eq!(
        layer.forward(&Array3::<f32>::zeros((1, 3, 9))).unwrap_err(),
        ConvError::InputChannels {
            expected: 2,
            got: 3
        }
    );
    assert_eq!(layer.output_shape([4, 2, 9]), Ok([4, 3, 1]));

    let reflect = Conv1d::new(conv1d!(k = 3, padding = 3, padding_mode = reflect), 1, 1);
    let error = reflect
        .forward(&Array3::<f32>::zeros((1, 1, 3)))
        .unwrap_err();
    assert_eq!(
        error,
        ConvError::PaddingTooLong {
            mode: PaddingMode::Reflect,
            padding: 3,
            min: 4,
            got: 3
        }
    );

    let error = Conv1d::from_weights(K5, Array3::zeros((3, 2, 4)), None, 1).unwrap_err();
    assert_eq!(
        error,
        ConvError::KernelLength {
            expected: 5,
            got: [3, 2, 4]
        }
    );
    assert_eq!(
        error.to_string(),
        "weight has a kernel of 4 taps (shape [3, 2, 4]), but the geometry's kernel has 5"
    );

    let x = Array3::<f32>::zeros((1, 2, 12));
    let mut out = Array3::<f32>::zeros((1, 3, 5));
    assert_eq!(
        layer.forward_into(&x, &mut out).unwrap_err(),
        ConvError::OutputShape {
            expected: vec![1, 3, 4],
            got: vec![1, 3, 5]
        }
    );
    assert_eq!(
        layer
            .backward(&x, &Array3::<f32>::zeros((1, 3, 5)))
            .unwrap_err(),
        ConvError::GradOutputShape {
            expected: vec![1, 3, 4],
            got: vec![1, 3, 5]
        }
    );

    let up = ConvTranspose1d::new(conv1d!(k = 3, stride = 2, padding = 1), 2, 2);
    let x = Array3::<f32>::zeros((1, 2, 8));
    assert_eq!(
        up.forward_with_output_size(&x, 17).unwrap_err(),
        ConvError::OutputLength {
            requested: 17,
            min: 15,
            max: 16
        }
    );
    assert!(matches!(
        Conv1d::builder(K5, 3, 4).groups(2).build(),
        Err(ConvError::Groups { groups: 2, .. })
    ));
}

#[test]
fn an_optimiser_trains_a_1d_layer() {
    let teacher = Conv1d::builder(Causal2, 2, 3).seed(1).build().unwrap();
    let mut student = Conv1d::builder(Causal2, 2, 3).seed(2).build().unwrap();
    let mut adam = Adam::new(0.02);
    let x = random_array((2, 2, 40), 3);
    let target = teacher.forward(&x).unwrap();
    let mut losses = Vec::new();
    for _ in 0..60 {
        let y = student.forward(&x).unwrap();
        let error = &y - &target;
        losses.push(error.mapv(|e| e * e).mean().unwrap());
        let grads: Gradients<Ix3> = student
            .backward(&x, &(error * (2.0 / y.len() as f32)))
            .unwrap();
        adam.step(&mut student, &grads).unwrap();
    }
    assert!(
        losses[59] < 0.05 * losses[0],
        "{} -> {}",
        losses[0],
        losses[59]
    );
    assert_close(
        &student.weight(),
        &teacher.weight(),
        0.1,
        "the student learns the teacher's weight",
    );

    // Gradients of another layer's shape are refused, leaving the layer as it was.
    let before = student.weight().to_owned();
    let wrong = Gradients {
        input: Array3::zeros((1, 1, 1)),
        weight: Array3::zeros((3, 2, 3)),
        bias: Some(Array1::zeros(3)),
    };
    assert!(matches!(
        adam.step(&mut student, &wrong),
        Err(ConvError::GradientShape { .. })
    ));
    assert_eq!(student.weight(), before);
}
