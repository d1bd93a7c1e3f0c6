//! A WaveNet-sized stack of causal dilated 1-D convolutions, as issue 15 sets it: 64
//! residual channels, one sequence of 16000 samples (one second of 16 kHz audio), ten
//! `Conv1d` layers with k = 2, `padding = causal` and dilations 1, 2, 4, ..., 512 (a
//! receptive field of 1024 samples), run one after the other. Forward at one thread and at
//! all threads, backward (input, weight and bias gradients of every layer) at one thread.
//!
//! `tools/peer_wavenet.py` runs this benchmark and times the same stack in PyTorch
//! (`nn.Conv1d` on `F.pad(x, ((k - 1) * d, 0))`) side by side; the README quotes both.

use conv_runtime::ndarray::Array3;
use conv_runtime::prelude::*;
use convgen::random_array;
use criterion::{Criterion, criterion_group, criterion_main};
use rayon::{ThreadPool, ThreadPoolBuilder};

const CHANNELS: usize = 64;
const LENGTH: usize = 16000;

conv1d! { struct D1; k = 2, dilation = 1, padding = causal }
conv1d! { struct D2; k = 2, dilation = 2, padding = causal }
conv1d! { struct D4; k = 2, dilation = 4, padding = causal }
conv1d! { struct D8; k = 2, dilation = 8, padding = causal }
conv1d! { struct D16; k = 2, dilation = 16, padding = causal }
conv1d! { struct D32; k = 2, dilation = 32, padding = causal }
conv1d! { struct D64; k = 2, dilation = 64, padding = causal }
conv1d! { struct D128; k = 2, dilation = 128, padding = causal }
conv1d! { struct D256; k = 2, dilation = 256, padding = causal }
conv1d! { struct D512; k = 2, dilation = 512, padding = causal }

/// The stack's receptive field, known at compile time.
const FIELD: usize = GeometrySpec::stack_receptive_field(&[
    D1::SPEC,
    D2::SPEC,
    D4::SPEC,
    D8::SPEC,
    D16::SPEC,
    D32::SPEC,
    D64::SPEC,
    D128::SPEC,
    D256::SPEC,
    D512::SPEC,
])
.1;
const _: () = assert!(FIELD == 1024);

/// One layer of the stack, whatever its geometry type.
trait StackLayer: Send + Sync {
    fn forward(&self, x: &Array3<f32>) -> Array3<f32>;
    /// The input gradient; the parameter gradients are computed and dropped, as a training
    /// step would hand them to an optimiser.
    fn backward(&self, x: &Array3<f32>, grad_output: &Array3<f32>) -> Array3<f32>;
}

impl<G: Geometry> StackLayer for Conv1d<G> {
    fn forward(&self, x: &Array3<f32>) -> Array3<f32> {
        Conv1d::forward(self, x).unwrap()
    }

    fn backward(&self, x: &Array3<f32>, grad_output: &Array3<f32>) -> Array3<f32> {
        Conv1d::backward(self, x, grad_output).unwrap().input
    }
}

fn layer<G: Geometry1d>(geometry: G, seed: u64) -> Box<dyn StackLayer> {
    let layer = Conv1d::builder(geometry, CHANNELS, CHANNELS)
        .seed(seed)
        .build()
        .unwrap();
    Box::new(layer)
}

fn stack() -> Vec<Box<dyn StackLayer>> {
    vec![
        layer(D1, 1),
        layer(D2, 2),
        layer(D4, 3),
        layer(D8, 4),
        layer(D16, 5),
        layer(D32, 6),
        layer(D64, 7),
        layer(D128, 8),
        layer(D256, 9),
        layer(D512, 10),
    ]
}

/// The output, each layer's input dropped once used (inference).
fn infer(stack: &[Box<dyn StackLayer>], x: &Array3<f32>) -> Array3<f32> {
    let (first, rest) = stack.split_first().expect("a stack");
    rest.iter()
        .fold(first.forward(x), |h, layer| layer.forward(&h))
}

/// The output and the input of every layer (training keeps them for the backward pass).
fn forward(stack: &[Box<dyn StackLayer>], x: &Array3<f32>) -> (Array3<f32>, Vec<Array3<f32>>) {
    let mut inputs = Vec::with_capacity(stack.len());
    let mut h = x.clone();
    for layer in stack {
        let next = layer.forward(&h);
        inputs.push(h);
        h = next;
    }
    (h, inputs)
}

fn backward(
    stack: &[Box<dyn StackLayer>],
    inputs: &[Array3<f32>],
    grad_output: &Array3<f32>,
) -> Array3<f32> {
    let mut g = grad_output.clone();
    for (layer, x) in stack.iter().zip(inputs).rev() {
        g = layer.backward(x, &g);
    }
    g
}

fn pool(threads: usize) -> ThreadPool {
    ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("a thread pool")
}

fn wavenet(c: &mut Criterion) {
    let stack = stack();
    let x = random_array((1, CHANNELS, LENGTH), 11);
    let (y, inputs) = forward(&stack, &x);
    let grad_output = random_array(y.dim(), 12);
    let (one, all) = (pool(1), pool(rayon::current_num_threads()));

    let mut group = c.benchmark_group("wavenet");
    group.sample_size(20);
    group.bench_function("forward/1-thread", |b| {
        b.iter(|| one.install(|| infer(&stack, &x)))
    });
    if all.current_num_threads() > 1 {
        let name = format!("forward/{}-threads", all.current_num_threads());
        group.bench_function(name, |b| b.iter(|| all.install(|| infer(&stack, &x))));
    }
    group.bench_function("backward/1-thread", |b| {
        b.iter(|| one.install(|| backward(&stack, &inputs, &grad_output)))
    });
    group.finish();
}

criterion_group!(benches, wavenet);
criterion_main!(benches);
