//! Channel runs turned into pixels, channels last: the transposition that lays out the
//! weight gradient's grad operand and sums, and the two-tap family's input.

use crate::isa::{Family, Isa, Kernel, Simd};

/// A staged run of a block's channels, to be laid out pixel after pixel.
pub(crate) struct TransposeJob<'a> {
    /// Channel `j`'s run at `stage[j * stride..]`, `channels` of them (the last may end
    /// after the run's pixels).
    pub stage: &'a [f32],
    pub stride: usize,
    pub channels: usize,
    /// The run's pixels, each `block` floats: from `offset`, its `channels` values, then
    /// zeros to the pixel's end (what comes before `offset` is left as it was).
    pub block: usize,
    pub offset: usize,
    pub target: &'a mut [f32],
}

/// The transposition's family: every kernel lays out one [`TransposeJob`].
pub(crate) struct TransposeFamily;

impl Family for TransposeFamily {
    type Job<'a> = TransposeJob<'a>;
}

/// The transposition in registers: `LANES` channels by `LANES` pixels at a time, loaded as
/// one vector per channel and turned into one vector per pixel ([`transpose_tile`]). The
/// channels and pixels past whole tiles go one value at a time.
///
/// One value at a time throughout, the transposition was 6% of unet-up's backward: in
/// registers, that backward is 1.03x faster (Zen 4, one thread, nine alternated rounds,
/// medians 6.33 -> 6.17 and 6.13 -> 5.95 ms), dcgan-up's 1.01x. Reading the planes
/// directly instead of the staged runs was slower again (6.01 -> 6.19 ms).
pub(crate) struct Transpose;

/// Lanes of the widest vector: the tile's vectors are kept in an array this long.
pub(crate) const MOST_LANES: usize = 16;

/// Transposes the `LANES x LANES` tile in the first `LANES` vectors of `tile` (vector `i`,
/// lane `k` becomes vector `k`, lane `i`) by `log2(LANES)` rounds of interleaving: after
/// each, vector `i` interleaves vectors `i / 2` and `i / 2 + LANES / 2` of the round before,
/// a perfect shuffle, whose `log2(LANES)`-th power is the transpose.
#[inline(always)]
pub(crate) fn transpose_tile<S: Simd>(simd: S, tile: &mut [S::Vector; MOST_LANES]) {
    let lanes = S::LANES;
    const { assert!(S::LANES <= MOST_LANES && S::LANES.is_power_of_two()) };
    for _ in 0..lanes.trailing_zeros() {
        let last = *tile;
        for i in 0..lanes / 2 {
            (tile[2 * i], tile[2 * i + 1]) = simd.interleave(last[i], last[i + lanes / 2]);
        }
    }
}

impl Kernel<TransposeFamily> for Transpose {
    #[inline(always)]
    fn run<S: Simd>(simd: S, job: &mut TransposeJob<'_>) {
        let lanes = S::LANES;
        const { assert!(S::LANES <= MOST_LANES && S::LANES.is_power_of_two()) };
        let (stride, count, block, offset) = (job.stride, job.channels, job.block, job.offset);
        let pixels = job.target.len() / block;
        // The last channel's run need only hold the pixels.
        let staged = count
            .checked_sub(1)
            .map_or(0, |last| last * stride + pixels);
        assert!(offset + count <= block && job.stage.len() >= staged && pixels <= stride);
        // Tiles on the vector sets only: the portable set's interleaving is array code, no
        // faster than the values one at a time and larger.
        let tiles = const { !matches!(S::ISA, Isa::Portable) };
        let whole_pixels = if tiles { pixels / lanes * lanes } else { 0 };
        let whole_channels = count / lanes * lanes;
        for p in (0..whole_pixels).step_by(lanes) {
            for j in (0..whole_channels).step_by(lanes) {
                let mut tile = [simd.splat(0.0); MOST_LANES];
                for (i, vector) in tile[..lanes].iter_mut().enumerate() {
                    let run = &job.stage[(j + i) * stride + p..][..lanes];
                    // SAFETY: `run` holds `LANES` floats.
                    *vector = unsafe { simd.load(run.as_ptr()) };
                }
                transpose_tile(simd, &mut tile);
                for (k, &vector) in tile[..lanes].iter().enumerate() {
                    simd.store(&mut job.target[(p + k) * block + offset + j..], vector);
                }
            }
        }
        for (p, pixel) in job.target.chunks_exact_mut(block).enumerate() {
            let pixel = &mut pixel[offset..];
            let done = if p < whole_pixels { whole_channels } else { 0 };
            for (j, value) in pixel[..count].iter_mut().enumerate().skip(done) {
                *value = job.stage[j * stride + p];
            }
            pixel[count..].fill(0.0);
        }
    }
}
