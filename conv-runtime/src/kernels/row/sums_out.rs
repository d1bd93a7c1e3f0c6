//! The channel-vector kernel's running sums into the output rows: its tiles hold a
//! pixel's channels together, the output a channel's pixels. Compiled once per instruction
//! set, in this crate, rather than inlined into every geometry's kernel.

use std::mem::MaybeUninit;
use std::ops::Range;

use crate::isa::{Family, Isa, Kernel, Simd};
use crate::memory::transpose::{MOST_LANES, transpose_tile};

/// The family of [`SumsOut`].
pub(crate) struct SumsFamily;

impl Family for SumsFamily {
    type Job<'a> = SumsJob<'a>;
}

/// One output row's run of sums.
pub(crate) struct SumsJob<'a> {
    /// Consecutive tile columns' sums, `block` floats each, the output channels first.
    pub sums: &'a [f32],
    pub block: usize,
    /// The first sums' tile column: tile column `c` is output column `c * out_step +
    /// out_offset`, those outside the row dropped.
    pub first_column: usize,
    pub out_step: usize,
    pub out_offset: isize,
    /// The row of each channel, all of one length, at most `block` of them.
    pub out: &'a mut [&'a mut [MaybeUninit<f32>]],
}

/// Writes a [`SumsJob`]. Where the columns are consecutive (a convolution's rows), `LANES`
/// pixels by `LANES` channels at a time are turned around in registers
/// ([`transpose_tile`]); the rest go one value at a time, over the columns inside the row
/// worked out once. One value at a time with a test, a multiplication and a branch per
/// float, the copy out was 6% of aspp-d12's forward pass (Intel Xeon, `perf annotate`, one
/// thread); turned around, aspp-d12's forward ran 4.79 -> 4.57 ms at one thread and 2.46
/// -> 2.28 at two, its backward 9.58 -> 9.27 (fastest of six and of four alternated runs).
pub(crate) struct SumsOut;

impl Kernel<SumsFamily> for SumsOut {
    #[inline(always)]
    fn run<S: Simd>(simd: S, job: &mut SumsJob<'_>) {
        let (lanes, block) = (S::LANES, job.block);
        let (step, offset) = (job.out_step, job.out_offset);
        let count = job.out.len();
        assert!(count <= block);
        let row_len = job.out.first().map_or(0, |out| out.len());
        let pixels = job.sums.len() / block;
        let inside = inside_row(job.first_column, pixels, (step, offset), row_len);
        let first_x = ((job.first_column + inside.start) * step).wrapping_add_signed(offset);
        let sums = &job.sums[inside.start * block..inside.end * block];
        // Tiles on the vector sets only, as in `Transpose`.
        let tiles = const { !matches!(S::ISA, Isa::Portable) };
        let (whole_pixels, whole_channels) = if tiles && step == 1 {
            (inside.len() / lanes * lanes, count / lanes * lanes)
        } else {
            (0, 0)
        };
        for p in (0..whole_pixels).step_by(lanes) {
            for j in (0..whole_channels).step_by(lanes) {
                let mut tile = [simd.splat(0.0); MOST_LANES];
                for (i, vector) in tile[..lanes].iter_mut().enumerate() {
                    let pixel = &sums[(p + i) * block + j..][..lanes];
                    // SAFETY: `pixel` holds `LANES` floats.
                    *vector = unsafe { simd.load(pixel.as_ptr()) };
                }
                transpose_tile(simd, &mut tile);
                for (out, &vector) in job.out[j..j + lanes].iter_mut().zip(&tile) {
                    simd.store_uninit(&mut out[first_x + p..], vector);
                }
            }
        }
        for (channel, out) in job.out.iter_mut().enumerate() {
            assert_eq!(out.len(), row_len, "a job's output rows are one length");
            let done = if channel < whole_channels {
                whole_pixels
            } else {
                0
            };
            let first = first_x.saturating_add(done * step).min(row_len);
            let slots = out[first..].iter_mut().step_by(step);
            for (slot, pixel) in slots.zip(sums[done * block..].chunks_exact(block)) {
                slot.write(pixel[channel]);
            }
        }
    }
}

/// Which of `pixels` tile columns from `first_column` land inside an output row of
/// `row_len` columns, tile column `c` at output column `c * step + offset`.
fn inside_row(
    first_column: usize,
    pixels: usize,
    (step, offset): (usize, isize),
    row_len: usize,
) -> Range<usize> {
    // Tile columns `c` with `0 <= c * step + offset < row_len`: from `ceil(-offset / step)`
    // up to `ceil((row_len - offset) / step)`.
    let lowest = usize::try_from(-offset).unwrap_or(0).div_ceil(step);
    let beyond = usize::try_from(row_len as isize - offset)
        .unwrap_or(0)
        .div_ceil(step);
    let start = lowest.saturating_sub(first_column).min(pixels);
    let end = beyond.saturating_sub(first_column).clamp(start, pixels);
    start..end
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::isa::Compiled;

    /// On every instruction set, every sum lands at its channel's row and column and
    /// nothing else is written: runs of 1 to 40 tile columns (whole tiles of 8 and 16
    /// lanes and what is left), 1 to 32 channels of blocks of 16 and 32 (whole vectors of
    /// channels and fewer), steps 1 and 2, and runs that start before or end past the row.
    #[test]
    fn every_sum_lands_in_its_channels_row_on_every_instruction_set() {
        const ROW_LEN: usize = 37;
        for isa in Isa::available() {
            let kernel = Compiled::for_isa::<SumsOut>(isa);
            for (block, count) in [(16, 1), (16, 9), (16, 16), (32, 17), (32, 32)] {
                for pixels in [1, 8, 16, 21, 32, 40] {
                    for (step, offset, first_column) in
                        [(1, 0, 0), (1, 0, 5), (1, -3, 0), (2, -1, 3)]
                    {
                        let sums: Vec<f32> = (0..pixels * block).map(|i| i as f32 + 0.5).collect();
                        let mut rows = vec![[MaybeUninit::new(-1.0f32); ROW_LEN]; count];
                        let mut out: Vec<&mut [MaybeUninit<f32>]> =
                            rows.iter_mut().map(|row| &mut row[..]).collect();
                        kernel.run(&mut SumsJob {
                            sums: &sums,
                            block,
                            first_column,
                            out_step: step,
                            out_offset: offset,
                            out: &mut out,
                        });
                        for (channel, row) in rows.iter().enumerate() {
                            let mut expected = [-1.0f32; ROW_LEN];
                            for p in 0..pixels {
                                let x = ((first_column + p) * step) as isize + offset;
                                if let Ok(x) = usize::try_from(x)
                                    && x < ROW_LEN
                                {
                                    expected[x] = sums[p * block + channel];
                                }
                            }
                            // SAFETY: every float of `rows` was initialised before the call.
                            let written: Vec<f32> = row
                                .iter()
                                .map(|value| unsafe { value.assume_init() })
                                .collect();
                            assert_eq!(
                                written, expected,
                                "{isa}: block {block}, channel {channel} of {count}, {pixels} \
                                 pixels, step {step}, offset {offset}, from {first_column}"
                            );
                        }
                    }
                }
            }
        }
    }

    /// The columns `inside_row` keeps are exactly those a test per column keeps, for the
    /// steps and offsets of convolutions (1, 0) and of transposed convolutions' phases,
    /// runs starting before, inside and past the row.
    #[test]
    fn the_columns_inside_a_row_are_those_a_test_per_column_keeps() {
        for step in 1..=4usize {
            for offset in -9..=3isize {
                for first_column in 0..12 {
                    for pixels in 0..12 {
                        for row_len in [0, 1, 5, 16] {
                            let lands = |i: usize| {
                                let x = ((first_column + i) * step) as isize + offset;
                                (0..row_len as isize).contains(&x)
                            };
                            let inside = inside_row(first_column, pixels, (step, offset), row_len);
                            let expected: Vec<usize> = (0..pixels).filter(|&i| lands(i)).collect();
                            assert_eq!(
                                inside.collect::<Vec<_>>(),
                                expected,
                                "step {step} offset {offset} from {first_column}, {pixels} in \
                                 {row_len}"
                            );
                        }
                    }
                }
            }
        }
    }
}
