//! The layout every kernel reads its input operand in: per channel, rows of `col_phases`
//! runs, the row's columns dealt out by column stride, so that the columns one output row's
//! taps read are contiguous; and splitting a row into it.

use ndarray::ArrayView1;

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

    pub fn channel_stride(&self) -> usize {
        self.rows * self.row_stride()
    }

    /// Floats of one image.
    pub fn image_stride(&self) -> usize {
        self.channels * self.channel_stride()
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
        // The common stride: a loop the compiler turns into vector shuffles.
        let (even, odd) = target.split_at_mut(phase_len);
        let runs = even[first_group..].iter_mut().zip(&mut odd[first_group..]);
        for ((even, odd), pair) in runs.zip(groups) {
            *even = pair[0];
            *odd = pair[1];
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

#[cfg(test)]
mod tests {
    use super::*;

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
