//! The machine's measured FMA peak, the yardstick of the benchmark tables.

use std::time::Instant;

use conv_runtime::Isa;

/// Single-thread GFLOP/s of independent fused multiply-adds on `isa`'s widest vectors
/// (two flops each): the most any kernel on that instruction set can reach on one core.
pub fn fma_peak_gflops(isa: Isa) -> f64 {
    const ITERATIONS: u64 = 20_000_000;
    let start = Instant::now();
    let flops_per_iteration = match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the instruction set is available (checked by the match guard).
        Isa::Avx512 if isa.is_available() => unsafe { x86::avx512(ITERATIONS) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Isa::Avx2 if isa.is_available() => unsafe { x86::avx2(ITERATIONS) },
        _ => scalar(ITERATIONS),
    };
    ITERATIONS as f64 * flops_per_iteration / start.elapsed().as_secs_f64() / 1e9
}

/// Independent chains, enough to cover the FMA latency on both pipes; returns flops per
/// iteration. `black_box` keeps the results alive.
fn scalar(iterations: u64) -> f64 {
    let mut acc = [0.0f32; 16];
    for _ in 0..iterations {
        for a in &mut acc {
            *a = *a * 1.000_000_1 + 0.999_999;
        }
    }
    std::hint::black_box(acc);
    32.0
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// # Safety
    ///
    /// The CPU must support AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn avx512(iterations: u64) -> f64 {
        let mut acc = [_mm512_setzero_ps(); 16];
        let (a, b) = (_mm512_set1_ps(1.000_000_1), _mm512_set1_ps(0.999_999));
        for _ in 0..iterations {
            for v in &mut acc {
                *v = _mm512_fmadd_ps(*v, a, b);
            }
        }
        std::hint::black_box(acc);
        16.0 * 16.0 * 2.0
    }

    /// # Safety
    ///
    /// The CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn avx2(iterations: u64) -> f64 {
        let mut acc = [_mm256_setzero_ps(); 12];
        let (a, b) = (_mm256_set1_ps(1.000_000_1), _mm256_set1_ps(0.999_999));
        for _ in 0..iterations {
            for v in &mut acc {
                *v = _mm256_fmadd_ps(*v, a, b);
            }
        }
        std::hint::black_box(acc);
        12.0 * 8.0 * 2.0
    }
}
