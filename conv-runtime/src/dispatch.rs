//! Chooses, once per layer, which instantiation of the row kernel runs it.

use crate::driver::Plan;
use crate::kernel::{self, TapList};
use crate::simd::{Portable, Simd};

/// The row kernels for tap list `T`, blocked for a layer with `out_per_group` output
/// channels per group; returns the plan and its output-channel block size.
pub(crate) fn plan<T: TapList>(out_per_group: usize) -> (Plan, usize) {
    if out_per_group >= 4 {
        (instantiate::<T, Portable, 4, 1>(), 4)
    } else {
        (instantiate::<T, Portable, 1, 2>(), 1)
    }
}

fn instantiate<T: TapList, S: Simd, const OCB: usize, const WV: usize>() -> Plan {
    Plan {
        spec: T::SPEC,
        phases: T::PHASES,
        input_shift: T::INPUT_SHIFT,
        col_stride: T::COL_STRIDE,
        interior: kernel::row::<T, S, OCB, WV, false>,
        border: kernel::row::<T, S, OCB, WV, true>,
        tile: WV * S::LANES,
    }
}
