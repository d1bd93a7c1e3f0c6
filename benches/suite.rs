//! Every case of `../shared/bench-suite.json` through the public API (output allocated per
//! call, as users call it): the generated kernels at one thread and at all threads, beside
//! the naive reference and an im2col + GEMM baseline on `matrixmultiply` (what candle and burn
//! do). Both baselines are single-threaded by construction, so they are measured once.
//! Throughput is the layer's useful FLOPs (taps in the padding not counted).
//!
//! `cargo bench --bench suite` (add `-- unet-enc` for one case); set `CONVGEN_ISA=avx2` (or
//! `portable`, ...) to measure another instruction set. The suite as a table, with the
//! machine's FMA peak and the best peer of `peer-baseline.md` beside it, is
//! `cargo run --release --example suite`.

use std::time::Duration;

// The suite's cases, shared with the other benchmark and `examples/suite.rs`; this benchmark
// leaves some of it unused.
#[allow(dead_code)]
#[path = "common/suite.rs"]
mod suite;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use rayon::ThreadPool;
use suite::{Case, cases};

fn pool(threads: usize) -> ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("a thread pool")
}

fn generated(group: &mut BenchmarkGroup<'_, WallTime>, case: &Case, pool: &ThreadPool) {
    let name = format!("generated/{}-threads", pool.current_num_threads());
    group.bench_function(name, |b| b.iter(|| pool.install(|| case.forward())));
}

fn suite(c: &mut Criterion) {
    let (one, all) = (pool(1), pool(rayon::current_num_threads()));
    for case in cases() {
        let mut group = c.benchmark_group(format!("{}/{}", case.shape.name, case.isa()));
        group.throughput(Throughput::Elements(case.useful_flops() as u64));
        generated(&mut group, &case, &one);
        if all.current_num_threads() > 1 {
            generated(&mut group, &case, &all);
        }
        // The baselines are 10x to 100x slower: fewer, longer samples.
        group.sample_size(10);
        group.measurement_time(Duration::from_secs(3));
        group.bench_function("im2col-gemm/1-thread", |b| b.iter(|| case.im2col_gemm()));
        group.bench_function("reference/1-thread", |b| b.iter(|| case.reference()));
        group.finish();
    }
}

criterion_group!(benches, suite);
criterion_main!(benches);
