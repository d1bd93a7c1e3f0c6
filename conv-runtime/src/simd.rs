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

    /// # Safety
    ///
    /// `source` must be valid for reading `LANES` floats.
    unsafe fn load_unchecked(source: *const f32) -> Self::Vector;

    /// Stores the vector into the first `LANES` floats of `target`.
    fn store(target: &mut [f32], vector: Self::Vector);
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
    unsafe fn load_unchecked(source: *const f32) -> Self::Vector {
        // SAFETY: the caller guarantees `LANES` readable floats at `source`; `read_unaligned`
        // needs no alignment beyond that.
        unsafe { source.cast::<Self::Vector>().read_unaligned() }
    }

    #[inline(always)]
    fn store(target: &mut [f32], vector: Self::Vector) {
        target[..PORTABLE_LANES].copy_from_slice(&vector);
    }
}
