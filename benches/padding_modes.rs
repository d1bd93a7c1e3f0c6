//! Padding modes against zero padding: the same 3x3 dilated layer padded with zeros (in the
//! kernels), and with reflect, replicate and circular borders (laid out in a copy of the
//! input, then convolved without padding). The rule: borders must not slow the
//! interior. Forward and backward, on the seed's layer (3 -> 16 channels, latency-bound)
//! and on a 64-channel context layer.

use conv_runtime::ndarray::Array4;
use conv_runtime::prelude::*;
use convgen::random_array;
use criterion::{
    BenchmarkGroup, Criterion, criterion_group, criterion_main, measurement::WallTime,
};

conv! { struct Zeros; k = 3, dilation = 2, padding = 2 }
conv! { struct Reflect; k = 3, dilation = 2, padding = 2, padding_mode = reflect }
conv! { struct Replicate; k = 3, dilation = 2, padding = 2, padding_mode = replicate }
conv! { struct Circular; k = 3, dilation = 2, padding = 2, padding_mode = circular }

/// Forward and backward of a layer of `geometry` on `x`, under the mode's name.
fn bench_mode<G: Geometry>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    geometry: G,
    x: &Array4<f32>,
    out_channels: usize,
) {
    let layer = Conv2d::builder(geometry, x.dim().1, out_channels)
        .seed(1)
        .build()
        .unwrap();
    let grad_output = random_array(layer.output_shape(x.dim().into()).unwrap(), 2);
    group.bench_function(format!("{name}/forward"), |b| {
        b.iter(|| layer.forward(x).unwrap())
    });
    group.bench_function(format!("{name}/backward"), |b| {
        b.iter(|| layer.backward(x, &grad_output).unwrap())
    });
}

fn padding_modes(c: &mut Criterion) {
    for (label, in_channels, out_channels, size) in
        [("seed-dilated", 3, 16, 64), ("context-64ch", 64, 64, 64)]
    {
        let x = random_array((1, in_channels, size, size), 1);
        let mut group = c.benchmark_group(format!("padding-modes/{label}"));
        bench_mode(&mut group, "zeros", Zeros, &x, out_channels);
        bench_mode(&mut group, "reflect", Reflect, &x, out_channels);
        bench_mode(&mut group, "replicate", Replicate, &x, out_channels);
        bench_mode(&mut group, "circular", Circular, &x, out_channels);
        group.finish();
    }
}

criterion_group!(benches, padding_modes);
criterion_main!(benches);
