//! The vector operations a kernel needs, as methods of an instruction set's token.

use std::mem::MaybeUninit;

use super::{Family, Isa, Kernel, KernelFn};

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

    /// Stores the vector into the first `LANES` floats of `target`.
    fn store(self, target: &mut [f32], vector: Self::Vector);

    /// Stores the vector into the first `LANES` slots of `target`, which may be
    /// uninitialised: how the row kernels write a layer's fresh output.
    fn store_uninit(self, target: &mut [MaybeUninit<f32>], vector: Self::Vector);

    /// `a` and `b` interleaved lane by lane, `[a0, b0, a1, b1, ...]`, as two vectors.
    fn interleave(self, a: Self::Vector, b: Self::Vector) -> (Self::Vector, Self::Vector);

    /// Kernel `K` compiled for this set: a function compiled for the set's features, with
    /// `K`'s body, and every operation above in it, inlined into it. Calling it is sound only
    /// where the set is available, which the token `self` proves.
    fn compile<F: Family, K: Kernel<F>>(self) -> KernelFn<F>;
}
