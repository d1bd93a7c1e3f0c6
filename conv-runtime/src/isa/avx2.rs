//! x86_64 AVX2 with FMA.
//!
//! Every intrinsic below runs in a method that takes the set's token, which only detection
//! (or a function compiled for the set's features) makes: that is the safety argument of
//! each `unsafe` block marked "token" below. The methods are `#[inline(always)]` and run
//! inlined into the function [`Simd::compile`] makes for the set, so each becomes the one
//! instruction it names.
//!
//! Each instruction set has a module of its own because the compiler groups the kernels a
//! program instantiates into code-generation units by the module of the function that hosts
//! them (`compile`'s inner function): one module for both sets put every x86 kernel of every
//! geometry in one unit, which LLVM optimises on one thread while the other cores idle.

use std::arch::x86_64::*;
use std::mem::MaybeUninit;

use super::{Family, Isa, Kernel, KernelFn, Simd};

/// AVX2 with FMA: 8 lanes. Made only by [`Simd::detect`] and inside functions compiled for the set.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Avx2(());

// SAFETY: `detect` makes a token only after detecting AVX2 and FMA, and the methods execute
// only AVX, AVX2 and FMA instructions.
unsafe impl Simd for Avx2 {
    const ISA: Isa = Isa::Avx2;
    const LANES: usize = 8;
    type Vector = __m256;

    fn detect() -> Option<Self> {
        let found = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
        found.then_some(Avx2(()))
    }

    #[inline(always)]
    fn splat(self, value: f32) -> __m256 {
        // SAFETY: token.
        unsafe { _mm256_set1_ps(value) }
    }

    #[inline(always)]
    fn mul_add(self, a: __m256, b: __m256, acc: __m256) -> __m256 {
        // SAFETY: token.
        unsafe { _mm256_fmadd_ps(a, b, acc) }
    }

    #[inline(always)]
    fn add(self, a: __m256, b: __m256) -> __m256 {
        // SAFETY: token.
        unsafe { _mm256_add_ps(a, b) }
    }

    #[inline(always)]
    fn prefetch(self, at: *const f32) {
        // SAFETY: a prefetch is a hint that never faults and reads nothing into the program,
        // whatever the address; SSE is part of x86-64.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(at.cast()) }
    }

    #[inline(always)]
    unsafe fn load(self, source: *const f32) -> __m256 {
        // SAFETY: token; the caller guarantees 8 readable floats; `loadu` needs no alignment.
        unsafe { _mm256_loadu_ps(source) }
    }

    #[inline(always)]
    fn store(self, target: &mut [f32], vector: __m256) {
        let target = &mut target[..8];
        // SAFETY: token; `target` holds 8 floats; `storeu` needs no alignment.
        unsafe { _mm256_storeu_ps(target.as_mut_ptr(), vector) }
    }

    #[inline(always)]
    fn store_uninit(self, target: &mut [MaybeUninit<f32>], vector: __m256) {
        let target = &mut target[..8];
        // SAFETY: token; `target` holds 8 slots, and `MaybeUninit<f32>` has the layout of
        // `f32`; `storeu` needs no alignment.
        unsafe { _mm256_storeu_ps(target.as_mut_ptr().cast(), vector) }
    }

    #[inline(always)]
    fn interleave(self, a: __m256, b: __m256) -> (__m256, __m256) {
        // SAFETY: token. `unpack` interleaves within each 128-bit half
        // ([a0 b0 a1 b1 | a4 b4 a5 b5] and [a2 b2 a3 b3 | a6 b6 a7 b7]); the permutes put
        // the halves in order.
        unsafe {
            let low = _mm256_unpacklo_ps(a, b);
            let high = _mm256_unpackhi_ps(a, b);
            (
                _mm256_permute2f128_ps::<0x20>(low, high),
                _mm256_permute2f128_ps::<0x31>(low, high),
            )
        }
    }

    #[inline(always)]
    fn deinterleave(self, a: __m256, b: __m256) -> (__m256, __m256) {
        // SAFETY: token. `shuffle` picks lanes within each 128-bit half ([a0 a2 b0 b2 |
        // a4 a6 b4 b6], and the odd ones likewise); the 64-bit permute puts the pairs in
        // order: 0, 2, 1, 3.
        unsafe {
            let even = _mm256_shuffle_ps::<0b10_00_10_00>(a, b);
            let odd = _mm256_shuffle_ps::<0b11_01_11_01>(a, b);
            let order = |v: __m256| {
                _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(v)))
            };
            (order(even), order(odd))
        }
    }

    fn compile<F: Family, K: Kernel<F>>(self) -> KernelFn<F> {
        #[target_feature(enable = "avx2,fma")]
        fn enabled<F: Family, K: Kernel<F>>(job: &mut F::Job<'_>) {
            // A token made here is sound: this function runs only where its features are
            // present (calling it is the caller's unsafe promise).
            K::run(Avx2(()), job);
        }
        enabled::<F, K>
    }
}
