//! The layout every kernel reads its input operand in: per channel, rows of `col_phases`
//! runs, the row's columns dealt out by column stride, so that the columns one output row's
//! taps read are contiguous; and splitting a row into it.

use ndarray::{ArrayView1, ArrayView2, Axis};

/// Floats per cache line (64 bytes).
const LINE_FLOATS: usize = 16;

/// The shape of a prepared operand, one image of it: `[channel][row][col_phase][phase_len]`.
/// Prepared column `c` of a row is in phase `c % col_phases`, at `c / col_phases`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PlaneLayout {
    /// Channels, including any zero channel the kernel reads in place of a missing one.
    pub channels: usize,
    /// Rows, including any zero rows of padding.
    pub rows: usize,
    /// Column phases: the geometry's column stride (1 where columns are not split).
    pub col_phases: usize,
    /// Floats per column phase of one row.
    pub phase_len: usize,
}

impl PlaneLayout {
    pub fn row_stride(&self) -> usize {
        self.col_phases * self.phase_len
    }

    /// Floats from one channel to the next: the plane, rounded up to whole cache lines and
    /// then to an odd number of them.
    ///
    /// The kernels read the same row and columns of every channel one after another, so
    /// consecutive channels must not fall into the same L1 set. A plane of 64 rows of 80
    /// floats (unet-up's input) is exactly 5 pages: all 128 channels landed in one set of
    /// the 8-way L1, and every channel's load came from L2. An odd number of lines steps
    /// through all 64 sets of a page before repeating one.
    pub fn channel_stride(&self) -> usize {
        odd_lines(self.rows * self.row_stride())
    }

    /// Floats of one image.
    pub fn image_stride(&self) -> usize {
        self.channels * self.channel_stride()
    }
}

/// `floats` rounded up to whole cache lines and then to an odd number of them: the stride
/// at which runs of `floats` floats that a kernel reads (or writes) one after another at the
/// same offset fall into different cache sets, all 64 sets of a page before one repeats.
pub(crate) fn odd_lines(floats: usize) -> usize {
    let lines = floats.div_ceil(LINE_FLOATS);
    (lines | 1) * LINE_FLOATS
}

/// Lays one channel, `source`, out in `target` (one channel of `layout`): `above` zero rows,
/// then each source row after `shift` zero columns, split into `layout.col_phases` phases
/// (see [`split_row`]), then zero rows to the end. Calls `inspect` with each source row, as
/// a slice, while it is in cache.
///
/// Each float is written once where it can be: a data row is zeroed only in its margins (or,
/// split into phases, as a row just before its copy), not as part of a whole plane zeroed
/// first. Zeroing the plane and then copying into it wrote the buffer twice: on
/// depthwise-d2, whose kernels do little work per float, that was about 5% of the samples,
/// and the layer runs about 4% faster without it (Zen 3, `perf record`, one thread).
pub(crate) fn lay_out_plane(
    source: &ArrayView2<f32>,
    layout: PlaneLayout,
    (above, shift): (usize, usize),
    target: &mut [f32],
    mut inspect: impl FnMut(&[f32]),
) {
    let row_stride = layout.row_stride();
    assert_eq!(target.len(), layout.channel_stride());
    assert!(above + source.nrows() <= layout.rows);
    let (top, rest) = target.split_at_mut(above * row_stride);
    top.fill(0.0);
    let (data, bottom) = rest.split_at_mut(source.nrows() * row_stride);
    bottom.fill(0.0);
    // A non-contiguous row is gathered here first, one buffer for the plane.
    let mut gathered = Vec::new();
    for (source, target) in source
        .axis_iter(Axis(0))
        .zip(data.chunks_exact_mut(row_stride))
    {
        let source = contiguous(&source, &mut gathered);
        lay_out_row(source, shift, layout.col_phases, target);
        inspect(source);
    }
}

/// Lays one row, `source`, out in `target`: after `shift` zero columns, split into `phases`
/// column phases (see [`split_row`]), zeros in every other float. Unsplit, only the margins
/// are zeroed, not the whole row before the copy.
fn lay_out_row(source: &[f32], shift: usize, phases: usize, target: &mut [f32]) {
    if phases == 1 {
        let (left, row) = target.split_at_mut(shift);
        let (row, right) = row.split_at_mut(source.len());
        left.fill(0.0);
        row.copy_from_slice(source);
        right.fill(0.0);
    } else {
        target.fill(0.0);
        split_row(source, shift, phases, target);
    }
}

/// Lays out rows `first_row..first_row + layout.rows` of `source` (one channel) into
/// `target` (one channel of `layout`), zeros where a row is outside the source: each row
/// after `shift` zero columns, split into the layout's column phases. A window of the plane
/// [`lay_out_plane`] lays out whole, for a kernel that reads a few rows at a time.
pub(crate) fn lay_out_rows(
    source: &ArrayView2<f32>,
    first_row: isize,
    layout: PlaneLayout,
    shift: usize,
    target: &mut [f32],
) {
    assert!(target.len() >= layout.rows * layout.row_stride());
    let mut gathered = Vec::new();
    let rows = target
        .chunks_exact_mut(layout.row_stride())
        .take(layout.rows);
    for (row, target) in (first_row..).zip(rows) {
        let inside = usize::try_from(row)
            .ok()
            .filter(|&row| row < source.nrows());
        match inside {
            Some(row) => {
                let row = source.index_axis(Axis(0), row);
                let row = contiguous(&row, &mut gathered);
                lay_out_row(row, shift, layout.col_phases, target);
            }
            None => target.fill(0.0),
        }
    }
}

/// Copies rows `first..first + layout.rows` of every channel of `source`, contiguous planes
/// `plane` floats apart of rows of `layout.row_stride()` floats (columns not split), into
/// `target` (`layout`'s planes), zeros after each channel's rows: the caller's rows as they
/// are, but with the channels an odd number of cache lines apart (see
/// [`PlaneLayout::channel_stride`]), for a kernel that reads many channels in turn.
pub(crate) fn copy_rows(
    source: &[f32],
    plane: usize,
    first: usize,
    layout: PlaneLayout,
    target: &mut [f32],
) {
    let floats = layout.rows * layout.row_stride();
    let from = first * layout.row_stride();
    assert!(from + floats <= plane && target.len() == layout.image_stride());
    for (c, target) in target.chunks_exact_mut(layout.channel_stride()).enumerate() {
        let (copy, rest) = target.split_at_mut(floats);
        copy.copy_from_slice(&source[c * plane + from..][..floats]);
        rest.fill(0.0);
    }
}

/// `row` as a slice: itself when contiguous, else its values gathered into `gathered` (one
/// buffer a caller reuses for all its rows).
pub(crate) fn contiguous<'a>(
    row: &'a ArrayView1<'_, f32>,
    gathered: &'a mut Vec<f32>,
) -> &'a [f32] {
    match row.as_slice() {
        Some(row) => row,
        None => {
            gathered.clear();
            gathered.extend(row.iter().copied());
            gathered
        }
    }
}

/// Copies `source` into `target`, a row of `phases` runs of `phase_len` floats each:
/// prepared column `c = shift + i` (source column `i`) goes to run `c % phases`, at
/// `c / phases` within it. Leaves every other float of `target` as it was.
///
/// Every prepared column must fit: `(shift + source.len()).div_ceil(phases) <= phase_len`.
pub(crate) fn split_row(source: &[f32], shift: usize, phases: usize, target: &mut [f32]) {
    // Each arm inlines the body with `phases` a constant, so that its divisions and
    // remainders become shifts and multiplications: with `phases` a value, the few divisions
    // per row cost more than splitting down-s2's 64-column rows (a tenth of its layout
    // time in `div`, Zen 3, `perf annotate`).
    match phases {
        1 => split_row_into(source, shift, 1, target),
        2 => split_row_into(source, shift, 2, target),
        3 => split_row_into(source, shift, 3, target),
        4 => split_row_into(source, shift, 4, target),
        _ => split_row_into(source, shift, phases, target),
    }
}

#[inline(always)]
fn split_row_into(source: &[f32], shift: usize, phases: usize, target: &mut [f32]) {
    let phase_len = target.len() / phases;
    debug_assert!((shift + source.len()).div_ceil(phases) <= phase_len);
    if phases == 1 {
        target[shift..shift + source.len()].copy_from_slice(source);
        return;
    }
    // The columns before the first whole group of `phases` (prepared column a multiple of
    // `phases`) one by one, then whole groups, then what is left.
    let head = ((phases - shift % phases) % phases).min(source.len());
    let mut put = |column: usize, value: f32| {
        target[column % phases * phase_len + column / phases] = value;
    };
    for (i, &value) in source[..head].iter().enumerate() {
        put(shift + i, value);
    }
    let groups = source[head..].chunks_exact(phases);
    let tail = groups.remainder();
    let first_group = (shift + head) / phases;
    let group_count = groups.len();
    if phases == 2 {
        // The common stride.
        let (even, odd) = target.split_at_mut(phase_len);
        let pairs = &source[head..head + 2 * group_count];
        deal_pairs(pairs, &mut even[first_group..], &mut odd[first_group..]);
    } else if phases == 4 {
        // The stride-2 Winograd kernel's tile step: the same, four runs at a time (indexed
        // one value at a time, the split was 14% of down-s2's time there, Zen 4).
        let (first, rest) = target.split_at_mut(phase_len);
        let (second, rest) = rest.split_at_mut(phase_len);
        let (third, fourth) = rest.split_at_mut(phase_len);
        let runs = first[first_group..]
            .iter_mut()
            .zip(&mut second[first_group..])
            .zip(&mut third[first_group..])
            .zip(&mut fourth[first_group..]);
        for ((((a, b), c), d), group) in runs.zip(groups) {
            (*a, *b, *c, *d) = (group[0], group[1], group[2], group[3]);
        }
    } else {
        for (g, group) in groups.enumerate() {
            for (phase, &value) in group.iter().enumerate() {
                target[phase * phase_len + first_group + g] = value;
            }
        }
    }
    let done = head + group_count * phases;
    let mut put = |column: usize, value: f32| {
        target[column % phases * phase_len + column / phases] = value;
    };
    for (i, &value) in tail.iter().enumerate() {
        put(shift + done + i, value);
    }
}

/// Deals the pairs of `pairs` out into `first` and `second`: pair `i` to `first[i]` and
/// `second[i]`.
///
/// A function of its own so that the compiler knows the three slices apart (they are its
/// arguments) and turns the loop into vector loads, shuffles and stores: inlined into
/// `split_row_into`, where the two halves come from one `split_at_mut`, it compiled to a
/// scalar copy, a float at a time (`perf annotate`). Where the source comes from memory
/// (unet-enc-b8's input) the copy waits on its reads either way; the dense Winograd kernel
/// lays out each row twice, the second time from cache, where the instructions count.
#[inline(never)]
fn deal_pairs(pairs: &[f32], first: &mut [f32], second: &mut [f32]) {
    let count = pairs.len() / 2;
    let (first, second) = (&mut first[..count], &mut second[..count]);
    for i in 0..count {
        first[i] = pairs[2 * i];
        second[i] = pairs[2 * i + 1];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each channel's rows land at its stride, zeros after them; the stride is an odd number
    /// of whole lines for planes of one line, an even number and an odd one.
    #[test]
    fn rows_are_copied_an_odd_number_of_lines_apart() {
        for (rows, row_stride) in [(1, 16), (2, 16), (3, 16), (2, 7), (4, 20)] {
            let (channels, plane, first) = (3, 7 * 20, 2);
            let source: Vec<f32> = (0..channels * plane).map(|i| i as f32).collect();
            let layout = PlaneLayout {
                channels,
                rows,
                col_phases: 1,
                phase_len: row_stride,
            };
            let stride = layout.channel_stride();
            assert_eq!((stride % LINE_FLOATS, stride / LINE_FLOATS % 2), (0, 1));
            let mut target = vec![f32::NAN; layout.image_stride()];
            copy_rows(&source, plane, first, layout, &mut target);
            let floats = rows * row_stride;
            for c in 0..channels {
                let copy = &target[c * stride..][..stride];
                let from = c * plane + first * row_stride;
                assert_eq!(
                    copy[..floats],
                    source[from..][..floats],
                    "{rows}x{row_stride}"
                );
                assert!(copy[floats..].iter().all(|&value| value == 0.0));
            }
        }
    }

    /// Every float of a laid-out plane is its source value or zero, whatever the target held
    /// before: unsplit and split rows, with and without zero rows above and below and
    /// columns of margin, from a contiguous source and a transposed one.
    #[test]
    fn a_plane_is_its_rows_among_zeros() {
        let width: usize = 5;
        for phases in 1..=2 {
            for (above, shift, rows, below) in
                [(0, 0, 3, 0), (2, 2, 3, 1), (1, 0, 4, 2), (0, 3, 1, 3)]
            {
                let layout = PlaneLayout {
                    channels: 1,
                    rows: above + rows + below,
                    col_phases: phases,
                    phase_len: (shift + width + 3).div_ceil(phases),
                };
                let value = |r: usize, c: usize| (r * 10 + c) as f32 + 1.0;
                let standard = ndarray::Array2::from_shape_fn((rows, width), |(r, c)| value(r, c));
                let columns = ndarray::Array2::from_shape_fn((width, rows), |(c, r)| value(r, c));
                let mut expected = vec![0.0; layout.channel_stride()];
                for r in 0..rows {
                    for c in 0..width {
                        let column = shift + c;
                        let at = (above + r) * layout.row_stride()
                            + column % phases * layout.phase_len
                            + column / phases;
                        expected[at] = value(r, c);
                    }
                }
                for source in [standard.view(), columns.t()] {
                    let mut target = vec![f32::NAN; layout.channel_stride()];
                    let mut inspected = 0;
                    lay_out_plane(&source, layout, (above, shift), &mut target, |row| {
                        assert_eq!(row.len(), width);
                        inspected += 1;
                    });
                    assert_eq!(target, expected, "{layout:?} above {above} shift {shift}");
                    assert_eq!(inspected, rows);
                }
            }
        }
    }

    /// Every column lands where the definition says, for strides 1 to 4, every shift
    /// within two groups, and lengths around whole groups; the rest is untouched.
    #[test]
    fn columns_land_in_their_phase() {
        for phases in 1..=4usize {
            for shift in 0..2 * phases {
                for len in 0..3 * phases + 2 {
                    let source: Vec<f32> = (0..len).map(|i| i as f32 + 1.0).collect();
                    let phase_len = (shift + len).div_ceil(phases) + 1;
                    let mut target = vec![-1.0; phases * phase_len];
                    split_row(&source, shift, phases, &mut target);
                    let mut expected = vec![-1.0; phases * phase_len];
                    for (i, &value) in source.iter().enumerate() {
                        let column = shift + i;
                        expected[column % phases * phase_len + column / phases] = value;
                    }
                    assert_eq!(target, expected, "phases {phases} shift {shift} len {len}");
                }
            }
        }
    }
}
