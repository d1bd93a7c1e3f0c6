//! The row kernel with the taps as run-time values: compiled once, in this crate, whatever
//! the geometries.

use super::select::{Selected, blocked};
use super::store::store_tile;
use super::{MAX_TILE, RowFamily, RowJob};
use crate::isa::{Detected, Kernel, Simd};

/// The kernel with run-time taps on the detected set, for a layer of `out_per_group`
/// output channels per group: what runs filters of more taps than the specialised kernels
/// unroll ([`MAX_UNROLLED_TAPS`](super::select::MAX_UNROLLED_TAPS)). One column phase per
/// call. The blockings are the specialised kernel's wide and narrow ones, with the
/// accumulators within each set's registers.
pub(super) fn taps_of_any_count(detected: Detected, out_per_group: usize) -> Selected {
    let wide = out_per_group >= 4;
    match detected {
        #[cfg(target_arch = "x86_64")]
        Detected::Avx512(simd) if out_per_group >= 8 => {
            blocked::<RunTimeRow<8, 2, 1>, _>(simd, 8, 2, 1)
        }
        #[cfg(target_arch = "x86_64")]
        Detected::Avx512(simd) if wide => blocked::<RunTimeRow<4, 2, 1>, _>(simd, 4, 2, 1),
        #[cfg(target_arch = "x86_64")]
        Detected::Avx512(simd) => blocked::<RunTimeRow<1, 4, 1>, _>(simd, 1, 4, 1),
        #[cfg(target_arch = "x86_64")]
        Detected::Avx2(simd) if wide => blocked::<RunTimeRow<6, 2, 1>, _>(simd, 6, 2, 1),
        #[cfg(target_arch = "x86_64")]
        Detected::Avx2(simd) => blocked::<RunTimeRow<1, 4, 1>, _>(simd, 1, 4, 1),
        #[cfg(target_arch = "aarch64")]
        Detected::Neon(simd) if wide => blocked::<RunTimeRow<4, 4, 1>, _>(simd, 4, 4, 1),
        #[cfg(target_arch = "aarch64")]
        Detected::Neon(simd) => blocked::<RunTimeRow<1, 8, 1>, _>(simd, 1, 8, 1),
        Detected::Portable(simd) if wide => blocked::<RunTimeRow<4, 1, 1>, _>(simd, 4, 1, 1),
        Detected::Portable(simd) => blocked::<RunTimeRow<1, 2, 1>, _>(simd, 1, 2, 1),
    }
}

/// The kernel with run-time taps, `OCB` output channels by `WV` vectors, `CP` column phases
/// per call.
pub(crate) struct RunTimeRow<const OCB: usize, const WV: usize, const CP: usize>;

impl<const OCB: usize, const WV: usize, const CP: usize> Kernel<RowFamily>
    for RunTimeRow<OCB, WV, CP>
{
    #[inline(always)]
    fn run<S: Simd>(simd: S, job: &mut RowJob<'_>) {
        row_with_run_time_taps::<S, OCB, WV, CP>(simd, job);
    }
}

/// The row kernel with the taps as run-time values (`job.taps`): compiled once for every
/// geometry, with bounds-checked reads. The portable path runs it: that path is the fallback
/// for CPUs without the vector units the specialised kernels target, so its speed is not
/// worth the compile time of specialising it for every geometry.
#[inline(always)]
fn row_with_run_time_taps<S: Simd, const OCB: usize, const WV: usize, const CP: usize>(
    simd: S,
    job: &mut RowJob<'_>,
) {
    const { assert!(CP == 1 || CP == 2) };
    const { assert!(CP * WV * S::LANES <= MAX_TILE) };
    let layout = job.input.layout;
    let taps = job.taps;
    let tile = WV * S::LANES;
    assert!(job.bias.len() <= OCB);
    job.check_out();
    assert_eq!(job.rows, 1, "one row per call");
    let (input, weights) = (job.input.data, job.weights);
    let filter = taps.filter_len * OCB;
    let phases = &taps.phases[job.phase..job.phase + CP];
    let mut start = job.cols.start;
    while start < job.cols.end {
        let bias = |j: usize| simd.splat(job.bias.get(j).copied().unwrap_or(0.0));
        let mut acc: [[[S::Vector; WV]; OCB]; CP] = [std::array::from_fn(|j| [bias(j); WV]); CP];
        for (index, channel) in job.channels.clone().enumerate() {
            let channel = &input[channel * layout.channel_stride()..][..layout.channel_stride()];
            let weights = &weights[index * filter..][..filter];
            for (acc, phase) in acc.iter_mut().zip(phases) {
                for tap in phase.taps {
                    // Rows outside the prepared input are padding: their products are zeros.
                    let Ok(row) = usize::try_from(job.origin_row + tap.row) else {
                        continue;
                    };
                    if row >= layout.rows {
                        continue;
                    }
                    let column = usize::try_from(tap.col + taps.col_shift)
                        .expect("taps read the prepared row's columns");
                    let row = &channel[row * layout.row_stride()..][..layout.row_stride()];
                    let phase_row =
                        &row[column % taps.col_stride * layout.phase_len..][..layout.phase_len];
                    let x = &phase_row[column / taps.col_stride + start..][..tile];
                    let weights = &weights[tap.weight * OCB..][..OCB];
                    for (acc, &weight) in acc.iter_mut().zip(weights) {
                        let weight = simd.splat(weight);
                        for (acc, x) in acc.iter_mut().zip(x.chunks_exact(S::LANES)) {
                            // SAFETY: `x` is a slice of `LANES` floats.
                            let x = unsafe { simd.load(x.as_ptr()) };
                            *acc = simd.mul_add(weight, x, *acc);
                        }
                    }
                }
            }
        }
        let count = (job.cols.end - start).min(tile);
        store_tile::<S, OCB, WV, CP>(simd, acc, job, 0, start, count);
        start += tile;
    }
}
