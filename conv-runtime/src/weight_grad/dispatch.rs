//! Chooses the weight-gradient kernel and its blocking for a layer's channel counts and
//! instruction set, and instantiates it inside a function compiled for that set, as the
//! forward kernels' `dispatch` does.

use crate::Isa;
use crate::simd::{Portable, Simd};

use super::{Blocking, channels, columns};

/// The kernel a layer's weight gradient runs.
#[derive(Clone, Copy)]
pub(crate) enum Kernel {
    Columns(ColumnKernel),
    Channels(ChannelKernel),
}

impl Kernel {
    pub fn blocking(&self) -> Blocking {
        match self {
            Kernel::Columns(kernel) => kernel.blocking(),
            Kernel::Channels(kernel) => kernel.blocking(),
        }
    }

    /// How many columns of each grid row the kernel reads: the column kernel rounds the
    /// grid up to whole vectors.
    pub fn columns_read(&self, width: usize) -> usize {
        match self {
            Kernel::Columns(kernel) => kernel.row_width(width),
            Kernel::Channels(_) => width,
        }
    }
}

/// A column kernel (`columns.rs`) and the blocking it was instantiated with.
#[derive(Clone, Copy)]
pub(crate) struct ColumnKernel {
    /// The instantiation; it may use instructions of the layer's instruction set.
    pub run: columns::KernelFn,
    /// Output channels (grad rows) per block: `MR`.
    pub out_block: usize,
    /// Input channels per block: `NR`.
    pub in_block: usize,
    /// Vector accumulators per filter: `WV`.
    pub vectors: usize,
    /// Floats per vector.
    pub lanes: usize,
}

impl ColumnKernel {
    pub fn blocking(&self) -> Blocking {
        Blocking {
            out_block: self.out_block,
            in_block: self.in_block,
        }
    }

    /// The floats of each prepared grad row for a grid `width` columns wide: whole vectors.
    pub fn row_width(&self, width: usize) -> usize {
        width.next_multiple_of(self.lanes)
    }
}

/// A channel kernel (`channels.rs`) and the blocking it was instantiated with.
#[derive(Clone, Copy)]
pub(crate) struct ChannelKernel {
    /// The instantiation; it may use instructions of the layer's instruction set.
    pub run: channels::KernelFn,
    /// Vectors of grad channels per block: `MV`.
    pub vectors: usize,
    /// Input channels per block: `NR`.
    pub in_block: usize,
    /// Floats per vector.
    pub lanes: usize,
}

impl ChannelKernel {
    pub fn blocking(&self) -> Blocking {
        Blocking {
            out_block: self.vectors * self.lanes,
            in_block: self.in_block,
        }
    }
}

/// The kernel for geometry `G` on `isa` (which must be available), blocked for
/// `out_per_group` output (grad) and `in_per_group` input channels per group.
///
/// The channel kernel, where a block of `MV * LANES` grad channels by `NR` input channels is
/// at least three quarters full: `MV x NR` accumulators, `MV` vector loads and `NR`
/// broadcasts per pixel. Otherwise the column kernel, whose blocking keeps its
/// `MR x NR x WV` accumulators, and the `MR + NR` vectors one step loads, within the set's
/// registers. Wide blocks share each load among several multiply-adds; a depthwise layer
/// (one channel of each per group) gets `WV` independent accumulators instead, so that
/// consecutive multiply-adds do not wait on each other. Its step is `WV` vectors of grid
/// columns, and a row narrower than a step runs one chain: so AVX-512 takes 4 (a 64-column
/// step), enough for a kernel that loads two vectors per multiply-add and so cannot issue
/// more than one a cycle anyway.
pub(crate) fn kernel(isa: Isa, out_per_group: usize, in_per_group: usize) -> Kernel {
    let channels = |lanes: usize, vectors: usize, in_block: usize| {
        4 * out_per_group >= 3 * lanes * vectors && in_per_group >= in_block
    };
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 if channels(16, 4, 6) => Kernel::Channels(avx512::channels::<4, 6>()),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 if channels(8, 2, 6) => Kernel::Channels(avx2::channels::<2, 6>()),
        #[cfg(target_arch = "aarch64")]
        Isa::Neon if channels(4, 4, 6) => Kernel::Channels(neon::channels::<4, 6>()),
        Isa::Portable if channels(8, 1, 4) => Kernel::Channels(portable::channels::<1, 4>()),
        _ => Kernel::Columns(column_kernel(isa, out_per_group, in_per_group)),
    }
}

/// The column kernel's blocking: see [`kernel`].
fn column_kernel(isa: Isa, out_per_group: usize, in_per_group: usize) -> ColumnKernel {
    let wide = out_per_group >= 4 && in_per_group >= 4;
    let pairs = out_per_group >= 2 && in_per_group >= 2;
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 if out_per_group >= 8 && in_per_group >= 4 => avx512::columns::<6, 4, 1>(),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 if wide => avx512::columns::<4, 4, 1>(),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 if out_per_group >= 8 && in_per_group == 3 => avx512::columns::<8, 3, 1>(),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 if out_per_group >= 4 && in_per_group >= 2 => avx512::columns::<4, 2, 2>(),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 if pairs => avx512::columns::<2, 2, 4>(),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => avx512::columns::<1, 1, 4>(),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 if out_per_group >= 4 && in_per_group == 3 => avx2::columns::<4, 3, 1>(),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 if out_per_group >= 4 && in_per_group >= 2 => avx2::columns::<4, 2, 1>(),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 if pairs => avx2::columns::<2, 2, 2>(),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => avx2::columns::<1, 1, 8>(),
        #[cfg(target_arch = "aarch64")]
        Isa::Neon if wide => neon::columns::<4, 4, 1>(),
        #[cfg(target_arch = "aarch64")]
        Isa::Neon if pairs => neon::columns::<2, 2, 4>(),
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => neon::columns::<1, 1, 8>(),
        // A portable vector is two SSE registers wide.
        _ if pairs => portable::columns::<2, 2, 1>(),
        _ => portable::columns::<1, 1, 4>(),
    }
}

/// One instruction set's kernels, in a module `$name`: `columns::<G, MR, NR, WV>()` and
/// `channels::<G, MV, NR>()` instantiate them inside functions compiled for `$features`
/// (none for portable code).
macro_rules! instruction_set {
    ($(#[$cfg:meta])* $name:ident, $simd:ty, $safety:literal $(, $features:literal)?) => {
        $(#[$cfg])*
        mod $name {
            use super::*;

            pub(super) fn columns<const MR: usize, const NR: usize, const WV: usize>() -> ColumnKernel {
                #[doc = concat!("# Safety\n\n", $safety)]
                $(#[target_feature(enable = $features)])?
                unsafe fn run<const MR: usize, const NR: usize, const WV: usize>(
                    job: &mut columns::Job<'_>,
                ) {
                    columns::correlate::<$simd, MR, NR, WV>(job)
                }
                ColumnKernel {
                    run: run::<MR, NR, WV>,
                    out_block: MR,
                    in_block: NR,
                    vectors: WV,
                    lanes: <$simd as Simd>::LANES,
                }
            }

            pub(super) fn channels<const MV: usize, const NR: usize>() -> ChannelKernel {
                #[doc = concat!("# Safety\n\n", $safety)]
                $(#[target_feature(enable = $features)])?
                unsafe fn run<const MV: usize, const NR: usize>(
                    job: &mut channels::Job<'_>,
                ) {
                    channels::correlate::<$simd, MV, NR>(job)
                }
                ChannelKernel {
                    run: run::<MV, NR>,
                    vectors: MV,
                    in_block: NR,
                    lanes: <$simd as Simd>::LANES,
                }
            }
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
