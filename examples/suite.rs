//! The benchmark suite as a table: milliseconds, GFLOP/s and percent of this machine's
//! measured FMA peak, at one thread and at all threads, beside the fastest peer of
//! `../shared/peer-baseline.md`.
//!
//! Run with nothing else on the machine: `cargo run --release --example suite`
//! (`CONVGEN_ISA=avx2` or `portable` to measure another path; `--quick` for fewer runs;
//! `--fastest` for each case's fastest run instead of its median, for comparing two builds
//! on a busy machine, where other work only ever adds time;
//! `--only NAME` for one case, `--only NAME --repeat N` to run its forward pass N times for a
//! profiler, `--backward` added to run its backward pass instead; `--json` for one JSON
//! object per case and thread count instead of the table, as `tools/peer_suite.py` reads it;
//! `--json --backward` adds the backward pass, all three gradients, as objects with
//! `"pass": "backward"`).

use std::time::{Duration, Instant};

use conv_runtime::Isa;
use convgen::max_difference;

// Shared with the benchmarks; this table leaves the backward parts of the suite unused.
#[path = "../benches/common/peak.rs"]
mod peak;
#[allow(dead_code)]
#[path = "../benches/common/suite.rs"]
mod suite;

use peak::fma_peak_gflops;
use suite::{Case, best_peer_ms, cases};

/// Prints a line, or ends the program quietly where stdout has been closed (`suite | head`),
/// where `println!` would panic.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write;
        if writeln!(std::io::stdout(), $($arg)*).is_err() {
            std::process::exit(0);
        }
    }};
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|arg| arg == "--quick");
    // `--json`: one line `{"name", "pass", "threads", "ms", "gflops", "flops"}` per case and
    // thread count, for the forward pass and, with `--backward`, the backward pass.
    let json = args.iter().any(|arg| arg == "--json");
    let backward = args.iter().any(|arg| arg == "--backward");
    let fastest = args.iter().any(|arg| arg == "--fastest");
    // `--only NAME` measures one case (for profiling).
    let only = args
        .iter()
        .position(|arg| arg == "--only")
        .and_then(|i| args.get(i + 1));
    // `--only NAME --repeat N`: just run that case N times, for a profiler or `perf stat`.
    let repeat = args
        .iter()
        .position(|arg| arg == "--repeat")
        .and_then(|i| args.get(i + 1));
    if let (Some(name), Some(repeat)) = (only, repeat) {
        let case = cases()
            .into_iter()
            .find(|case| case.shape.name == name)
            .expect("a suite case");
        let grad_output = case.grad_output();
        for _ in 0..repeat.parse::<usize>().expect("a number of runs") {
            if backward {
                std::hint::black_box(case.backward(&grad_output));
            } else {
                std::hint::black_box(case.forward());
            }
        }
        return;
    }
    let isa = Isa::default_for_process();
    let peak = fma_peak_gflops(isa);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if !json {
        say!(
            "instruction set {isa}, measured FMA peak {peak:.0} GFLOP/s per core, {threads} threads"
        );
        say!(
            "GFLOP/s count only the taps that touch real data; 'vs peer' is the peer's time over ours"
        );
        say!();
        say!(
            "| case | 1 thread ms | GFLOP/s | % peak | {threads} threads ms | speed-up | best peer (1 thread) | vs peer |"
        );
        say!("|---|---|---|---|---|---|---|---|");
    }
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let all = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    for case in cases() {
        if only.is_some_and(|name| name != case.shape.name) {
            continue;
        }
        check(&case);
        let forward = || {
            std::hint::black_box(case.forward());
        };
        let single = one.install(|| median_time(forward, quick, fastest));
        let multi = all.install(|| median_time(forward, quick, fastest));
        if json {
            let mut passes = vec![("forward", single, multi)];
            if backward {
                let grad_output = case.grad_output();
                let backward = || {
                    std::hint::black_box(case.backward(&grad_output));
                };
                let single = one.install(|| median_time(backward, quick, fastest));
                let multi = all.install(|| median_time(backward, quick, fastest));
                passes.push(("backward", single, multi));
            }
            for (pass, single, multi) in passes {
                for (count, time) in [(1, single), (threads, multi)] {
                    let record = serde_json::json!({
                        "name": case.shape.name,
                        "pass": pass,
                        "threads": count,
                        "ms": ms(time),
                        "gflops": case.useful_flops() / time.as_secs_f64() / 1e9,
                        "flops": case.useful_flops(),
                    });
                    say!("{record}");
                }
            }
            continue;
        }
        let gflops = case.useful_flops() / single.as_secs_f64() / 1e9;
        let (peer, peer_ms) = best_peer_ms(case.shape.name).unwrap_or(("-", f64::NAN));
        say!(
            "| {} | {:.3} | {:.0} | {:.0}% | {:.3} | {:.2}x | {peer} {peer_ms:.3} | {:.2}x |",
            case.shape.name,
            ms(single),
            gflops,
            100.0 * gflops / peak,
            ms(multi),
            single.as_secs_f64() / multi.as_secs_f64(),
            peer_ms / ms(single),
        );
    }
}

/// The table is only worth printing for correct kernels: compare with im2col + GEMM.
fn check(case: &Case) {
    let (difference, at) = max_difference(&case.forward(), &case.im2col_gemm());
    assert!(
        difference < 1e-4,
        "{}: differs from im2col + GEMM by {difference} at {at:?}",
        case.shape.name
    );
}

/// The median time of `call` over enough runs after a first call (the fastest run with
/// `fastest`).
fn median_time(call: impl Fn(), quick: bool, fastest: bool) -> Duration {
    // Enough runs for about a quarter of a second per case, at least 5.
    let start = Instant::now();
    call();
    let once = start.elapsed().max(Duration::from_micros(1));
    let budget = if quick { 0.05 } else { 0.25 };
    let runs = ((budget / once.as_secs_f64()) as usize).clamp(5, 2000);
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            call();
            start.elapsed()
        })
        .collect();
    times.sort();
    if fastest { times[0] } else { times[runs / 2] }
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}
