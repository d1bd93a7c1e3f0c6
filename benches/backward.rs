//! Training: each suite case's backward pass (input, weight and bias gradients) beside its
//! forward pass, on the same layer and input. The target is backward within 3x forward.
//!
//! `cargo bench --bench backward -- --warm-up-time 1 --measurement-time 2`; set
//! `CONVGEN_ISA=avx2` (or `portable`, ...) to measure another instruction set. The ratio to
//! compare is backward over forward within one run.

// The suite's cases, shared with the other benchmark and `examples/suite.rs`; this benchmark
// leaves some of it unused.
#[allow(dead_code)]
#[path = "common/suite.rs"]
mod suite;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use suite::cases;

fn backward_vs_forward(c: &mut Criterion) {
    for case in cases() {
        let grad_output = case.grad_output();
        let mut group = c.benchmark_group(format!("{}/{}", case.shape.name, case.isa()));
        // The forward pass's useful flops: backward does twice as many.
        group.throughput(Throughput::Elements(case.useful_flops() as u64));
        group.bench_function("forward", |b| b.iter(|| case.forward()));
        group.bench_function("backward", |b| b.iter(|| case.backward(&grad_output)));
        // The input-gradient part of backward alone (the other direction's forward pass);
        // the rest is the weight and bias gradients.
        group.bench_function("input-gradient", |b| {
            b.iter(|| case.input_gradient(&grad_output))
        });
        group.finish();
    }
}

criterion_group!(benches, backward_vs_forward);
criterion_main!(benches);
