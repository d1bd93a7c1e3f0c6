//! Which taps a row kernel walks: the tap lists of the two directions as constants, for the
//! specialised kernels, and as values, for the kernel that takes them at run time.

use std::marker::PhantomData;

use crate::shape::contract::{ColumnPairing, PhaseFn, PhasePlan, TapVisitor};
use crate::shape::geometry::{Geometry, GeometrySpec};

/// Which tap lists a kernel walks, and where they read the prepared input.
pub(crate) trait TapList: Send + Sync + 'static {
    /// The geometry the kernels compute: without padding when the layer lays a padding
    /// mode's border out itself ([`GeometrySpec::kernel_spec`]).
    const SPEC: GeometrySpec;
    /// The phases of this direction (one for the convolution).
    const PHASES: &'static [PhasePlan];
    /// Zeros the prepared rows carry on their left, before input column 0.
    const INPUT_SHIFT: usize;
    /// Added to `tile column * COL_STRIDE + COL` to index the prepared row.
    const COL_SHIFT: isize;
    /// Column phases the prepared input is split into (the convolution's column stride).
    const COL_STRIDE: usize;
    /// Weights per filter, `kh * kw`: every phase indexes into the whole filter.
    const FILTER_LEN: usize;
    /// Of a one-phase tap list: zero columns of the prepared row before the input's first,
    /// counted from the first tile's first column.
    const LEADING_ZEROS: isize;
    /// Of a one-phase tap list: columns from the last output's window origin to the end of
    /// the input's data in the prepared row.
    const TRAILING_DATA: isize;

    fn visit<V: TapVisitor>(phase: usize, visitor: &mut V);

    /// Calls `f` with `phase` as a constant, so that the phase's tap list is chosen once
    /// per kernel call instead of once per input channel.
    fn with_phase<F: PhaseFn>(phase: usize, f: F);

    /// Chooses between kernels computing one and two column phases per call.
    fn with_columns<F: ColumnPairing>(f: F) -> F::Output;
}

/// The convolution of geometry `G`: the prepared rows carry the left padding, so output
/// column `ow`, whose window starts at input column `ow * stride_w - pad_left`, starts at
/// prepared column `ow * stride_w`, and its tap `COL` is in column phase `COL % stride_w`.
pub(crate) struct Forward<G>(PhantomData<G>);

impl<G: Geometry> TapList for Forward<G> {
    const SPEC: GeometrySpec = G::SPEC.kernel_spec();
    const PHASES: &'static [PhasePlan] = &[G::FORWARD];
    const INPUT_SHIFT: usize = Self::SPEC.pad_before().1;
    const COL_SHIFT: isize = 0;
    const COL_STRIDE: usize = G::SPEC.stride.1;
    const FILTER_LEN: usize = G::SPEC.kernel_size.0 * G::SPEC.kernel_size.1;
    /// The left padding: output column 0's window starts at prepared column 0.
    const LEADING_ZEROS: isize = Self::INPUT_SHIFT as isize;
    /// The last output's window reaches its rightmost tap's column, of which the right
    /// padding's columns are zeros.
    const TRAILING_DATA: isize = match G::FORWARD.extent {
        Some(extent) => extent.cols.1 - Self::SPEC.pad_after().1 as isize,
        None => 0,
    };

    #[inline(always)]
    fn visit<V: TapVisitor>(_phase: usize, visitor: &mut V) {
        G::forward_taps(visitor);
    }

    #[inline(always)]
    fn with_phase<F: PhaseFn>(_phase: usize, f: F) {
        f.call::<0>()
    }

    fn with_columns<F: ColumnPairing>(f: F) -> F::Output {
        f.single()
    }
}

/// The transposed convolution of geometry `G`: phase column `q` reads input columns
/// `q + COL` with `COL <= 0`, so the prepared row carries the largest `-COL` in zeros on its
/// left.
pub(crate) struct Transposed<G>(PhantomData<G>);

impl<G: Geometry> TapList for Transposed<G> {
    const SPEC: GeometrySpec = G::SPEC.kernel_spec();
    const PHASES: &'static [PhasePlan] = G::TRANSPOSED;
    const INPUT_SHIFT: usize = (G::SPEC.kernel_size.1 - 1) * G::SPEC.dilation.1 / G::SPEC.stride.1;
    const COL_SHIFT: isize = Self::INPUT_SHIFT as isize;
    const COL_STRIDE: usize = 1;
    const FILTER_LEN: usize = G::SPEC.kernel_size.0 * G::SPEC.kernel_size.1;
    /// The first tile column is the output's first column plus the left padding, which
    /// crops the output: `INPUT_SHIFT` zeros less that many columns.
    const LEADING_ZEROS: isize = Self::INPUT_SHIFT as isize - Self::SPEC.pad_before().1 as isize;
    /// At stride 1 the last output's window origin is the input's last column plus the
    /// right padding, which crops the output.
    const TRAILING_DATA: isize = Self::SPEC.pad_after().1 as isize;

    #[inline(always)]
    fn visit<V: TapVisitor>(phase: usize, visitor: &mut V) {
        G::transposed_taps(phase, visitor);
    }

    #[inline(always)]
    fn with_phase<F: PhaseFn>(phase: usize, f: F) {
        G::with_transposed_phase(phase, f)
    }

    fn with_columns<F: ColumnPairing>(f: F) -> F::Output {
        G::with_transposed_columns(f)
    }
}

/// A direction's taps and where they read the prepared input, as values: what a [`TapList`]
/// holds as constants.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RunTimeTaps {
    pub phases: &'static [PhasePlan],
    pub col_shift: isize,
    pub col_stride: usize,
    pub filter_len: usize,
}

impl RunTimeTaps {
    pub fn of<T: TapList>() -> RunTimeTaps {
        RunTimeTaps {
            phases: T::PHASES,
            col_shift: T::COL_SHIFT,
            col_stride: T::COL_STRIDE,
            filter_len: T::FILTER_LEN,
        }
    }
}
