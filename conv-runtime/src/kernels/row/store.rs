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
    // Output column of the tile's first value, and whether the whole tile lands in every
    // row as one contiguous run: then it is written with vector stores.
    let first = (start * step) as isize + offset;
    let channels = job.bias.len();
    let outs = &mut job.out[row * channels..][..channels];
    let run = usize::try_from(first).ok().filter(|&first| {
        step == CP && count == tile && outs.iter().all(|out| first + CP * tile <= out.len())
    });
    if let Some(first) = run {
        // Channel by channel over the `OCB` of the tile, a constant, so that every
        // accumulator is named by a constant and stays in its register: a loop over the
        // run-time channel count indexed them, and the tile went to the stack and back
        // before the output (an eighth of seed-dilated's kernel time, Intel Xeon, `perf
        // annotate`).
        for (j, vectors) in acc[0].iter().enumerate() {
            let Some(out) = outs.get_mut(j) else { break };
            // A slice of constant length (inside the row, tested above), so that the stores
            // into it need no bounds test of their own: less code in every geometry.
            let out = &mut out[first..first + CP * tile];
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
    for (j, out) in outs.iter_mut().enumerate() {
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
    for i in 0..count {
        for (p, buffer) in buffer.iter().enumerate() {
            let x = ((start + i) * step + p) as isize + offset;
            if let Some(slot) = usize::try_from(x).ok().and_then(|x| out.get_mut(x)) {
                slot.write(buffer[i]);
            }
        }
    }
}
