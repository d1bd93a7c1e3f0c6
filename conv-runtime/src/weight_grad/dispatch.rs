//! Chooses the weight-gradient kernel's blocking for a layer's channel counts and instruction
//! set, and instantiates it inside a function compiled for that set, as the forward kernels'
//! `dispatch` does.

use crate::simd::{Portable, Simd};
use crate::{Geometry, Isa};

use super::kernel::{self, Job, KernelFn};

/// A weight-gradient kernel and the blocking it was instantiated with.
#[derive(Clone, Copy)]
pub(crate) struct Kernel {
    /// The instantiation; it may use instructions of `isa`.
    pub run: KernelFn,
    /// Output channels (grad rows) per block: `MR`.
    pub out_block: usize,
    /// Input channels per block: `NR`.
    pub in_block: usize,
    /// Vector accumulators per filter: `WV`.
    pub vectors: usize,
    /// Floats per vector.
    pub lanes: usize,
}

/// The kernel for geometry `G` on `isa` (which must be available), blocked for
/// `out_per_group` output and `in_per_group` input channels per group.
///
/// Each blocking keeps its `MR x NR x WV` accumulators, and the `MR + NR` vectors one step
/// loads, within the set's registers. Wide blocks share each load among several
/// multiply-adds; a depthwise layer (one channel of each per group) gets `WV` independent
/// accumulators instead, so that consecutive multiply-adds do not wait on each other. Its
/// step is `WV` vectors of grid columns, and a row narrower than a step runs one chain: so
/// AVX-512 takes 4 (a 64-column step), enough for a kernel that loads two vectors per
/// multiply-add and so cannot issue more than one a cycle anyway.
pub(crate) fn kernel<G: Geometry>(isa: Isa, out_per_group: usize, in_per_group: usize) -> Kernel {
    let wide = out_per_group >= 4 && in_per_group >= 4;
    let pairs = out_per_group >= 2 && in_per_group >= 2;
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 if out_per_group >= 8 && in_per_group >= 4 => avx512::<G, 6, 4, 1>(),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 if wide => avx512::<G, 4, 4, 1>(),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 if out_per_group >= 8 && in_per_group == 3 => avx512::<G, 8, 3, 1>(),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 if out_per_group >= 4 && in_per_group >= 2 => avx512::<G, 4, 2, 2>(),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 if pairs => avx512::<G, 2, 2, 4>(),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => avx512::<G, 1, 1, 4>(),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 if out_per_group >= 4 && in_per_group == 3 => avx2::<G, 4, 3, 1>(),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 if out_per_group >= 4 && in_per_group >= 2 => avx2::<G, 4, 2, 1>(),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 if pairs => avx2::<G, 2, 2, 2>(),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => avx2::<G, 1, 1, 8>(),
        #[cfg(target_arch = "aarch64")]
        Isa::Neon if wide => neon::<G, 4, 4, 1>(),
        #[cfg(target_arch = "aarch64")]
        Isa::Neon if pairs => neon::<G, 2, 2, 4>(),
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => neon::<G, 1, 1, 8>(),
        // A portable vector is two SSE registers wide.
        _ if pairs => portable::<G, 2, 2, 1>(),
        _ => portable::<G, 1, 1, 4>(),
    }
}

fn make_kernel<S: Simd, const MR: usize, const NR: usize, const WV: usize>(
    run: KernelFn,
) -> Kernel {
    Kernel {
        run,
        out_block: MR,
        in_block: NR,
        vectors: WV,
        lanes: S::LANES,
    }
}

/// One instruction set's kernels: `$name::<G, MR, NR, WV>()` instantiates the kernel inside
/// a function compiled for `$features` (none for portable code).
macro_rules! instruction_set {
    ($(#[$cfg:meta])* $name:ident, $simd:ty, $safety:literal $(, $features:literal)?) => {
        $(#[$cfg])*
        fn $name<G: Geometry, const MR: usize, const NR: usize, const WV: usize>() -> Kernel {
            #[doc = concat!("# Safety\n\n", $safety)]
            $(#[target_feature(enable = $features)])?
            unsafe fn run<G: Geometry, const MR: usize, const NR: usize, const WV: usize>(
                job: &mut Job<'_>,
            ) {
                kernel::correlate::<G, $simd, MR, NR, WV>(job)
            }
            make_kernel::<$simd, MR, NR, WV>(run::<G, MR, NR, WV>)
        }
    };
}

instruction_set!(
    portable,
    Portable,
    "None beyond the kernel's own: portable code runs everywhere."
);
instruction_set!(
    #[cfg(target_arch = "x86_64")]
    avx2,
    crate::simd::Avx2,
    "The CPU must support AVX2 and FMA.",
    "avx2,fma"
);
instruction_set!(
    #[cfg(target_arch = "x86_64")]
    avx512,
    crate::simd::Avx512,
    "The CPU must support AVX-512F.",
    "avx512f"
);
instruction_set!(
    #[cfg(target_arch = "aarch64")]
    neon,
    crate::simd::Neon,
    "None beyond the kernel's own: NEON is part of the aarch64 baseline."
);
