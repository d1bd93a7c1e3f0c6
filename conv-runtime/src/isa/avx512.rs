//! x86_64 AVX-512F.
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

/// AVX-512F: 16 lanes. Made only by [`Simd::detect`] and inside functions compiled for the set.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Avx512(());

// SAFETY: `detect` makes a token only after detecting AVX-512F, and the methods execute only
// AVX-512F instructions.
unsafe impl Simd for Avx512 {
    const ISA: Isa = Isa::Avx512;
    const LANES: usize = 16;
    type Vector = __m512;

    fn detect() -> Option<Self> {
        is_x86_feature_detected!("avx512f").then_some(Avx512(()))
    }

    #[inline(always)]
    fn splat(self, value: f32) -> __m512 {
        // SAFETY: token.
        unsafe { _mm512_set1_ps(value) }
    }

    #[inline(always)]
    fn mul_add(self, a: __m512, b: __m512, acc: __m512) -> __m512 {
        // SAFETY: token.
        unsafe { _mm512_fmadd_ps(a, b, acc) }
    }

    #[inline(always)]
    fn add(self, a: __m512, b: __m512) -> __m512 {
        // SAFETY: token.
        unsafe { _mm512_add_ps(a, b) }
    }

    #[inline(always)]
    fn prefetch(self, at: *const f32) {
        // SAFETY: a prefetch is a hint that never faults and reads nothing into the program,
        // whatever the address; SSE is part of x86-64.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(at.cast()) }
    }

    #[inline(always)]
    unsafe fn load(self, source: *const f32) -> __m512 {
        // SAFETY: token; the caller guarantees 16 readable floats; `loadu` needs no alignment.
        unsafe { _mm512_loadu_ps(source) }
    }

    #[inline(always)]
    fn store(self, target: &mut [f32], vector: __m512) {
        let target = &mut target[..16];
        // SAFETY: token; `target` holds 16 floats; `storeu` needs no alignment.
        unsafe { _mm512_storeu_ps(target.as_mut_ptr(), vector) }
    }

    #[inline(always)]
    fn store_uninit(self, target: &mut [MaybeUninit<f32>], vector: __m512) {
        let target = &mut target[..16];
        // SAFETY: token; `target` holds 16 slots, and `MaybeUninit<f32>` has the layout of
        // `f32`; `storeu` needs no alignment.
        unsafe { _mm512_storeu_ps(target.as_mut_ptr().cast(), vector) }
    }

    #[inline(always)]
    fn interleave(self, a: __m512, b: __m512) -> (__m512, __m512) {
        // SAFETY: token. Index `i` picks lane `i` of `a`, and `16 + i` lane `i` of `b`.
        unsafe {
            let low = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
            let high =
                _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
            (
                _mm512_permutex2var_ps(a, low, b),
                _mm512_permutex2var_ps(a, high, b),
            )
        }
    }

    #[inline(always)]
    fn deinterleave(self, a: __m512, b: __m512) -> (__m512, __m512) {
        // SAFETY: token. Index `i` picks lane `i` of `a`, and `16 + i` lane `i` of `b`.
        unsafe {
            let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
            let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
            (
                _mm512_permutex2var_ps(a, even, b),
                _mm512_permutex2var_ps(a, odd, b),
            )
        }
    }

    #[inline(always)]
    fn select(self, row: &[__m512; 4], index: &[u32], live: u32) -> __m512 {
        let index = &index[..16];
        // SAFETY: token; `index` holds 16 `u32`s, read unaligned. Each permute picks by the
        // index's low five bits from its two vectors (floats 0..32, and 32..64); bit 5 says
        // which of the two picks a lane takes.
        unsafe {
            let index = _mm512_loadu_si512(index.as_ptr().cast());
            let low = _mm512_permutex2var_ps(row[0], index, row[1]);
            let high = _mm512_permutex2var_ps(row[2], index, row[3]);
            let upper = _mm512_test_epi32_mask(index, _mm512_set1_epi32(32));
            _mm512_maskz_mov_ps(live as u16, _mm512_mask_blend_ps(upper, low, high))
        }
    }

    fn compile<F: Family, K: Kernel<F>>(self) -> KernelFn<F> {
        #[target_feature(enable = "avx512f")]
        fn enabled<F: Family, K: Kernel<F>>(job: &mut F::Job<'_>) {
            // A token made here is sound: this function runs only where its features are
            // present (calling it is the caller's unsafe promise).
            K::run(Avx512(()), job);
        }
        enabled::<F, K>
    }
}
