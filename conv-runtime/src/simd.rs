//! The vector operations a kernel needs, one implementation per instruction set.
//!
//! Kernels are written once, generic over [`Simd`], and instantiated per instruction set;
//! `dispatch` picks the instantiation the CPU supports at run time.

/// A vector of `LANES` `f32`s and the few operations direct convolution needs.
pub(crate) trait Simd: Copy + Send + Sync + 'static {
    /// Floats per vector.
    const LANES: usize;
    type Vector: Copy;

    fn splat(value: f32) -> Self::Vector;

    /// `acc + a * b`, fused where the instruction set has FMA.
    fn mul_add(a: Self::Vector, b: Self::Vector, acc: Self::Vector) -> Self::Vector;

    /// `a + b`.
    fn add(a: Self::Vector, b: Self::Vector) -> Self::Vector;

    /// # Safety
    ///
    /// `source` must be valid for reading `LANES` floats.
    unsafe fn load_unchecked(source: *const f32) -> Self::Vector;

    /// Stores the vector into the first `LANES` floats of `target`.
    fn store(target: &mut [f32], vector: Self::Vector);

    /// `a` and `b` interleaved lane by lane, `[a0, b0, a1, b1, ...]`, as two vectors.
    fn interleave(a: Self::Vector, b: Self::Vector) -> (Self::Vector, Self::Vector);
}

/// Plain Rust on arrays, which the compiler vectorises for the baseline of the target
/// (SSE2 on x86_64). The fallback where no faster path is available, and the reference the
/// other paths are tested against.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Portable;

const PORTABLE_LANES: usize = 8;

impl Simd for Portable {
    const LANES: usize = PORTABLE_LANES;
    type Vector = [f32; PORTABLE_LANES];

    #[inline(always)]
    fn splat(value: f32) -> Self::Vector {
        [value; PORTABLE_LANES]
    }

    #[inline(always)]
    fn mul_add(a: Self::Vector, b: Self::Vector, acc: Self::Vector) -> Self::Vector {
        // Not `f32::mul_add`: without hardware FMA that is a slow library call.
        std::array::from_fn(|lane| acc[lane] + a[lane] * b[lane])
    }

    #[inline(always)]
    fn add(a: Self::Vector, b: Self::Vector) -> Self::Vector {
        std::array::from_fn(|lane| a[lane] + b[lane])
    }

    #[inline(always)]
    unsafe fn load_unchecked(source: *const f32) -> Self::Vector {
        // SAFETY: the caller guarantees `LANES` readable floats at `source`; `read_unaligned`
        // needs no alignment beyond that.
        unsafe { source.cast::<Self::Vector>().read_unaligned() }
    }

    #[inline(always)]
    fn store(target: &mut [f32], vector: Self::Vector) {
        target[..PORTABLE_LANES].copy_from_slice(&vector);
    }

    #[inline(always)]
    fn interleave(a: Self::Vector, b: Self::Vector) -> (Self::Vector, Self::Vector) {
        let pick = |i: usize| {
            if i.is_multiple_of(2) {
                a[i / 2]
            } else {
                b[i / 2]
            }
        };
        (
            std::array::from_fn(pick),
            std::array::from_fn(|i| pick(i + PORTABLE_LANES)),
        )
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) use x86::{Avx2, Avx512};

/// x86_64 vectors. Every method is `#[inline(always)]` and only ever runs inlined into a
/// kernel compiled with `#[target_feature]` for its instruction set, which `dispatch` calls
/// only after detecting that set on the running CPU; that is the safety argument for each
/// intrinsic below.
#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::Simd;

    /// AVX2 with FMA: 8 lanes.
    #[derive(Clone, Copy, Debug)]
    pub(crate) struct Avx2;

    impl Simd for Avx2 {
        const LANES: usize = 8;
        type Vector = __m256;

        #[inline(always)]
        fn splat(value: f32) -> __m256 {
            // SAFETY: see the module documentation (AVX2 and FMA are present).
            unsafe { _mm256_set1_ps(value) }
        }

        #[inline(always)]
        fn mul_add(a: __m256, b: __m256, acc: __m256) -> __m256 {
            // SAFETY: see the module documentation.
            unsafe { _mm256_fmadd_ps(a, b, acc) }
        }

        #[inline(always)]
        fn add(a: __m256, b: __m256) -> __m256 {
            // SAFETY: see the module documentation.
            unsafe { _mm256_add_ps(a, b) }
        }

        #[inline(always)]
        unsafe fn load_unchecked(source: *const f32) -> __m256 {
            // SAFETY: the caller guarantees 8 readable floats; `loadu` needs no alignment.
            unsafe { _mm256_loadu_ps(source) }
        }

        #[inline(always)]
        fn store(target: &mut [f32], vector: __m256) {
            let target = &mut target[..8];
            // SAFETY: `target` holds 8 floats; `storeu` needs no alignment.
            unsafe { _mm256_storeu_ps(target.as_mut_ptr(), vector) }
        }

        #[inline(always)]
        fn interleave(a: __m256, b: __m256) -> (__m256, __m256) {
            // SAFETY: see the module documentation. `unpack` interleaves within each 128-bit
            // half ([a0 b0 a1 b1 | a4 b4 a5 b5] and [a2 b2 a3 b3 | a6 b6 a7 b7]); the
            // permutes put the halves in order.
            unsafe {
                let low = _mm256_unpacklo_ps(a, b);
                let high = _mm256_unpackhi_ps(a, b);
                (
                    _mm256_permute2f128_ps::<0x20>(low, high),
                    _mm256_permute2f128_ps::<0x31>(low, high),
                )
            }
        }
    }

    /// AVX-512F: 16 lanes.
    #[derive(Clone, Copy, Debug)]
    pub(crate) struct Avx512;

    impl Simd for Avx512 {
        const LANES: usize = 16;
        type Vector = __m512;

        #[inline(always)]
        fn splat(value: f32) -> __m512 {
            // SAFETY: see the module documentation (AVX-512F is present).
            unsafe { _mm512_set1_ps(value) }
        }

        #[inline(always)]
        fn mul_add(a: __m512, b: __m512, acc: __m512) -> __m512 {
            // SAFETY: see the module documentation.
            unsafe { _mm512_fmadd_ps(a, b, acc) }
        }

        #[inline(always)]
        fn add(a: __m512, b: __m512) -> __m512 {
            // SAFETY: see the module documentation.
            unsafe { _mm512_add_ps(a, b) }
        }

        #[inline(always)]
        unsafe fn load_unchecked(source: *const f32) -> __m512 {
            // SAFETY: the caller guarantees 16 readable floats; `loadu` needs no alignment.
            unsafe { _mm512_loadu_ps(source) }
        }

        #[inline(always)]
        fn store(target: &mut [f32], vector: __m512) {
            let target = &mut target[..16];
            // SAFETY: `target` holds 16 floats; `storeu` needs no alignment.
            unsafe { _mm512_storeu_ps(target.as_mut_ptr(), vector) }
        }

        #[inline(always)]
        fn interleave(a: __m512, b: __m512) -> (__m512, __m512) {
            // SAFETY: see the module documentation. Index `i` picks lane `i` of `a`, and
            // `16 + i` lane `i` of `b`.
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
    }
}

#[cfg(target_arch = "aarch64")]
pub(crate) use arm::Neon;

/// aarch64 vectors; NEON is part of the aarch64 baseline, so these need no detection.
#[cfg(target_arch = "aarch64")]
mod arm {
    use std::arch::aarch64::*;

    use super::Simd;

    /// NEON: 4 lanes.
    #[derive(Clone, Copy, Debug)]
    pub(crate) struct Neon;

    impl Simd for Neon {
        const LANES: usize = 4;
        type Vector = float32x4_t;

        #[inline(always)]
        fn splat(value: f32) -> float32x4_t {
            // SAFETY: NEON is always present on aarch64.
            unsafe { vdupq_n_f32(value) }
        }

        #[inline(always)]
        fn mul_add(a: float32x4_t, b: float32x4_t, acc: float32x4_t) -> float32x4_t {
            // SAFETY: NEON is always present on aarch64.
            unsafe { vfmaq_f32(acc, a, b) }
        }

        #[inline(always)]
        fn add(a: float32x4_t, b: float32x4_t) -> float32x4_t {
            // SAFETY: NEON is always present on aarch64.
            unsafe { vaddq_f32(a, b) }
        }

        #[inline(always)]
        unsafe fn load_unchecked(source: *const f32) -> float32x4_t {
            // SAFETY: the caller guarantees 4 readable floats.
            unsafe { vld1q_f32(source) }
        }

        #[inline(always)]
        fn store(target: &mut [f32], vector: float32x4_t) {
            let target = &mut target[..4];
            // SAFETY: `target` holds 4 floats.
            unsafe { vst1q_f32(target.as_mut_ptr(), vector) }
        }

        #[inline(always)]
        fn interleave(a: float32x4_t, b: float32x4_t) -> (float32x4_t, float32x4_t) {
            // SAFETY: NEON is always present on aarch64.
            unsafe { (vzip1q_f32(a, b), vzip2q_f32(a, b)) }
        }
    }
}
