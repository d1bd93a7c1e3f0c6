//! Leaving out, at the ends of a row, the taps that read only zeros.
//!
//! Where the padding is wide, the first and last tile of a row have taps whose reads fall
//! wholly in it: aspp-d12 (dilation and padding 12, 32 columns) reads zeros with a quarter
//! of the column taps of its windows. Such a tile gets a kernel instance of its own with
//! those loads and multiply-adds left out: which are dead is a constant of the instance,
//! valid for any tile that passes the run-time test in [`of`]. Only a geometry with such
//! taps compiles the extra instances ([`any`]).
//!
//! A kernel leaves out whole units of a tap: vectors of `LANES` consecutive columns in the
//! row kernel (`specialised`), single pixels in the kernel vectorised along output channels
//! (`channel_vectors`), whose pixels are separate broadcasts and multiply-adds.

use std::ops::Range;

use super::TapList;

/// Which of a row's tiles a kernel instance computes.
pub(super) const INTERIOR: u8 = 0;
/// A tile starting at most `LEADING_ZEROS` columns before the input's data.
pub(super) const LEFT_END: u8 = 1;
/// A tile ending at least `TRAILING_DATA` columns after the input's data.
pub(super) const RIGHT_END: u8 = 2;

/// Whether, in an `edge` tile of `tile` columns, the `unit` columns a tap reads from
/// column `first` (counted from the tile's first prepared column) are all zeros.
pub(super) const fn dead<T: TapList>(edge: u8, first: isize, unit: usize, tile: usize) -> bool {
    match edge {
        LEFT_END => first + unit as isize <= T::LEADING_ZEROS,
        RIGHT_END => first >= tile as isize + T::TRAILING_DATA,
        _ => false,
    }
}

/// Whether tap list `T` has, for tiles of `tile` columns left out in units of `unit`, any
/// unit to leave out.
pub(super) const fn any<T: TapList>(unit: usize, tile: usize) -> bool {
    zero_reads::<T>(unit, tile) > 0
}

/// How many of the columns that the taps of a left and a right end tile of `tile` columns
/// read the instances leave out, in units of `unit`: none unless `T` has one column phase
/// (a tap `COL` reads prepared column `tile start + COL + COL_SHIFT`).
pub(super) const fn zero_reads<T: TapList>(unit: usize, tile: usize) -> usize {
    if T::COL_STRIDE != 1 || T::PHASES.len() != 1 {
        return 0;
    }
    let taps = T::PHASES[0].taps;
    let mut dead_columns = 0;
    let mut t = 0;
    while t < taps.len() {
        let mut offset = 0;
        while offset < tile {
            let column = offset as isize + taps[t].col + T::COL_SHIFT;
            if dead::<T>(LEFT_END, column, unit, tile) {
                dead_columns += unit;
            }
            if dead::<T>(RIGHT_END, column, unit, tile) {
                dead_columns += unit;
            }
            offset += unit;
        }
        t += 1;
    }
    dead_columns
}

/// Which instance computes the tile of `tile` columns starting at tile column `start`, for
/// input data at prepared columns `data_columns`.
///
/// A tap reads prepared columns `start + column` onwards for its offset `column` from the
/// tile's start, so the dead units of `LEFT_END` read only zeros where `start +
/// LEADING_ZEROS` is at most the data's first column, and those of `RIGHT_END` where `start
/// + tile + TRAILING_DATA` is at least its end.
#[inline(always)]
pub(super) fn of<T: TapList>(start: usize, tile: usize, data_columns: &Range<usize>) -> u8 {
    let start = start as isize;
    if start + T::LEADING_ZEROS <= data_columns.start as isize {
        LEFT_END
    } else if start + tile as isize + T::TRAILING_DATA >= data_columns.end as isize {
        RIGHT_END
    } else {
        INTERIOR
    }
}
