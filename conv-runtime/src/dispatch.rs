//! Chooses, once per layer, which instruction set and which blocking of the row kernel runs
//! it, and instantiates the kernel for it.
//!
//! The instruction set is detected at run time, once, and never assumed from compile flags:
//! AVX-512F, then AVX2 with FMA, on x86_64; NEON on aarch64; portable Rust elsewhere. Every
//! set the CPU supports can be forced, for the whole process with the environment variable
//! `CONVGEN_ISA` (`portable`, `avx2`, `avx512`, `neon`) or for the layers built inside a
//! closure with [`Isa::force`], so that tests exercise every path whatever the machine.

use std::cell::Cell;
use std::fmt;
use std::sync::OnceLock;

use crate::driver::Plan;
use crate::kernel::{self, RowJob, TapList};
use crate::simd::{Portable, Simd};

/// An instruction set the kernels are compiled for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Isa {
    /// Plain Rust, vectorised by the compiler for the target's baseline (SSE2 on x86_64).
    Portable,
    /// x86_64 AVX2 with FMA, 8 lanes.
    Avx2,
    /// x86_64 AVX-512F, 16 lanes.
    Avx512,
    /// aarch64 NEON, 4 lanes.
    Neon,
}

impl Isa {
    /// Every instruction set, slowest first.
    pub const ALL: [Isa; 4] = [Isa::Portable, Isa::Avx2, Isa::Avx512, Isa::Neon];

    /// The name `CONVGEN_ISA` accepts.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
            Isa::Neon => "neon",
        }
    }

    /// Whether this build has kernels for the set and the running CPU supports it.
    pub fn is_available(self) -> bool {
        match self {
            Isa::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => std::arch::is_x86_feature_detected!("avx512f"),
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => true,
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// The sets available here, slowest first.
    pub fn available() -> Vec<Isa> {
        Isa::ALL
            .into_iter()
            .filter(|isa| isa.is_available())
            .collect()
    }

    /// The set layers use unless told otherwise: `CONVGEN_ISA` if it names an available set,
    /// else the fastest available. Detected once per process.
    pub fn default_for_process() -> Isa {
        static DEFAULT: OnceLock<Isa> = OnceLock::new();
        *DEFAULT.get_or_init(|| {
            let fastest = *Isa::available()
                .last()
                .expect("portable is always available");
            match std::env::var("CONVGEN_ISA") {
                Ok(name) => match Isa::ALL.into_iter().find(|isa| isa.name() == name) {
                    Some(isa) if isa.is_available() => isa,
                    _ => {
                        eprintln!(
                            "conv-runtime: CONVGEN_ISA={name} is not available here; using {}",
                            fastest.name()
                        );
                        fastest
                    }
                },
                Err(_) => fastest,
            }
        })
    }

    /// The set a layer built now, on this thread, uses.
    pub fn current() -> Isa {
        FORCED.get().unwrap_or_else(Isa::default_for_process)
    }

    /// Runs `f` with every layer built inside it, on this thread, using this instruction set.
    /// A layer keeps its set for its lifetime. For tests and benchmarks that compare paths.
    ///
    /// ```
    /// use conv_runtime::prelude::*;
    /// use conv_runtime::Isa;
    ///
    /// for isa in Isa::available() {
    ///     let layer = isa.force(|| Conv2d::new(conv!(k = 3), 2, 4));
    ///     assert_eq!(layer.isa(), isa);
    /// }
    /// ```
    ///
    /// # Panics
    ///
    /// If the set is not [available](Self::is_available).
    pub fn force<R>(self, f: impl FnOnce() -> R) -> R {
        assert!(
            self.is_available(),
            "instruction set {self} is not available on this machine"
        );
        let previous = FORCED.replace(Some(self));
        let result = f();
        FORCED.set(previous);
        result
    }
}

impl fmt::Display for Isa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

thread_local! {
    static FORCED: Cell<Option<Isa>> = const { Cell::new(None) };
}

/// The row kernels for tap list `T` on the current instruction set, blocked for a layer
/// with `out_per_group` output channels per group. Returns the plan and its output-channel
/// block, which the weights must be packed for.
pub(crate) fn plan<T: TapList>(out_per_group: usize) -> (Plan, usize) {
    let isa = Isa::current();
    let wide = out_per_group >= 4;
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 if out_per_group >= 8 => avx512::<T, 8, 2>(),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 if wide => avx512::<T, 4, 4>(),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => avx512::<T, 1, 4>(),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 if wide => avx2::<T, 4, 2>(),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => avx2::<T, 1, 4>(),
        #[cfg(target_arch = "aarch64")]
        Isa::Neon if wide => neon::<T, 4, 4>(),
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => neon::<T, 1, 8>(),
        _ if wide => portable::<T, 4, 1>(),
        _ => portable::<T, 1, 2>(),
    }
}

/// A plan whose two row kernels are `interior` and `border`, which must be the
/// `(CHECK = false, CHECK = true)` instantiations for `isa` with this blocking.
fn make_plan<T: TapList, S: Simd, const OCB: usize, const WV: usize>(
    isa: Isa,
    interior: kernel::RowKernel,
    border: kernel::RowKernel,
) -> (Plan, usize) {
    let plan = Plan {
        spec: T::SPEC,
        phases: T::PHASES,
        input_shift: T::INPUT_SHIFT,
        col_stride: T::COL_STRIDE,
        isa,
        interior,
        border,
        tile: WV * S::LANES,
    };
    (plan, OCB)
}

fn portable<T: TapList, const OCB: usize, const WV: usize>() -> (Plan, usize) {
    /// # Safety
    ///
    /// None beyond the kernel's own: portable code runs everywhere.
    unsafe fn row<T: TapList, const OCB: usize, const WV: usize, const CHECK: bool>(
        job: &mut RowJob<'_>,
    ) {
        kernel::row::<T, Portable, OCB, WV, CHECK>(job)
    }
    make_plan::<T, Portable, OCB, WV>(
        Isa::Portable,
        row::<T, OCB, WV, false>,
        row::<T, OCB, WV, true>,
    )
}

#[cfg(target_arch = "x86_64")]
fn avx2<T: TapList, const OCB: usize, const WV: usize>() -> (Plan, usize) {
    /// # Safety
    ///
    /// The CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn row<T: TapList, const OCB: usize, const WV: usize, const CHECK: bool>(
        job: &mut RowJob<'_>,
    ) {
        kernel::row::<T, crate::simd::Avx2, OCB, WV, CHECK>(job)
    }
    make_plan::<T, crate::simd::Avx2, OCB, WV>(
        Isa::Avx2,
        row::<T, OCB, WV, false>,
        row::<T, OCB, WV, true>,
    )
}

#[cfg(target_arch = "x86_64")]
fn avx512<T: TapList, const OCB: usize, const WV: usize>() -> (Plan, usize) {
    /// # Safety
    ///
    /// The CPU must support AVX-512F.
    #[target_feature(enable = "avx512f")]
    unsafe fn row<T: TapList, const OCB: usize, const WV: usize, const CHECK: bool>(
        job: &mut RowJob<'_>,
    ) {
        kernel::row::<T, crate::simd::Avx512, OCB, WV, CHECK>(job)
    }
    make_plan::<T, crate::simd::Avx512, OCB, WV>(
        Isa::Avx512,
        row::<T, OCB, WV, false>,
        row::<T, OCB, WV, true>,
    )
}

#[cfg(target_arch = "aarch64")]
fn neon<T: TapList, const OCB: usize, const WV: usize>() -> (Plan, usize) {
    /// # Safety
    ///
    /// None beyond the kernel's own: NEON is part of the aarch64 baseline.
    unsafe fn row<T: TapList, const OCB: usize, const WV: usize, const CHECK: bool>(
        job: &mut RowJob<'_>,
    ) {
        kernel::row::<T, crate::simd::Neon, OCB, WV, CHECK>(job)
    }
    make_plan::<T, crate::simd::Neon, OCB, WV>(
        Isa::Neon,
        row::<T, OCB, WV, false>,
        row::<T, OCB, WV, true>,
    )
}
