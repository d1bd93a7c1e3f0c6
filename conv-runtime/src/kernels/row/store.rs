//! Writing a finished tile of accumulators into the output rows.

use std::mem::MaybeUninit;

use super::{MAX_TILE, RowJob};
use crate::isa::Simd;

/// Writes `count` tile columns of every column phase of a tile starting at tile column
/// `start`, into the job's output row `row`.
#[inline(always)]
pub(super) fn store_tile<S: Simd, const OCB: usize, const WV: usize, const CP: usize>(
    simd: S,
    acc: [[[S::Vector; WV]; OCB]; CP],
    job: &mut RowJob<'_>,
    row: usize,
    start: usize,
    count: usize,
) {
    let tile = WV * S::LANES;
    let (step, offset) = (job.out_step, job.out_offset);
    // Output column of the tile's first value, and whether the whole tile lands in the row
    // (every channel's rows are of one length, `RowJob::check_out`) as one contiguous run:
    // then it is written with vector stores.
    let first = (start * step) as isize + offset;
    let channels = job.bias.len();
    let run = usize::try_from(first)
        .ok()
        .filter(|&first| step == CP && count == tile && first + CP * tile <= job.out_row_len);
    if let Some(first) = run {
        let at = row * job.out_row_len + first;
        // Channel by channel over the `OCB` of the tile, a constant, so that every
        // accumulator is named by a constant and stays in its register: a loop over the
        // run-time channel count indexed them, and the tile went to the stack and back
        // before the output (an eighth of seed-dilated's kernel time, Intel Xeon, `perf
        // annotate`).
        for (j, vectors) in acc[0].iter().enumerate() {
            if j == channels {
                break;
            }
            // A slice of constant length (inside the row, tested above), so that the stores
            // into it need no bounds test of their own: less code in every geometry.
            let out = &mut job.out[j][at..at + CP * tile];
            if CP == 1 {
                for (v, &vector) in vectors.iter().enumerate() {
                    simd.store_uninit(&mut out[v * S::LANES..], vector);
                }
            } else {
                // Two column phases: interleave them, lane by lane, into the row.
                let pairs = vectors.iter().zip(&acc[1 % CP][j]);
                for (v, (&even, &odd)) in pairs.enumerate() {
                    let (low, high) = simd.interleave(even, odd);
                    let at = 2 * v * S::LANES;
                    simd.store_uninit(&mut out[at..], low);
                    simd.store_uninit(&mut out[at + S::LANES..], high);
                }
            }
        }
        return;
    }
    for (j, out) in job.out_rows(row).enumerate() {
        let mut buffer = [[0.0f32; MAX_TILE]; CP];
        for (p, buffer) in buffer.iter_mut().enumerate() {
            for (v, &vector) in acc[p][j].iter().enumerate() {
                simd.store(&mut buffer[v * S::LANES..], vector);
            }
        }
        scatter(&buffer, (start, count), (step, offset), out);
    }
}

/// Writes `count` tile columns of each column phase `p` of `buffer`, from tile column
/// `start`, to their output columns `(start + i) * step + p + offset` inside `out`. Out of
/// line: compiled once, not into every instance of every geometry's kernel (an instance's
/// tiles at a row's end, or whose columns are strided, come here, one row at a time).
#[inline(never)]
fn scatter(
    buffer: &[[f32; MAX_TILE]],
    (start, count): (usize, usize),
    (step, offset): (usize, isize),
    out: &mut [MaybeUninit<f32>],
) {
    for (p, buffer) in buffer.iter().enumerate() {
        // Tile column `i` lands at `base + i * step`: inside the row from `first` (the first
        // at or after column 0) up to `end` (the first at or past the row's end), worked out
        // once. Tested one value at a time, the scatter was a seventh of down-s2's backward
        // pass, whose input gradient's phases, two columns apart, all come here: 2.66 ->
        // 2.46 ms without (Intel Xeon, one thread, fastest of five alternated runs).
        let base = (start * step + p) as isize + offset;
        let first = if base >= 0 {
            0
        } else {
            base.unsigned_abs().div_ceil(step)
        };
        let end =
            usize::try_from(out.len() as isize - base).map_or(0, |ahead| ahead.div_ceil(step));
        let (first, end) = (first.min(count), end.min(count));
        if first < end {
            let at = (base + (first * step) as isize) as usize;
            let columns = out[at..].iter_mut().step_by(step);
            for (slot, &value) in columns.zip(&buffer[first..end]) {
                slot.write(value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against the definition, value by value: every tile column inside the row lands at
    /// `(start + i) * step + p + offset`, and nothing else is written, for steps 1 to 3, one
    /// and two column phases (two only where they fall in different columns, as the paired
    /// kernels' stride 2), and tiles hanging over either end of the row or past both.
    #[test]
    fn scatter_writes_each_column_inside_the_row_and_nothing_else() {
        for step in 1..=3 {
            for phases in 1..=step.min(2) {
                for (start, count, offset, len) in [
                    (0, 8, 0, 40),
                    (0, 8, -5, 40),
                    (3, 8, -2, 20),
                    (4, 8, 1, 13),
                    (0, 5, -40, 10),
                    (10, 8, 0, 9),
                    (0, 32, -3, 17),
                ] {
                    let buffer: Vec<[f32; MAX_TILE]> = (0..phases)
                        .map(|p| std::array::from_fn(|i| (100 * (p + 1) + i) as f32))
                        .collect();
                    let mut out = vec![MaybeUninit::new(-1.0f32); len];
                    scatter(&buffer, (start, count), (step, offset), &mut out);
                    let mut expected = vec![-1.0f32; len];
                    for i in 0..count {
                        for (p, values) in buffer.iter().enumerate() {
                            let x = ((start + i) * step + p) as isize + offset;
                            if (0..len as isize).contains(&x) {
                                expected[x as usize] = values[i];
                            }
                        }
                    }
                    // SAFETY: every slot starts initialised.
                    let written: Vec<f32> = out
                        .iter()
                        .map(|slot| unsafe { slot.assume_init() })
                        .collect();
                    assert_eq!(
                        written, expected,
                        "{step} {phases} {start} {count} {offset}"
                    );
                }
            }
        }
    }
}
