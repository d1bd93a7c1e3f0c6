//! Plain Rust on arrays: the set every CPU has.

use std::mem::MaybeUninit;

use super::{Family, Isa, Kernel, KernelFn, Simd};

/// Plain Rust on arrays, which the compiler vectorises for the baseline of the target (SSE2
/// on x86_64). The fallback where no faster set is available.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Portable;

const LANES: usize = 8;

// SAFETY: the methods execute only baseline instructions, which every CPU of the target has,
// so a token may exist anywhere.
unsafe impl Simd for Portable {
    const ISA: Isa = Isa::Portable;
    const LANES: usize = LANES;
    type Vector = [f32; LANES];

    fn detect() -> Option<Self> {
        Some(Portable)
    }

    #[inline(always)]
    fn splat(self, value: f32) -> Self::Vector {
        [value; LANES]
    }

    #[inline(always)]
    fn mul_add(self, a: Self::Vector, b: Self::Vector, acc: Self::Vector) -> Self::Vector {
        // Not `f32::mul_add`: without hardware FMA that is a slow library call.
        std::array::from_fn(|lane| acc[lane] + a[lane] * b[lane])
    }

    #[inline(always)]
    fn add(self, a: Self::Vector, b: Self::Vector) -> Self::Vector {
        std::array::from_fn(|lane| a[lane] + b[lane])
    }

    #[inline(always)]
    unsafe fn load(self, source: *const f32) -> Self::Vector {
        // SAFETY: the caller guarantees `LANES` readable floats at `source`; `read_unaligned`
        // needs no alignment beyond that.
        unsafe { source.cast::<Self::Vector>().read_unaligned() }
    }

    #[inline(always)]
    fn store(self, target: &mut [f32], vector: Self::Vector) {
        target[..LANES].copy_from_slice(&vector);
    }

    #[inline(always)]
    fn store_uninit(self, target: &mut [MaybeUninit<f32>], vector: Self::Vector) {
        for (slot, value) in target[..LANES].iter_mut().zip(vector) {
            slot.write(value);
        }
    }

    #[inline(always)]
    fn interleave(self, a: Self::Vector, b: Self::Vector) -> (Self::Vector, Self::Vector) {
        let pick = |i: usize| {
            if i.is_multiple_of(2) {
                a[i / 2]
            } else {
                b[i / 2]
            }
        };
        (
            std::array::from_fn(pick),
            std::array::from_fn(|i| pick(i + LANES)),
        )
    }

    #[inline(always)]
    fn deinterleave(self, a: Self::Vector, b: Self::Vector) -> (Self::Vector, Self::Vector) {
        // Lane `i` of the result of `parity` is value `2i + parity` of `a` followed by `b`.
        let lanes = |parity: usize| {
            std::array::from_fn(|i| {
                let at = 2 * i + parity;
                if at < LANES { a[at] } else { b[at - LANES] }
            })
        };
        (lanes(0), lanes(1))
    }

    fn compile<F: Family, K: Kernel<F>>(self) -> KernelFn<F> {
        fn enabled<F: Family, K: Kernel<F>>(job: &mut F::Job<'_>) {
            K::run(Portable, job);
        }
        enabled::<F, K>
    }
}
