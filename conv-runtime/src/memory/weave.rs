//! Staged rows woven into output rows in vectors: a staged row holds each column class's
//! outputs as one run (class `b`'s outputs are columns `b, b + n, b + 2n, ...`), and the
//! output row is those `n` runs interleaved: the Winograd lattice's classes, and the
//! two-tap family's column phases. For `n` a power of two that is a perfect shuffle: `log2(n)` rounds
//! of the two-vector [`Simd::interleave`] turn one vector of each run into `n` vectors of
//! the output row. Run float by float, through a table or stepping `n` apart, the scatter
//! was a tenth of context-d4's time (Intel Xeon, `perf record`, one thread).

use std::mem::MaybeUninit;

use crate::isa::{Compiled, Family, Kernel, Simd};

/// The weave's family: every kernel computes one [`WeaveJob`].
pub(crate) struct WeaveFamily;

impl Family for WeaveFamily {
    type Job<'a> = WeaveJob<'a>;
}

/// Column classes the weave interleaves in vectors; its callers scatter other counts
/// through their tables.
pub(crate) fn weaves(classes: usize) -> bool {
    matches!(classes, 2 | 4 | 8)
}

/// Staged rows to write to their output rows.
pub(crate) struct WeaveJob<'a> {
    /// The staged rows, `staged_row` floats each, one per entry of `out`.
    pub staged: &'a [f32],
    pub staged_row: usize,
    /// Where each class's run starts in a staged row; as many classes as [`weaves`] allows.
    pub runs: &'a [usize],
    /// The fewest outputs of any class: the weave covers that many of each in vectors.
    pub shortest: usize,
    /// For the columns past the vectors: output column `x` is `staged[staged_at[x]]`.
    pub staged_at: &'a [usize],
    /// Each staged row's output row, `None` for a row past the output's end.
    pub out: &'a mut [Option<&'a mut [MaybeUninit<f32>]>],
}

/// Writes `job`'s staged rows to their output rows: woven in vectors by `weave` where there
/// is one (for 2, 4 or 8 classes, see [`weaves`]), else column by column through the table,
/// or, for one class, whose staged row is its output row, as a copy.
pub(crate) fn write_rows(weave: Option<Compiled<WeaveFamily>>, job: &mut WeaveJob<'_>) {
    if let Some(weave) = weave {
        weave.run(job);
        return;
    }
    let staged_rows = job.staged.chunks_exact(job.staged_row);
    for (staged, out) in staged_rows.zip(job.out.iter_mut()) {
        let Some(out) = out else { continue };
        if job.runs.len() == 1 {
            for (slot, &value) in out.iter_mut().zip(staged) {
                slot.write(value);
            }
        } else {
            for (slot, &at) in out.iter_mut().zip(job.staged_at) {
                slot.write(staged[at]);
            }
        }
    }
}

/// The kernel: written once, compiled for each instruction set.
pub(crate) struct Weave;

impl Kernel<WeaveFamily> for Weave {
    #[inline(always)]
    fn run<S: Simd>(simd: S, job: &mut WeaveJob<'_>) {
        match job.runs.len() {
            2 => weave_rows::<S, 2>(simd, job),
            4 => weave_rows::<S, 4>(simd, job),
            8 => weave_rows::<S, 8>(simd, job),
            classes => panic!("the weave takes 2, 4 or 8 classes, not {classes}"),
        }
    }
}

/// [`Weave`] for `N` classes.
#[inline(always)]
fn weave_rows<S: Simd, const N: usize>(simd: S, job: &mut WeaveJob<'_>) {
    let runs: [usize; N] = job.runs.try_into().expect("N runs");
    let staged_rows = job.staged.chunks_exact(job.staged_row);
    assert_eq!(staged_rows.len(), job.out.len());
    for (staged, out) in staged_rows.zip(job.out.iter_mut()) {
        let Some(out) = out else { continue };
        let mut index = 0;
        while index + S::LANES <= job.shortest {
            let mut vectors = [simd.splat(0.0); N];
            for (vector, &run) in vectors.iter_mut().zip(&runs) {
                let lanes = &staged[run + index..run + index + S::LANES];
                // SAFETY: `lanes` holds `LANES` floats.
                *vector = unsafe { simd.load(lanes.as_ptr()) };
            }
            // Round by round, vector `i` pairs with vector `i + N / 2`: after `log2(N)`
            // rounds, vector `v` holds output columns `N * index + LANES * v ..` in order.
            let mut width = 1;
            while width < N {
                let mut woven = vectors;
                for i in 0..N / 2 {
                    let (low, high) = simd.interleave(vectors[i], vectors[i + N / 2]);
                    woven[2 * i] = low;
                    woven[2 * i + 1] = high;
                }
                vectors = woven;
                width *= 2;
            }
            let start = N * index;
            for (v, &vector) in vectors.iter().enumerate() {
                simd.store_uninit(&mut out[start + v * S::LANES..], vector);
            }
            index += S::LANES;
        }
        let woven = (N * index).min(out.len());
        for (slot, &at) in out[woven..].iter_mut().zip(&job.staged_at[woven..]) {
            slot.write(staged[at]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::isa::Isa;

    /// Lays out three staged rows of `width` columns in `classes` classes (class `b` holds
    /// columns `b, b + classes, ...`, its run after the previous class's, one float of
    /// slack between them), has `write` write them with the middle row marked past the
    /// output's end, and checks that each output column is the staged float the table
    /// names and the middle row is left alone.
    fn check_rows(classes: usize, width: usize, write: impl FnOnce(&mut WeaveJob<'_>), what: &str) {
        let counts: Vec<usize> = (0..classes)
            .map(|b| width.saturating_sub(b).div_ceil(classes))
            .collect();
        let mut runs = Vec::new();
        let mut staged_row = 0;
        for &count in &counts {
            runs.push(staged_row);
            staged_row += count + 1;
        }
        staged_row += 32;
        let staged_at: Vec<usize> = (0..width)
            .map(|x| runs[x % classes] + x / classes)
            .collect();
        let staged: Vec<f32> = (0..3 * staged_row).map(|i| i as f32).collect();
        let mut rows = vec![MaybeUninit::new(-1.0f32); 3 * width];
        let mut out: Vec<Option<&mut [MaybeUninit<f32>]>> =
            rows.chunks_exact_mut(width).map(Some).collect();
        out[1] = None;
        write(&mut WeaveJob {
            staged: &staged,
            staged_row,
            runs: &runs,
            shortest: *counts.iter().min().expect("classes"),
            staged_at: &staged_at,
            out: &mut out,
        });
        for (row, written) in rows.chunks_exact(width).enumerate() {
            for (x, slot) in written.iter().enumerate() {
                // SAFETY: every slot starts initialised.
                let value = unsafe { slot.assume_init() };
                let expected = if row == 1 {
                    -1.0
                } else {
                    staged[row * staged_row + staged_at[x]]
                };
                assert_eq!(value, expected, "{what} {classes} {width} {row} {x}");
            }
        }
    }

    /// On every set: for 2, 4 and 8 classes and rows of whole vectors, shorter and longer
    /// ones, the weave writes each output column from its class's run.
    #[test]
    fn the_weave_writes_each_column_from_its_class_run() {
        for isa in Isa::available() {
            let weave = Compiled::<WeaveFamily>::for_isa::<Weave>(isa);
            for classes in [2, 4, 8] {
                for width in [1usize, 7, 16, 33, 64, 67, 130, 257] {
                    check_rows(classes, width, |job| weave.run(job), isa.name());
                }
            }
        }
    }

    /// Without the weave, for one class (a copy) and for others: each output column comes
    /// through the table.
    #[test]
    fn without_the_weave_each_column_comes_through_the_table() {
        for classes in [1, 2, 3, 5] {
            for width in [1usize, 7, 11, 33] {
                check_rows(classes, width, |job| write_rows(None, job), "no weave");
            }
        }
    }
}
