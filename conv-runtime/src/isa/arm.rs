//! aarch64 vectors. NEON is part of the aarch64 baseline, so its token needs no detection.

use std::arch::aarch64::*;
use std::mem::MaybeUninit;

use super::{Family, Isa, Kernel, KernelFn, Simd};

/// NEON: 4 lanes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Neon(());

// SAFETY: every aarch64 CPU has NEON, and the methods execute only NEON instructions.
unsafe impl Simd for Neon {
    const ISA: Isa = Isa::Neon;
    const LANES: usize = 4;
    type Vector = float32x4_t;

    fn detect() -> Option<Self> {
        Some(Neon(()))
    }

    #[inline(always)]
    fn splat(self, value: f32) -> float32x4_t {
        // SAFETY: NEON is always present on aarch64.
        unsafe { vdupq_n_f32(value) }
    }

    #[inline(always)]
    fn mul_add(self, a: float32x4_t, b: float32x4_t, acc: float32x4_t) -> float32x4_t {
        // SAFETY: NEON is always present on aarch64.
        unsafe { vfmaq_f32(acc, a, b) }
    }

    #[inline(always)]
    fn add(self, a: float32x4_t, b: float32x4_t) -> float32x4_t {
        // SAFETY: NEON is always present on aarch64.
        unsafe { vaddq_f32(a, b) }
    }

    #[inline(always)]
    unsafe fn load(self, source: *const f32) -> float32x4_t {
        // SAFETY: the caller guarantees 4 readable floats.
        unsafe { vld1q_f32(source) }
    }

    #[inline(always)]
    fn store(self, target: &mut [f32], vector: float32x4_t) {
        let target = &mut target[..4];
        // SAFETY: `target` holds 4 floats.
        unsafe { vst1q_f32(target.as_mut_ptr(), vector) }
    }

    #[inline(always)]
    fn store_uninit(self, target: &mut [MaybeUninit<f32>], vector: float32x4_t) {
        let target = &mut target[..4];
        // SAFETY: `target` holds 4 slots, and `MaybeUninit<f32>` has the layout of `f32`.
        unsafe { vst1q_f32(target.as_mut_ptr().cast(), vector) }
    }

    #[inline(always)]
    fn interleave(self, a: float32x4_t, b: float32x4_t) -> (float32x4_t, float32x4_t) {
        // SAFETY: NEON is always present on aarch64.
        unsafe { (vzip1q_f32(a, b), vzip2q_f32(a, b)) }
    }

    #[inline(always)]
    fn deinterleave(self, a: float32x4_t, b: float32x4_t) -> (float32x4_t, float32x4_t) {
        // SAFETY: NEON is always present on aarch64.
        unsafe { (vuzp1q_f32(a, b), vuzp2q_f32(a, b)) }
    }

    fn compile<F: Family, K: Kernel<F>>(self) -> KernelFn<F> {
        fn enabled<F: Family, K: Kernel<F>>(job: &mut F::Job<'_>) {
            K::run(Neon(()), job);
        }
        enabled::<F, K>
    }
}
