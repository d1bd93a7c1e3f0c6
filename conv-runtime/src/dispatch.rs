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

use crate::__private::ColumnPairing;
use crate::driver::Plan;
use crate::kernel::{self, RowJob, RunTimeTaps, TapList};
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
    T::with_columns(Planner::<T> {
        out_per_group,
        taps: std::marker::PhantomData,
    })
}

/// Builds the plan for the column pairing the geometry chooses: only the kernels of that
/// pairing are compiled.
struct Planner<T> {
    out_per_group: usize,
    taps: std::marker::PhantomData<T>,
}

impl<T: TapList> ColumnPairing for Planner<T> {
    type Output = (Plan, usize);

    fn single(self) -> (Plan, usize) {
        single::<T>(self.out_per_group)
    }

    fn paired(self) -> (Plan, usize) {
        paired::<T>(self.out_per_group)
    }
}

/// Kernels computing one column phase per call. Each blocking keeps its `OCB x WV`
/// accumulators, with room for the loaded inputs, within the instruction set's registers.
fn single<T: TapList>(out_per_group: usize) -> (Plan, usize) {
    let wide = out_per_group >= 4;
    match Isa::current() {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 if out_per_group >= 8 => avx512::<T, 8, 2, 1>(),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 if wide => avx512::<T, 4, 4, 1>(),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 if out_per_group == 3 => avx512::<T, 3, 4, 1>(),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => avx512::<T, 1, 4, 1>(),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 if wide => avx2::<T, 4, 2, 1>(),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 if out_per_group == 3 => avx2::<T, 3, 2, 1>(),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => avx2::<T, 1, 4, 1>(),
        #[cfg(target_arch = "aarch64")]
        Isa::Neon if wide => neon::<T, 4, 4, 1>(),
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => neon::<T, 1, 8, 1>(),
        _ if wide => portable::<T>(portable::WIDE),
        _ => portable::<T>(portable::NARROW),
    }
}

/// Kernels computing both column phases of a stride-2 transposed convolution per call:
/// twice the accumulators per tile column, so half the tile width.
fn paired<T: TapList>(out_per_group: usize) -> (Plan, usize) {
    let wide = out_per_group >= 4;
    match Isa::current() {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 if out_per_group >= 8 => avx512::<T, 8, 1, 2>(),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 if wide => avx512::<T, 4, 2, 2>(),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => avx512::<T, 1, 4, 2>(),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 if wide => avx2::<T, 4, 1, 2>(),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => avx2::<T, 1, 4, 2>(),
        #[cfg(target_arch = "aarch64")]
        Isa::Neon if wide => neon::<T, 4, 2, 2>(),
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => neon::<T, 1, 4, 2>(),
        _ if wide => portable::<T>(portable::WIDE_PAIRED),
        _ => portable::<T>(portable::NARROW_PAIRED),
    }
}

/// A plan for tap list `T` whose row kernel `kernel`, of `ocb` output channels by `wv`
/// vectors of `lanes` and `column_phases` column phases, runs on `isa`.
fn make_plan<T: TapList>(
    isa: Isa,
    kernel: kernel::RowKernel,
    (ocb, wv, lanes, column_phases): (usize, usize, usize, usize),
) -> (Plan, usize) {
    let plan = Plan {
        spec: T::SPEC,
        taps: RunTimeTaps::of::<T>(),
        input_shift: T::INPUT_SHIFT,
        isa,
        kernel,
        tile: wv * lanes,
        column_phases,
    };
    (plan, ocb)
}

/// The portable path's plan, with one of [`portable`]'s kernels.
fn portable<T: TapList>((kernel, ocb, wv, cp): portable::Blocked) -> (Plan, usize) {
    make_plan::<T>(Isa::Portable, kernel, (ocb, wv, Portable::LANES, cp))
}

/// The portable path's kernels, which take their taps at run time
/// ([`kernel::row_with_run_time_taps`]): plain functions, so compiled once, in this crate,
/// whatever the geometries. Each blocking with its `(OCB, WV, CP)`.
mod portable {
    use super::*;

    /// A kernel and its output channels, vectors and column phases.
    pub(super) type Blocked = (kernel::RowKernel, usize, usize, usize);

    fn wide(job: &mut RowJob<'_>) {
        kernel::row_with_run_time_taps::<Portable, 4, 1, 1>(job)
    }
    fn narrow(job: &mut RowJob<'_>) {
        kernel::row_with_run_time_taps::<Portable, 1, 2, 1>(job)
    }
    fn wide_paired(job: &mut RowJob<'_>) {
        kernel::row_with_run_time_taps::<Portable, 4, 1, 2>(job)
    }
    fn narrow_paired(job: &mut RowJob<'_>) {
        kernel::row_with_run_time_taps::<Portable, 1, 2, 2>(job)
    }

    pub(super) const WIDE: Blocked = (wide, 4, 1, 1);
    pub(super) const NARROW: Blocked = (narrow, 1, 2, 1);
    pub(super) const WIDE_PAIRED: Blocked = (wide_paired, 4, 1, 2);
    pub(super) const NARROW_PAIRED: Blocked = (narrow_paired, 1, 2, 2);
}

/// One instruction set's kernels: `$name::<T, OCB, WV, CP>()` instantiates them inside a
/// function compiled for `$features` (none for portable code) and returns their plan.
macro_rules! instruction_set {
    ($(#[$cfg:meta])* $name:ident, $simd:ty, $isa:expr, $safety:literal $(, $features:literal)?) => {
        $(#[$cfg])*
        fn $name<T: TapList, const OCB: usize, const WV: usize, const CP: usize>() -> (Plan, usize) {
            #[doc = concat!("# Safety\n\n", $safety)]
            $(#[target_feature(enable = $features)])?
            unsafe fn row<
                T: TapList,
                const OCB: usize,
                const WV: usize,
                const CP: usize,
            >(
                job: &mut RowJob<'_>,
            ) {
                kernel::row::<T, $simd, OCB, WV, CP>(job)
            }
            let lanes = <$simd as Simd>::LANES;
            make_plan::<T>($isa, row::<T, OCB, WV, CP>, (OCB, WV, lanes, CP))
        }
    };
}

instruction_set!(
    #[cfg(target_arch = "x86_64")]
    avx2,
    crate::simd::Avx2,
    Isa::Avx2,
    "The CPU must support AVX2 and FMA.",
    "avx2,fma"
);
instruction_set!(
    #[cfg(target_arch = "x86_64")]
    avx512,
    crate::simd::Avx512,
    Isa::Avx512,
    "The CPU must support AVX-512F.",
    "avx512f"
);
instruction_set!(
    #[cfg(target_arch = "aarch64")]
    neon,
    crate::simd::Neon,
    Isa::Neon,
    "None beyond the kernel's own: NEON is part of the aarch64 baseline."
);
