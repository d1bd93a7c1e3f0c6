//! Kernels instantiated for one instruction set, behind a pointer that hides which.

use super::{Detected, Isa, Simd};

/// A kind of kernel: the job its calls take. The forward row kernels are one family, each
/// weight-gradient kernel another.
pub(crate) trait Family: 'static {
    /// What one call computes, and where.
    type Job<'a>;
}

/// One kernel of family `F`, written once for every instruction set.
pub(crate) trait Kernel<F: Family>: 'static {
    /// Runs the job with the vector operations of `simd`. Implementations are
    /// `#[inline(always)]`, so that their body is compiled inside the function
    /// [`Simd::compile`] makes for the set.
    fn run<S: Simd>(simd: S, job: &mut F::Job<'_>);
}

/// A kernel of family `F` compiled for an instruction set: safe to call only on a CPU with
/// that set.
pub(crate) type KernelFn<F> = for<'j, 'a> unsafe fn(&'j mut <F as Family>::Job<'a>);

/// Kernel `K` of family `F` compiled for one instruction set, made only with that set's
/// token: holding one proves it can run here.
pub(crate) struct Compiled<F: Family> {
    isa: Isa,
    /// `S::compile::<F, K>()` for the `K` and `S` given to [`Compiled::new`].
    kernel: KernelFn<F>,
}

impl<F: Family> Clone for Compiled<F> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<F: Family> Copy for Compiled<F> {}

impl<F: Family> Compiled<F> {
    /// Kernel `K` compiled for `S`, whose token `simd` proves the CPU supports it.
    pub fn new<K: Kernel<F>, S: Simd>(simd: S) -> Self {
        Compiled {
            isa: S::ISA,
            kernel: simd.compile::<F, K>(),
        }
    }

    /// Kernel `K` compiled for `isa`, or for the portable set where `isa` is not available:
    /// for the kernels whose blocking is the same on every set.
    pub fn for_isa<K: Kernel<F>>(isa: Isa) -> Self {
        match Detected::or_portable(isa) {
            Detected::Portable(simd) => Self::new::<K, _>(simd),
            #[cfg(target_arch = "x86_64")]
            Detected::Avx2(simd) => Self::new::<K, _>(simd),
            #[cfg(target_arch = "x86_64")]
            Detected::Avx512(simd) => Self::new::<K, _>(simd),
            #[cfg(target_arch = "aarch64")]
            Detected::Neon(simd) => Self::new::<K, _>(simd),
        }
    }

    /// The instruction set the kernel was compiled for.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// Runs the kernel on `job`.
    pub fn run(&self, job: &mut F::Job<'_>) {
        // SAFETY: `kernel` is compiled for `S`'s set, and set only by `new`, which took a
        // token of `S`: the CPU supports the set.
        unsafe { (self.kernel)(job) }
    }
}
