//! Writing a finished tile of accumulators into the output rows.

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
    // as one contiguous run: then it is written with vector stores.
    let first = (start * step) as isize + offset;
    let contiguous = step == CP && count == tile;
    let channels = job.bias.len();
    for (j, out) in job.out[row * channels..][..channels].iter_mut().enumerate() {
        let run = usize::try_from(first)
            .ok()
            .filter(|&first| contiguous && first + CP * tile <= out.len());
        match run {
            Some(first) if CP == 1 => {
                for (v, &vector) in acc[0][j].iter().enumerate() {
                    simd.store_uninit(&mut out[first + v * S::LANES..], vector);
                }
            }
            Some(first) => {
                // Two column phases: interleave them, lane by lane, into the row.
                let pairs = acc[0][j].iter().zip(&acc[1 % CP][j]);
                for (v, (&even, &odd)) in pairs.enumerate() {
                    let (low, high) = simd.interleave(even, odd);
                    let at = first + 2 * v * S::LANES;
                    simd.store_uninit(&mut out[at..], low);
                    simd.store_uninit(&mut out[at + S::LANES..], high);
                }
            }
            None => {
                let mut buffer = [[0.0f32; MAX_TILE]; CP];
                for (p, buffer) in buffer.iter_mut().enumerate() {
                    for (v, &vector) in acc[p][j].iter().enumerate() {
                        simd.store(&mut buffer[v * S::LANES..], vector);
                    }
                }
                for i in 0..count {
                    for (p, buffer) in buffer.iter().enumerate() {
                        let x = ((start + i) * step + p) as isize + offset;
                        if let Some(slot) = usize::try_from(x).ok().and_then(|x| out.get_mut(x)) {
                            slot.write(buffer[i]);
                        }
                    }
                }
            }
        }
    }
}
