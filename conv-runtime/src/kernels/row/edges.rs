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
//!
//! Where the padding is wider than a tile, the tile next to an end tile reads zeros too:
//! aspp-d12's rows of 32 pixels are four tiles of 8 in the channel-vector kernel, and the
//! second and third read padding with half the pixels of a column tap each. That kernel has
//! instances for those tiles as well ([`LEFT_NEXT`], [`RIGHT_NEXT`]), compiled only where
//! they leave something out ([`any_next`]).

use std::ops::Range;

use super::TapList;

/// Which of a row's tiles a kernel instance computes.
pub(super) const INTERIOR: u8 = 0;
/// A tile starting at most `LEADING_ZEROS` columns before the input's data.
pub(super) const LEFT_END: u8 = 1;
/// A tile ending at least `TRAILING_DATA` columns after the input's data.
pub(super) const RIGHT_END: u8 = 2;
/// A tile starting at most `LEADING_ZEROS - tile` columns before the input's data: one tile
/// on from a `LEFT_END` one.
pub(super) const LEFT_NEXT: u8 = 3;
/// A tile ending at least `TRAILING_DATA + tile` columns after the input's data: one tile
/// back from a `RIGHT_END` one.
pub(super) const RIGHT_NEXT: u8 = 4;

/// Whether, in an `edge` tile of `tile` columns, the `unit` columns a tap reads from
/// column `first` (counted from the tile's first prepared column) are all zeros.
pub(super) const fn dead<T: TapList>(edge: u8, first: isize, unit: usize, tile: usize) -> bool {
    let tile = tile as isize;
    match edge {
        LEFT_END => first + unit as isize <= T::LEADING_ZEROS,
        LEFT_NEXT => first + unit as isize <= T::LEADING_ZEROS - tile,
        RIGHT_END => first >= tile + T::TRAILING_DATA,
        RIGHT_NEXT => first >= 2 * tile + T::TRAILING_DATA,
        _ => false,
    }
}

/// Whether tap list `T` has, for tiles of `tile` columns left out in units of `unit`, any
/// unit to leave out.
pub(super) const fn any<T: TapList>(unit: usize, tile: usize) -> bool {
    zero_reads::<T>(unit, tile) > 0
}

/// Whether the tiles next to the end tiles ([`LEFT_NEXT`], [`RIGHT_NEXT`]) have, for tiles
/// of `tile` columns left out in units of `unit`, any unit to leave out.
pub(super) const fn any_next<T: TapList>(unit: usize, tile: usize) -> bool {
    dead_columns::<T>([LEFT_NEXT, RIGHT_NEXT], unit, tile) > 0
}

/// How many of the columns that the taps of a left and a right end tile of `tile` columns
/// read the instances leave out, in units of `unit`: none unless `T` has one column phase
/// (a tap `COL` reads prepared column `tile start + COL + COL_SHIFT`).
pub(super) const fn zero_reads<T: TapList>(unit: usize, tile: usize) -> usize {
    dead_columns::<T>([LEFT_END, RIGHT_END], unit, tile)
}

/// How many of the columns that the taps of a tile of each of the two `edges` instances
/// read those instances leave out, in units of `unit`.
const fn dead_columns<T: TapList>(edges: [u8; 2], unit: usize, tile: usize) -> usize {
    if T::COL_STRIDE != 1 || T::PHASES.len() != 1 {
        return 0;
    }
    let taps = T::PHASES[0].taps;
    let mut count = 0;
    let mut t = 0;
    while t < taps.len() {
        let mut offset = 0;
        while offset < tile {
            let column = offset as isize + taps[t].col + T::COL_SHIFT;
            if dead::<T>(edges[0], column, unit, tile) {
                count += unit;
            }
            if dead::<T>(edges[1], column, unit, tile) {
                count += unit;
            }
            offset += unit;
        }
        t += 1;
    }
    count
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

/// [`of`], with the instances of the tiles next to the end tiles: a tile `tile` columns
/// further from the row's end than one that passes [`of`]'s test reads zeros `tile` columns
/// fewer, whatever it leaves out.
#[inline(always)]
pub(super) fn of_with_next<T: TapList>(
    start: usize,
    tile: usize,
    data_columns: &Range<usize>,
) -> u8 {
    match of::<T>(start, tile, data_columns) {
        INTERIOR => {
            let (start, tile) = (start as isize, tile as isize);
            if start + T::LEADING_ZEROS - tile <= data_columns.start as isize {
                LEFT_NEXT
            } else if start + 2 * tile + T::TRAILING_DATA >= data_columns.end as isize {
                RIGHT_NEXT
            } else {
                INTERIOR
            }
        }
        end => end,
    }
}
