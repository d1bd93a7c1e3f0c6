//! The forward kernel family: the register-blocked row kernel, written once for both
//! directions and every instruction set, and unrolled over the taps `conv!` generated; its
//! variant vectorised along output channels for short rows and wide padding
//! (`channel_vectors`), both leaving out the taps that read only padding (`edges`); with what
//! runs them (`engine`, `driver`), chooses the kernel and its blocking (`select`) and packs
//! the weights (`packed`).
//!
//! One call computes one output row of `OCB` output channels (the one-channel kernels of a
//! convolution, which run strided depthwise layers, several consecutive rows: `MULTI_ROW` in
//! `specialised`): tile after tile of
//! `WV * LANES` consecutive outputs, each tile held in `OCB x WV` vector accumulators while
//! the kernel walks the group's input channels and, for each, every tap of the geometry.
//! A tap is one vector load per accumulator column and one broadcast weight per row,
//! at offsets that are constants once `G::forward_taps` is inlined.
//!
//! The input is read from a [`Prepared`] buffer, never from the user's array: padded with
//! zeros on the left and right and split into `col_stride` column phases, so that every tap
//! of every output tile is a contiguous, in-bounds load. Rows are not padded: the taps come
//! grouped by filter row, and a row of taps whose input row falls in the padding is skipped,
//! one test per filter row and input channel, never per element or tap. One kernel serves
//! every output row: a second, unchecked instantiation for the interior rows would double
//! the code each geometry compiles for a difference within the benchmarks' noise.
//!
//! The exception is the paired kernel (`CP = 2`) of a stride-2 transposed convolution, which
//! loads an input vector for every four to eight broadcast weights and so is bound by loads:
//! keeping a row test's state in registers spills the row pointers, an extra load per tap
//! row that cost dcgan-up 17% (AVX2, Zen 3). Its prepared input has zero rows above and below
//! instead, which its border rows multiply; those are a few rows of a transposed
//! convolution's output, where a dilated convolution's can be most of them.

mod channel_vectors;
mod driver;
mod edges;
mod engine;
mod packed;
pub(crate) mod prepare;
mod run_time;
mod select;
mod specialised;
mod store;
mod sums_out;
mod taps;

use std::mem::MaybeUninit;
use std::ops::Range;

use crate::isa::Family;
use crate::memory::layout::PlaneLayout;

pub(crate) use engine::Engine;
pub(crate) use taps::{Forward, RunTimeTaps, TapList, Transposed};

/// The row kernels' family: every kernel computes one [`RowJob`].
pub(crate) struct RowFamily;

impl Family for RowFamily {
    type Job<'a> = RowJob<'a>;
}

/// The widest tile any instantiation uses, in floats, all column phases together.
const MAX_TILE: usize = 128;

/// The input of one image, laid out for the kernels: `[channel][row][col_phase][col]`, with
/// zeros around the data so that every column a tile reads is inside its row.
pub(crate) struct Prepared<'a> {
    data: &'a [f32],
    layout: PlaneLayout,
    /// The prepared columns (counted before the split into column phases) that hold the
    /// input's columns; every other column of every row is zero.
    data_columns: Range<usize>,
}

impl<'a> Prepared<'a> {
    /// Wraps `data`, which must hold exactly `layout.image_stride()` floats, with the input's
    /// columns at prepared columns `data_columns` and zeros around them.
    pub fn new(data: &'a [f32], layout: PlaneLayout, data_columns: Range<usize>) -> Prepared<'a> {
        assert_eq!(
            data.len(),
            layout.image_stride(),
            "prepared buffer matches its layout"
        );
        assert!(data_columns.end <= layout.row_stride());
        Prepared {
            data,
            layout,
            data_columns,
        }
    }
}

/// `rows` (at most `N` output slices) placed in `storage`, as the slice a job holds: no
/// entry past them is written (filling all of an array of 128 per job was 4% of
/// depthwise-d2's time, Zen 3, `perf record`), and no allocation made.
#[inline]
pub(crate) fn rows_in<'b, const N: usize>(
    storage: &'b mut [MaybeUninit<&'b mut [MaybeUninit<f32>]>; N],
    rows: impl IntoIterator<Item = &'b mut [MaybeUninit<f32>]>,
) -> &'b mut [&'b mut [MaybeUninit<f32>]] {
    let mut rows = rows.into_iter();
    let mut count = 0;
    for (slot, row) in storage.iter_mut().zip(&mut rows) {
        slot.write(row);
        count += 1;
    }
    assert!(rows.next().is_none(), "at most {N} rows");
    let written = &mut storage[..count];
    // SAFETY: the loop above initialised the first `count` entries, and `MaybeUninit<T>`
    // has the layout of `T`.
    unsafe { &mut *(written as *mut [_] as *mut [&mut [MaybeUninit<f32>]]) }
}

/// One output row (or a few consecutive ones) of one block of output channels: everything
/// but the geometry.
pub(crate) struct RowJob<'a> {
    pub input: &'a Prepared<'a>,
    /// The group's input channels within `input`.
    pub channels: Range<usize>,
    /// The input row of the first output row's windows' origin (may be negative, in the
    /// padding).
    pub origin_row: isize,
    /// Consecutive output rows the job computes, one after another: 1 unless the kernel is
    /// [`multi_row`](select::Selected::multi_row).
    pub rows: usize,
    /// Input rows from one output row's window origin to the next's (the row stride).
    pub origin_step: isize,
    /// The tap list's phase (always 0 for the convolution). A kernel that computes `CP`
    /// column phases at once computes phases `phase..phase + CP`.
    pub phase: usize,
    /// The block's packed weights: `[channel][tap][OCB]`.
    pub weights: &'a [f32],
    /// One bias per output channel of the block (zeros when the layer has none).
    pub bias: &'a [f32],
    /// The tile columns (output columns, or phase columns `q`) to compute.
    pub cols: Range<usize>,
    /// The block's output rows: one slice per channel of the block (at most `OCB`, as many
    /// as `bias` has), holding the job's `rows` rows one after another, `out_row_len` floats
    /// each. Possibly uninitialised: kernels only write them, every column of every row.
    /// (A slice per row and channel, the driver made 128 of them a call for
    /// seed-dilated's sixteen rows of eight channels, and making them was a twentieth of
    /// its time, Intel Xeon, `perf record`.)
    pub out: &'a mut [&'a mut [MaybeUninit<f32>]],
    /// The length of an output row.
    pub out_row_len: usize,
    /// Tile column `c` of the kernel's `p`-th column phase is output column
    /// `c * out_step + p + out_offset`; outputs that fall outside the row are dropped.
    pub out_step: usize,
    pub out_offset: isize,
    /// The direction's taps as data, for [`run_time::RunTimeRow`]; the specialised kernels
    /// have the same as constants of their [`TapList`].
    pub taps: RunTimeTaps,
}

impl RowJob<'_> {
    /// Asserts that the job has one output slice per bias, each of its `rows` whole rows:
    /// what the kernels' stores rely on.
    pub fn check_out(&self) {
        assert_eq!(
            self.out.len(),
            self.bias.len(),
            "one output slice per channel"
        );
        let len = self.rows * self.out_row_len;
        assert!(
            self.out.iter().all(|out| out.len() == len),
            "whole output rows"
        );
    }

    /// Output row `row` of each of the block's channels, in order.
    #[inline(always)]
    pub fn out_rows(&mut self, row: usize) -> impl Iterator<Item = &mut [MaybeUninit<f32>]> {
        let len = self.out_row_len;
        self.out
            .iter_mut()
            .map(move |out| &mut out[row * len..][..len])
    }
}
