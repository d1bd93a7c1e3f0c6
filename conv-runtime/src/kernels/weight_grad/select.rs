//! Chooses the weight-gradient kernel and its blocking for a layer's channel counts and
//! instruction set, and compiles it for that set with the set's token.

use super::Blocking;
use super::channels::ChannelKernel;
use super::columns::ColumnKernel;
use crate::isa::Detected;

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

/// The kernel for the instruction set `detected`, blocked for
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
pub(crate) fn kernel(detected: Detected, out_per_group: usize, in_per_group: usize) -> Kernel {
    let channels = |lanes: usize, vectors: usize, in_block: usize| {
        4 * out_per_group >= 3 * lanes * vectors && in_per_group >= in_block
    };
    match detected {
        #[cfg(target_arch = "x86_64")]
        Detected::Avx512(simd) if channels(16, 4, 6) => {
            Kernel::Channels(ChannelKernel::new::<_, 4, 6>(simd))
        }
        #[cfg(target_arch = "x86_64")]
        Detected::Avx2(simd) if channels(8, 2, 6) => {
            Kernel::Channels(ChannelKernel::new::<_, 2, 6>(simd))
        }
        #[cfg(target_arch = "aarch64")]
        Detected::Neon(simd) if channels(4, 4, 6) => {
            Kernel::Channels(ChannelKernel::new::<_, 4, 6>(simd))
        }
        Detected::Portable(simd) if channels(8, 1, 4) => {
            Kernel::Channels(ChannelKernel::new::<_, 1, 4>(simd))
        }
        _ => Kernel::Columns(column_kernel(detected, out_per_group, in_per_group)),
    }
}

/// The column kernel's blocking: see [`kernel`].
fn column_kernel(detected: Detected, out_per_group: usize, in_per_group: usize) -> ColumnKernel {
    let wide = out_per_group >= 4 && in_per_group >= 4;
    let pairs = out_per_group >= 2 && in_per_group >= 2;
    match detected {
        #[cfg(target_arch = "x86_64")]
        Detected::Avx512(simd) if out_per_group >= 8 && in_per_group >= 4 => {
            ColumnKernel::new::<_, 6, 4, 1>(simd)
        }
        #[cfg(target_arch = "x86_64")]
        Detected::Avx512(simd) if wide => ColumnKernel::new::<_, 4, 4, 1>(simd),
        #[cfg(target_arch = "x86_64")]
        Detected::Avx512(simd) if out_per_group >= 8 && in_per_group == 3 => {
            ColumnKernel::new::<_, 8, 3, 1>(simd)
        }
        #[cfg(target_arch = "x86_64")]
        Detected::Avx512(simd) if out_per_group >= 4 && in_per_group >= 2 => {
            ColumnKernel::new::<_, 4, 2, 2>(simd)
        }
        #[cfg(target_arch = "x86_64")]
        Detected::Avx512(simd) if pairs => ColumnKernel::new::<_, 2, 2, 4>(simd),
        #[cfg(target_arch = "x86_64")]
        Detected::Avx512(simd) => ColumnKernel::new::<_, 1, 1, 4>(simd),
        #[cfg(target_arch = "x86_64")]
        Detected::Avx2(simd) if out_per_group >= 4 && in_per_group == 3 => {
            ColumnKernel::new::<_, 4, 3, 1>(simd)
        }
        #[cfg(target_arch = "x86_64")]
        Detected::Avx2(simd) if out_per_group >= 4 && in_per_group >= 2 => {
            ColumnKernel::new::<_, 4, 2, 1>(simd)
        }
        #[cfg(target_arch = "x86_64")]
        Detected::Avx2(simd) if pairs => ColumnKernel::new::<_, 2, 2, 2>(simd),
        #[cfg(target_arch = "x86_64")]
        Detected::Avx2(simd) => ColumnKernel::new::<_, 1, 1, 8>(simd),
        #[cfg(target_arch = "aarch64")]
        Detected::Neon(simd) if wide => ColumnKernel::new::<_, 4, 4, 1>(simd),
        #[cfg(target_arch = "aarch64")]
        Detected::Neon(simd) if pairs => ColumnKernel::new::<_, 2, 2, 4>(simd),
        #[cfg(target_arch = "aarch64")]
        Detected::Neon(simd) => ColumnKernel::new::<_, 1, 1, 8>(simd),
        // A portable vector is two SSE registers wide.
        Detected::Portable(simd) if pairs => ColumnKernel::new::<_, 2, 2, 1>(simd),
        Detected::Portable(simd) => ColumnKernel::new::<_, 1, 1, 4>(simd),
    }
}
