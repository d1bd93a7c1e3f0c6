//! The contract between the code `conv!` generates and the runtime's kernels.
//!
//! `conv!` knows the geometry; the runtime knows the data (channel counts, sizes, layouts,
//! which SIMD instructions the CPU has). They meet here:
//!
//! * The macro implements [`Kernels`] for each geometry: the *taps* of the convolution and of
//!   each phase of the transposed convolution, each tap one call of
//!   [`TapVisitor::tap`] whose weight index and offsets are constant generic arguments.
//! * A runtime kernel is a [`TapVisitor`]: it says what one tap does (load the input at that
//!   offset, multiply by the weight, accumulate) for one block of outputs. Calling
//!   `G::forward_taps(&mut visitor)` inlines every tap into straight-line code with
//!   compile-time offsets, which is the whole point of generating kernels per geometry.
//!
//! New kernels (another SIMD width, another blocking, gradients) are new visitors; the
//! generated code does not change. The contract for each tap: it multiplies weight `WEIGHT`
//! (index `th * kw + tw` into one `kh x kw` filter) with the input element `ROW` rows and `COL`
//! columns from the output's window origin:
//!
//! * convolution, output `(oh, ow)`: origin `(oh * sh - pad_top, ow * sw - pad_left)`;
//!   offsets are `(th * dh, tw * dw)`, never negative;
//! * transposed convolution, phase `(r, c)`, output `(y, x) = (q * sh + r - pad_top,
//!   q' * sw + c - pad_left)`: origin `(q, q')`; offsets are never positive, and the phase
//!   holds exactly the taps that reach its outputs.
//!
//! This module is public only so that generated code can name it (as
//! `::conv_runtime::__private`); it is not part of the API and may change in any release.

/// The smallest and largest offsets (inclusive) a set of taps reads, per axis. An output
/// whose window keeps both ends inside the input is *interior*: its kernel needs no bounds
/// checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    /// Row offsets `(min, max)`.
    pub rows: (isize, isize),
    /// Column offsets `(min, max)`.
    pub cols: (isize, isize),
}

/// One tap as data: the same weight index and offsets as the constants of
/// [`TapVisitor::tap`], for kernels that take them at run time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tap {
    /// Index of the weight within one `kh x kw` filter.
    pub weight: usize,
    /// Input rows from the window origin.
    pub row: isize,
    /// Input columns from the window origin.
    pub col: isize,
}

/// What one phase of a kernel reads (the convolution has a single phase).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PhasePlan {
    /// Output rows with `(y + pad_top) % stride_h == row_phase` belong to the phase.
    pub row_phase: usize,
    /// Output columns with `(x + pad_left) % stride_w == col_phase` belong to the phase.
    pub col_phase: usize,
    /// The taps that reach the phase, in the order the visitor gets them.
    pub taps: &'static [Tap],
    /// The offsets they read; `None` when no tap reaches the phase (its outputs are the bias).
    pub extent: Option<Extent>,
}

/// One kernel's action for one tap. See the [module documentation](crate::__private) for the
/// meaning of the constants.
///
/// Taps come grouped by row offset: the generated code asks [`row`](Self::row) once per
/// group and calls [`tap`](Self::tap) for the group's taps only when it answers `true`.
pub trait TapVisitor {
    /// Whether to apply the taps `row` rows from the window origin (`false` where that row
    /// is padding, whose products are zeros).
    fn row(&mut self, row: isize) -> bool;

    /// Applies the tap of weight `WEIGHT` at offset `(ROW, COL)`.
    fn tap<const WEIGHT: usize, const ROW: isize, const COL: isize>(&mut self);
}

/// A computation over one phase of a transposed convolution, with the phase as a constant
/// so that its tap list is chosen once, at compile time, not once per input channel.
pub trait PhaseFn {
    /// Runs with phase `PHASE` ([`NO_PHASE`] for a phase no tap reaches).
    fn call<const PHASE: usize>(self);
}

/// The `PHASE` of [`PhaseFn::call`] for a phase no tap reaches.
pub const NO_PHASE: usize = usize::MAX;

/// A choice between kernels computing one column phase of a transposed convolution per
/// call, and kernels computing two (for column stride 2), made by the geometry so that only
/// the kernels it uses are compiled.
pub trait ColumnPairing {
    /// What the choice makes.
    type Output;
    /// One column phase per call.
    fn single(self) -> Self::Output;
    /// Both column phases of a column stride of 2 per call.
    fn paired(self) -> Self::Output;
}

/// The unrolled taps of one geometry, implemented by `conv!`.
///
/// # Safety
///
/// The kernels read without bounds checks where these taps say. An implementation must list
/// every tap of the geometry exactly as the [module documentation](crate::__private) defines
/// them, with `FORWARD` and `TRANSPOSED` describing the same taps (counts and extents), and
/// must call [`TapVisitor::tap`] only inside a group of taps of one row for which
/// [`TapVisitor::row`] returned `true`.
pub unsafe trait Kernels {
    /// The convolution's single phase.
    const FORWARD: PhasePlan;
    /// The transposed convolution's `stride_h * stride_w` phases, row phase first
    /// (index `row_phase * stride_w + col_phase`).
    const TRANSPOSED: &'static [PhasePlan];

    /// Calls `visitor.tap` once per tap of the convolution, in filter order.
    fn forward_taps<V: TapVisitor>(visitor: &mut V);

    /// Calls `visitor.tap` once per tap reaching transposed-convolution phase `phase`.
    fn transposed_taps<V: TapVisitor>(phase: usize, visitor: &mut V);

    /// Calls `f.call::<phase>()`: one arm per phase that some tap reaches, [`NO_PHASE`] for
    /// the others.
    fn with_transposed_phase<F: PhaseFn>(phase: usize, f: F);

    /// `f.paired()` when the column stride is 2, else `f.single()`.
    fn with_transposed_columns<F: ColumnPairing>(f: F) -> F::Output;
}
