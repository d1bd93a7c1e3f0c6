//! The plane kernel: one channel's output plane, all rows, from its input plane.

use std::mem::MaybeUninit;

use crate::isa::{Family, Isa, Kernel, Simd};

/// The depthwise kernels' family: every kernel computes one [`PlaneJob`].
pub(crate) struct PlaneFamily;

impl Family for PlaneFamily {
    type Job<'a> = PlaneJob<'a>;
}

/// One channel of one image.
pub(crate) struct PlaneJob<'a> {
    /// The channel's input plane, rows of `in_w` floats.
    pub source: &'a [f32],
    pub in_w: usize,
    /// The padded plane the taps read, rows of `row_stride` floats: zero everywhere but where
    /// the kernel copies `source`, its row `r` from index `first + r * row_stride` on. Only
    /// that part is written, so the zeros of a buffer reused for every channel are written
    /// once.
    pub padded: &'a mut [f32],
    pub row_stride: usize,
    pub first: usize,
    /// Each tap's offset in `padded` from its output's window origin, and its weight, row
    /// by row of the filter: `kernel_rows` rows of taps, `row_dilation` padded rows apart.
    pub offsets: &'a [usize],
    pub kernel_rows: usize,
    pub row_dilation: usize,
    pub weights: &'a [f32],
    pub bias: f32,
    /// The output plane, rows of `out_w` outputs; possibly uninitialised: the kernel writes
    /// every element.
    pub out: &'a mut [MaybeUninit<f32>],
    pub out_w: usize,
}

/// The plane kernel: copies the channel's input into the padded plane, then computes the
/// output in chunks of sums held in registers while every tap adds its weight times a
/// shifted load of the padded rows: bands of rows that share their input rows where the
/// filter is three rows tall (or five, on the sets of 32 registers), row by row otherwise.
pub(crate) struct Plane;

/// Vectors per chunk: eight accumulators, with room for the loads and the broadcast weight
/// in the 16 registers of AVX2.
const CHUNK: usize = 8;

/// Floats of the buffer a row's last, partial chunk is stored through: its vectors, at the
/// widest (AVX-512's 16 lanes).
const TAIL_BUFFER: usize = CHUNK * 16;

impl Kernel<PlaneFamily> for Plane {
    #[inline(always)]
    fn run<S: Simd>(simd: S, job: &mut PlaneJob<'_>) {
        copy_in(simd, job);
        convolve(simd, job);
    }
}

/// Copies `source` into the padded plane, vector by vector: a library call per row (a row of
/// a depthwise layer is a few dozen floats) cost more than the copy.
#[inline(always)]
fn copy_in<S: Simd>(simd: S, job: &mut PlaneJob<'_>) {
    let in_w = job.in_w;
    if in_w == 0 {
        return;
    }
    for (r, source) in job.source.chunks_exact(in_w).enumerate() {
        let target = &mut job.padded[job.first + r * job.row_stride..][..in_w];
        let mut sources = source.chunks_exact(S::LANES);
        let mut targets = target.chunks_exact_mut(S::LANES);
        for (source, target) in (&mut sources).zip(&mut targets) {
            // SAFETY: `source` holds `LANES` floats.
            let vector = unsafe { simd.load(source.as_ptr()) };
            simd.store(target, vector);
        }
        for (target, &value) in targets.into_remainder().iter_mut().zip(sources.remainder()) {
            *target = value;
        }
    }
}

/// Every output row: filters three rows tall (five on the sets of 32 registers) in bands of
/// rows that share input rows, any other filter, and the portable set, row by row.
#[inline(always)]
fn convolve<S: Simd>(simd: S, job: &mut PlaneJob<'_>) {
    let out_w = job.out_w;
    if out_w == 0 {
        return;
    }
    let out_h = job.out.len() / out_w;
    assert_eq!(job.out.len(), out_h * out_w);
    assert_eq!(job.offsets.len(), job.weights.len());
    // Every load below reads `LANES` floats at most `out_w` rounded up to whole vectors
    // from a row start, at a tap's offset: all inside `padded`.
    if let Some(&furthest) = job.offsets.iter().max() {
        let reach = (out_h - 1) * job.row_stride + furthest + out_w.next_multiple_of(S::LANES);
        assert!(
            reach <= job.padded.len(),
            "taps read inside the padded plane"
        );
    }
    let taps = Taps {
        offsets: job.offsets,
        weights: job.weights,
        bias: job.bias,
    };
    let plane = Padded {
        padded: &*job.padded,
        row_stride: job.row_stride,
    };
    let dilation = job.row_dilation;
    // Bands on the vector sets only: the portable set's vectors are arrays, whose unrolled
    // bands would be large code for no one's speed.
    let banded = const { !matches!(S::ISA, Isa::Portable) } && dilation > 0;
    match job.kernel_rows {
        _ if !banded => in_pairs(simd, plane, &taps, job.out, out_w),
        3 => in_bands::<S, 3>(simd, plane, &taps, dilation, job.out, out_w),
        // Five weights a filter column beside the sums: too many for AVX2's registers
        // (a 5x5 layer of 32 channels on 64 x 64: AVX-512 0.111 -> 0.097 ms, AVX2 0.111 ->
        // 0.115 in bands; Zen 4, one thread).
        5 if const { has_32_registers::<S>() } => {
            in_bands::<S, 5>(simd, plane, &taps, dilation, job.out, out_w)
        }
        _ => in_pairs(simd, plane, &taps, job.out, out_w),
    }
}

/// The padded plane the taps read, rows of `row_stride` floats.
#[derive(Clone, Copy)]
struct Padded<'a> {
    padded: &'a [f32],
    row_stride: usize,
}

/// The filter: each tap's offset in the padded plane from its output's window origin and its
/// weight, and the bias every output starts from.
struct Taps<'a> {
    offsets: &'a [usize],
    weights: &'a [f32],
    bias: f32,
}

/// Bands of `BAND` output rows `dilation` apart: such rows read overlapping input rows
/// (a filter `KH` rows tall reads `BAND + KH - 1` rows for `BAND` output rows), so each
/// vector loaded feeds up to `KH` sums, where row by row it feeds one. The rows left over in
/// each class of rows (those `dilation` apart) run one by one.
///
/// The rows' outputs are found by index, not by iterators over the plane's rows: an
/// iterator's `next` per band row, called out of line, cost depthwise-d2 a fifth of its time
/// (Zen 4, one thread, 0.202 -> 0.158 ms).
#[inline(always)]
fn in_bands<S: Simd, const KH: usize>(
    simd: S,
    plane: Padded<'_>,
    taps: &Taps<'_>,
    dilation: usize,
    out: &mut [MaybeUninit<f32>],
    out_w: usize,
) {
    let kw = taps.offsets.len() / KH;
    let filter = (&taps.offsets[..kw], taps.weights, taps.bias);
    let padded = plane.padded;
    let step = dilation * plane.row_stride;
    let width = band_vectors::<S>() * S::LANES;
    let out_h = out.len() / out_w;
    for class in 0..dilation.min(out_h) {
        let class_rows = (out_h - class).div_ceil(dilation);
        let banded_rows = class_rows - class_rows % BAND;
        for first in (0..banded_rows).step_by(BAND) {
            let y = class + first * dilation;
            let mut x = 0;
            while x < out_w {
                let len = width.min(out_w - x);
                let at = (y * plane.row_stride + x, step);
                let rows = BandRows {
                    out: &mut *out,
                    at: y * out_w + x,
                    step: dilation * out_w,
                    len,
                };
                match len.div_ceil(S::LANES) {
                    1 => band::<S, KH, 1>(simd, padded, at, filter, rows),
                    2 => band::<S, KH, 2>(simd, padded, at, filter, rows),
                    3 => band::<S, KH, 3>(simd, padded, at, filter, rows),
                    _ => band::<S, KH, 4>(simd, padded, at, filter, rows),
                }
                x += len;
            }
        }
        for k in banded_rows..class_rows {
            let y = class + k * dilation;
            one_row(simd, plane, taps, y, &mut out[y * out_w..][..out_w]);
        }
    }
}

/// Where a band's sums go: row `r`'s `len` outputs from `out[at + r * step]` on.
struct BandRows<'a> {
    out: &'a mut [MaybeUninit<f32>],
    at: usize,
    step: usize,
    len: usize,
}

/// Output rows per band.
const BAND: usize = 4;

/// Whether the set has 32 vector registers (AVX-512, NEON), not 16: room for bands of 4
/// vectors a row (`BAND` times as many sums) and five weights of a filter column beside
/// them, where 16 registers hold bands of 2 and three weights.
const fn has_32_registers<S: Simd>() -> bool {
    matches!(S::ISA, Isa::Avx512 | Isa::Neon)
}

/// Vectors per row of a band.
const fn band_vectors<S: Simd>() -> usize {
    if has_32_registers::<S>() { 4 } else { 2 }
}

/// `BAND` rows of `out.len` outputs (at most `V * LANES`), row `r`'s window origin at padded
/// index `at + r * step`, of a filter `KH` rows tall whose rows are `step` apart and whose
/// taps in a row are at `columns` (`weights`, `[KH][kw]`).
#[inline(always)]
fn band<S: Simd, const KH: usize, const V: usize>(
    simd: S,
    padded: &[f32],
    (at, step): (usize, usize),
    (columns, weights, bias): (&[usize], &[f32], f32),
    out: BandRows<'_>,
) {
    const { assert!(V * S::LANES <= TAIL_BUFFER) };
    let len = out.len;
    assert!(len <= V * S::LANES && len > (V - 1) * S::LANES);
    let kw = columns.len();
    assert_eq!(weights.len(), KH * kw);
    let mut acc = [[simd.splat(bias); V]; BAND];
    for (kx, &column) in columns.iter().enumerate() {
        let weight: [S::Vector; KH] = std::array::from_fn(|ky| simd.splat(weights[ky * kw + kx]));
        // Input row `j` of the band is filter row `j - r` of output row `r`.
        for j in 0..BAND + KH - 1 {
            let from = padded.as_ptr().wrapping_add(at + j * step + column);
            for v in 0..V {
                // SAFETY: input row `j` at this column is the tap of filter row `j - r` of
                // output row `r` for some `r`, so `convolve`'s assertion (every output row's
                // loads at every tap offset, up to the row's width rounded up to whole
                // vectors, are inside `padded`) covers it; the `V` vectors end at most there.
                let x = unsafe { simd.load(from.add(v * S::LANES)) };
                for (r, acc) in acc.iter_mut().enumerate() {
                    if j >= r && j - r < KH {
                        acc[v] = simd.mul_add(weight[j - r], x, acc[v]);
                    }
                }
            }
        }
    }
    for (r, acc) in acc.iter().enumerate() {
        store(simd, &mut out.out[out.at + r * out.step..][..len], acc);
    }
}

/// The rows of a plane in pairs where a row is at most half a chunk, then one by one.
#[inline(always)]
fn in_pairs<S: Simd>(
    simd: S,
    plane: Padded<'_>,
    taps: &Taps<'_>,
    out: &mut [MaybeUninit<f32>],
    out_w: usize,
) {
    let vectors = out_w.div_ceil(S::LANES);
    let filter = (taps.offsets, taps.weights, taps.bias);
    let padded = plane.padded;
    let row_stride = plane.row_stride;
    // Rows of at most half a chunk run two at a time, so that a chunk keeps `CHUNK`
    // independent sums in flight: AVX-512's rows of depthwise-d2 are 4 vectors (64 floats),
    // which one at a time left 4 multiply-adds of 4 cycles' latency in flight: depthwise-d2
    // 1.09x faster (Zen 4, one thread, eight alternated rounds, median 0.216 -> 0.199 ms).
    let mut rows = out.chunks_exact_mut(out_w).enumerate();
    if 2 * vectors <= CHUNK {
        while rows.len() >= 2 {
            let ((y, first), (_, second)) = (rows.next().unwrap(), rows.next().unwrap());
            let at = y * row_stride;
            let outs = [first, second];
            match vectors {
                1 => chunk::<S, 1, 2>(simd, padded, (at, row_stride), filter, outs),
                2 => chunk::<S, 2, 2>(simd, padded, (at, row_stride), filter, outs),
                3 => chunk::<S, 3, 2>(simd, padded, (at, row_stride), filter, outs),
                _ => chunk::<S, 4, 2>(simd, padded, (at, row_stride), filter, outs),
            }
        }
    }
    for (y, out) in rows {
        one_row(simd, plane, taps, y, out);
    }
}

/// Output row `y`, chunk by chunk: whole chunks of `CHUNK` vectors, then one chunk of as
/// many vectors as the rest of the row needs.
#[inline(always)]
fn one_row<S: Simd>(
    simd: S,
    plane: Padded<'_>,
    taps: &Taps<'_>,
    y: usize,
    out: &mut [MaybeUninit<f32>],
) {
    let filter = (taps.offsets, taps.weights, taps.bias);
    let padded = plane.padded;
    let row = y * plane.row_stride;
    let width = CHUNK * S::LANES;
    let mut x = 0;
    while out.len() - x >= width {
        let out = [&mut out[x..x + width]];
        chunk::<S, CHUNK, 1>(simd, padded, (row + x, 0), filter, out);
        x += width;
    }
    let out = [&mut out[x..]];
    let at = (row + x, 0);
    match out[0].len().div_ceil(S::LANES) {
        0 => {}
        1 => chunk::<S, 1, 1>(simd, padded, at, filter, out),
        2 => chunk::<S, 2, 1>(simd, padded, at, filter, out),
        3 => chunk::<S, 3, 1>(simd, padded, at, filter, out),
        4 => chunk::<S, 4, 1>(simd, padded, at, filter, out),
        5 => chunk::<S, 5, 1>(simd, padded, at, filter, out),
        6 => chunk::<S, 6, 1>(simd, padded, at, filter, out),
        7 => chunk::<S, 7, 1>(simd, padded, at, filter, out),
        _ => chunk::<S, CHUNK, 1>(simd, padded, at, filter, out),
    }
}

/// `R` rows of `out[r].len()` (at most `V * LANES`, the same for every row) outputs, row `r`
/// from padded index `at + r * row_step` on.
#[inline(always)]
fn chunk<S: Simd, const V: usize, const R: usize>(
    simd: S,
    padded: &[f32],
    (at, row_step): (usize, usize),
    (offsets, weights, bias): (&[usize], &[f32], f32),
    out: [&mut [MaybeUninit<f32>]; R],
) {
    const { assert!(V * S::LANES <= TAIL_BUFFER) };
    let len = out[0].len();
    assert!(len <= V * S::LANES && len > (V - 1) * S::LANES);
    assert!(out.iter().all(|row| row.len() == len));
    let mut acc = [[simd.splat(bias); V]; R];
    for (&offset, &weight) in offsets.iter().zip(weights) {
        let weight = simd.splat(weight);
        for (r, acc) in acc.iter_mut().enumerate() {
            let from = padded.as_ptr().wrapping_add(at + r * row_step + offset);
            for (v, acc) in acc.iter_mut().enumerate() {
                // SAFETY: `convolve` asserted that every row's loads at every tap offset, up
                // to the row's width rounded up to whole vectors, are inside `padded`; this
                // chunk's rows are output rows, and its `V` vectors end at most there.
                let x = unsafe { simd.load(from.add(v * S::LANES)) };
                *acc = simd.mul_add(weight, x, *acc);
            }
        }
    }
    for (out, acc) in out.into_iter().zip(&acc) {
        store(simd, out, acc);
    }
}

/// A row's sums into its outputs: whole vectors where `out` takes them, through a buffer
/// for a last, partial vector.
#[inline(always)]
fn store<S: Simd, const V: usize>(simd: S, out: &mut [MaybeUninit<f32>], acc: &[S::Vector; V]) {
    if out.len() == V * S::LANES {
        for (v, &vector) in acc.iter().enumerate() {
            simd.store_uninit(&mut out[v * S::LANES..], vector);
        }
    } else {
        let mut buffer = [0.0f32; TAIL_BUFFER];
        for (v, &vector) in acc.iter().enumerate() {
            simd.store(&mut buffer[v * S::LANES..], vector);
        }
        for (slot, &value) in out.iter_mut().zip(&buffer) {
            slot.write(value);
        }
    }
}
