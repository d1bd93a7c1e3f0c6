//! The vector operations a kernel needs, as methods of an instruction set's token.

use std::mem::MaybeUninit;

use super::{Family, Isa, Kernel, KernelFn};

/// The most lanes of any set's vectors (AVX-512's sixteen): the size of
/// [`Simd::select`]'s buffers.
pub(crate) const MAX_SELECT_LANES: usize = 16;

/// An instruction set's token: a value of the type proves that the running CPU supports the
/// set, and the methods are the few vector operations direct convolution needs, on vectors of
/// `LANES` `f32`s. Kernels are written once, generic over `Simd`, and take the token as a
/// value, so that every instruction they execute is backed by that proof.
///
/// # Safety
///
/// An implementation must make values of its type only where the CPU supports every
/// instruction its methods execute: in [`detect`](Self::detect) after run-time detection, or
/// inside a function compiled for the set's features (which runs only where they are).
pub(crate) unsafe trait Simd: Copy + Send + Sync + 'static {
    /// The set, as users name it.
    const ISA: Isa;
    /// Floats per vector.
    const LANES: usize;
    /// A vector of `LANES` floats.
    type Vector: Copy;

    /// The token, if the running CPU supports the set.
    fn detect() -> Option<Self>;

    fn splat(self, value: f32) -> Self::Vector;

    /// `acc + a * b`, fused where the instruction set has FMA.
    fn mul_add(self, a: Self::Vector, b: Self::Vector, acc: Self::Vector) -> Self::Vector;

    /// `a + b`.
    fn add(self, a: Self::Vector, b: Self::Vector) -> Self::Vector;

    /// The `LANES` floats at `source`.
    ///
    /// # Safety
    ///
    /// `source` must be valid for reading `LANES` floats.
    unsafe fn load(self, source: *const f32) -> Self::Vector;

    /// Asks for the cache line holding `at` to be brought into L1: a hint, never a read, so
    /// `at` may point anywhere (even outside any allocation). Nothing where the set has no
    /// such instruction.
    #[inline(always)]
    fn prefetch(self, at: *const f32) {
        let _ = at;
    }

    /// Stores the vector into the first `LANES` floats of `target`.
    fn store(self, target: &mut [f32], vector: Self::Vector);

    /// Stores the vector into the first `LANES` slots of `target`, which may be
    /// uninitialised: how the row kernels write a layer's fresh output.
    fn store_uninit(self, target: &mut [MaybeUninit<f32>], vector: Self::Vector);

    /// `a` and `b` interleaved lane by lane, `[a0, b0, a1, b1, ...]`, as two vectors.
    fn interleave(self, a: Self::Vector, b: Self::Vector) -> (Self::Vector, Self::Vector);

    /// The even and the odd lanes of `a` followed by `b`: `[a0, a2, ..., b0, b2, ...]` and
    /// `[a1, a3, ..., b1, b3, ...]`, the inverse of [`interleave`](Self::interleave).
    fn deinterleave(self, a: Self::Vector, b: Self::Vector) -> (Self::Vector, Self::Vector);

    /// One vector of values picked from `row`, four vectors of consecutive floats: lane `i`
    /// is float `index[i]` of them (each index below `4 * LANES`) where bit `i` of `live` is
    /// set, else zero. Through memory, float by float, unless the set has a vector way
    /// (AVX-512's two-source permutes: the dilated lattice's layout in vectors).
    #[inline(always)]
    fn select(self, row: &[Self::Vector; 4], index: &[u32], live: u32) -> Self::Vector {
        let lanes = Self::LANES;
        let mut floats = [0.0f32; 4 * MAX_SELECT_LANES];
        for (v, &vector) in row.iter().enumerate() {
            self.store(&mut floats[v * lanes..], vector);
        }
        let mut picked = [0.0f32; MAX_SELECT_LANES];
        for (i, (slot, &index)) in picked.iter_mut().zip(&index[..lanes]).enumerate() {
            if live >> i & 1 == 1 {
                *slot = floats[..4 * lanes][index as usize];
            }
        }
        // SAFETY: `picked` holds `MAX_SELECT_LANES >= LANES` floats.
        unsafe { self.load(picked.as_ptr()) }
    }

    /// Kernel `K` compiled for this set: a function compiled for the set's features, with
    /// `K`'s body, and every operation above in it, inlined into it. Calling it is sound only
    /// where the set is available, which the token `self` proves.
    fn compile<F: Family, K: Kernel<F>>(self) -> KernelFn<F>;
}

#[cfg(test)]
mod tests {
    use crate::isa::{Compiled, Family, Isa, Kernel, Simd};

    /// Two vectors' worth of floats in, the set's two results out.
    struct Lanes;

    impl Family for Lanes {
        type Job<'a> = [[f32; 32]; 2];
    }

    /// `deinterleave` (if `SPLIT`) or `interleave` of the first two vectors of `job[0]`,
    /// into `job[1]`.
    struct Pair<const SPLIT: bool>;

    impl<const SPLIT: bool> Kernel<Lanes> for Pair<SPLIT> {
        #[inline(always)]
        fn run<S: Simd>(simd: S, job: &mut [[f32; 32]; 2]) {
            // SAFETY: `job[0]` holds 32 floats, two vectors of the widest set.
            let (a, b) = unsafe {
                let from = job[0].as_ptr();
                (simd.load(from), simd.load(from.add(S::LANES)))
            };
            let (first, second) = if SPLIT {
                simd.deinterleave(a, b)
            } else {
                simd.interleave(a, b)
            };
            simd.store(&mut job[1], first);
            simd.store(&mut job[1][S::LANES..], second);
        }
    }

    /// On every set this CPU has: `deinterleave` puts the even lanes of two vectors in the
    /// first result and the odd ones in the second, and `interleave` puts them back.
    #[test]
    fn deinterleave_splits_what_interleave_merges() {
        for isa in Isa::available() {
            let lanes = match isa {
                Isa::Avx512 => 16,
                Isa::Avx2 | Isa::Portable => 8,
                Isa::Neon => 4,
            };
            let values: [f32; 32] = std::array::from_fn(|i| i as f32);
            let mut split = [values, [0.0; 32]];
            Compiled::<Lanes>::for_isa::<Pair<true>>(isa).run(&mut split);
            let expected: Vec<f32> = (0..2 * lanes)
                .map(|i| if i < lanes { 2 * i } else { 2 * (i - lanes) + 1 } as f32)
                .collect();
            assert_eq!(split[1][..2 * lanes], expected[..], "{isa} deinterleave");
            let mut merged = [split[1], [0.0; 32]];
            Compiled::<Lanes>::for_isa::<Pair<false>>(isa).run(&mut merged);
            assert_eq!(
                merged[1][..2 * lanes],
                values[..2 * lanes],
                "{isa} interleave"
            );
        }
    }

    /// Four vectors of a row, an index and a live mask per lane in; the selection out.
    struct Selection;

    /// `(row, index, live, out)`.
    type SelectionJob = ([f32; 64], [u32; 16], u32, [f32; 16]);

    impl Family for Selection {
        type Job<'a> = SelectionJob;
    }

    impl Kernel<Selection> for Selection {
        #[inline(always)]
        fn run<S: Simd>(simd: S, job: &mut SelectionJob) {
            // SAFETY: `job.0` holds 64 floats, four vectors of the widest set.
            let row =
                std::array::from_fn(|v| unsafe { simd.load(job.0.as_ptr().add(v * S::LANES)) });
            let picked = simd.select(&row, &job.1, job.2);
            simd.store(&mut job.3, picked);
        }
    }

    /// On every set this CPU has: `select` picks each live lane's float from anywhere in the
    /// four vectors (both ends of each, every vector), and zero for the others.
    #[test]
    fn select_picks_each_live_lane_from_the_four_vectors() {
        for isa in Isa::available() {
            let lanes = isa.lanes();
            let row: [f32; 64] = std::array::from_fn(|i| i as f32 + 0.5);
            for pattern in 0..5u32 {
                let index: [u32; 16] = std::array::from_fn(|i| {
                    let i = i as u32;
                    (i * 7 + pattern * 13 + i / 3 * (lanes as u32 - 1)) % (4 * lanes as u32)
                });
                let live =
                    [u32::MAX, 0, 0b1010_0110_0101_1001, 1, 1 << (lanes - 1)][pattern as usize];
                let mut job = (row, index, live, [f32::NAN; 16]);
                Compiled::<Selection>::for_isa::<Selection>(isa).run(&mut job);
                let expected: Vec<f32> = (0..lanes)
                    .map(|i| {
                        if live >> i & 1 == 1 {
                            row[index[i] as usize]
                        } else {
                            0.0
                        }
                    })
                    .collect();
                assert_eq!(job.3[..lanes], expected[..], "{isa} pattern {pattern}");
            }
        }
    }
}
