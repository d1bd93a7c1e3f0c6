//! The seed's two layers: the generated kernels against the naive reference.

use conv_runtime::prelude::*;
use conv_runtime::reference;
use convgen::random_array;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

conv! { struct Dilated; k = 3, dilation = 2, padding = 2 }
conv! { struct Upsample; k = 2, stride = 2 }

fn seed_layers(c: &mut Criterion) {
    let x = random_array((1, 3, 64, 64), 1);
    let dilated = Conv2d::builder(Dilated, 3, 16).seed(1).build().unwrap();
    let y = dilated.forward(&x).unwrap();
    let up = ConvTranspose2d::builder(Upsample, 16, 3)
        .seed(2)
        .build()
        .unwrap();

    // Multiply-adds that touch real data, two flops each.
    let mut group = c.benchmark_group("seed-dilated");
    group.throughput(Throughput::Elements(2 * useful_taps_conv(&x.dim()) as u64));
    group.bench_function("generated", |b| b.iter(|| dilated.forward(&x).unwrap()));
    group.bench_function("reference", |b| {
        b.iter(|| {
            reference::conv2d(&x, dilated.weight(), dilated.bias(), &Dilated::SPEC, 1).unwrap()
        })
    });
    group.finish();

    let mut group = c.benchmark_group("seed-upconv");
    group.throughput(Throughput::Elements(2 * 16 * 3 * 4 * 64 * 64));
    group.bench_function("generated", |b| b.iter(|| up.forward(&y).unwrap()));
    group.bench_function("reference", |b| {
        b.iter(|| {
            reference::conv_transpose2d(&y, up.weight(), up.bias(), &Upsample::SPEC, 1, None)
                .unwrap()
        })
    });
    group.finish();
}

/// Multiply-adds of the dilated layer that read real input (padding taps excluded).
fn useful_taps_conv(shape: &(usize, usize, usize, usize)) -> usize {
    let (_, channels, h, w) = *shape;
    let axis = |size: usize| -> usize {
        (0..size)
            .map(|o| {
                (0..3)
                    .filter(|t| (o + 2 * t).checked_sub(2).is_some_and(|i| i < size))
                    .count()
            })
            .sum()
    };
    16 * channels * axis(h) * axis(w)
}

criterion_group!(benches, seed_layers);
criterion_main!(benches);
