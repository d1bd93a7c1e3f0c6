//! The plane kernel: one channel's output plane, all rows, from its input plane.

use std::mem::MaybeUninit;

use crate::isa::{Family, Kernel, Simd};

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
    /// the kernel copies `source`, `top_left` from its start. Only that part is written, so
    /// the zeros of a buffer reused for every channel are written once.
    pub padded: &'a mut [f32],
    pub row_stride: usize,
    pub top_left: (usize, usize),
    /// Each tap's offset in `padded` from its output's window origin, and its weight.
    pub offsets: &'a [usize],
    pub weights: &'a [f32],
    pub bias: f32,
    /// The output plane, rows of `out_w` outputs; possibly uninitialised: the kernel writes
    /// every element.
    pub out: &'a mut [MaybeUninit<f32>],
    pub out_w: usize,
}

/// The plane kernel: copies the channel's input into the padded plane, then computes each
/// output row in chunks of up to `CHUNK` vectors held in registers (two rows at a time where
/// a row is half a chunk or less) while every tap adds its weight times a shifted load of the
/// padded rows.
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
    let (top, left) = job.top_left;
    let in_w = job.in_w;
    if in_w == 0 {
        return;
    }
    for (r, source) in job.source.chunks_exact(in_w).enumerate() {
        let target = &mut job.padded[(top + r) * job.row_stride + left..][..in_w];
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

/// Every output row, chunk by chunk: whole chunks of `CHUNK` vectors, then one chunk of as
/// many vectors as the rest of the row needs.
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
    let width = CHUNK * S::LANES;
    let padded = &*job.padded;
    let taps = (job.offsets, job.weights, job.bias);
    let row_stride = job.row_stride;
    let vectors = out_w.div_ceil(S::LANES);
    // Rows of at most half a chunk run two at a time, so that a chunk keeps `CHUNK`
    // independent sums in flight: AVX-512's rows of depthwise-d2 are 4 vectors (64 floats),
    // which one at a time left 4 multiply-adds of 4 cycles' latency in flight: depthwise-d2
    // 1.09x faster (Zen 4, one thread, eight alternated rounds, median 0.216 -> 0.199 ms).
    let mut rows = job.out.chunks_exact_mut(out_w).enumerate();
    if 2 * vectors <= CHUNK {
        while rows.len() >= 2 {
            let ((y, first), (_, second)) = (rows.next().unwrap(), rows.next().unwrap());
            let at = y * row_stride;
            let outs = [first, second];
            match vectors {
                1 => chunk::<S, 1, 2>(simd, padded, (at, row_stride), taps, outs),
                2 => chunk::<S, 2, 2>(simd, padded, (at, row_stride), taps, outs),
                3 => chunk::<S, 3, 2>(simd, padded, (at, row_stride), taps, outs),
                _ => chunk::<S, 4, 2>(simd, padded, (at, row_stride), taps, outs),
            }
        }
    }
    for (y, out) in rows {
        let row = y * row_stride;
        let mut x = 0;
        while out_w - x >= width {
            let out = [&mut out[x..x + width]];
            chunk::<S, CHUNK, 1>(simd, padded, (row + x, 0), taps, out);
            x += width;
        }
        let out = [&mut out[x..]];
        let at = (row + x, 0);
        match out[0].len().div_ceil(S::LANES) {
            0 => {}
            1 => chunk::<S, 1, 1>(simd, padded, at, taps, out),
            2 => chunk::<S, 2, 1>(simd, padded, at, taps, out),
            3 => chunk::<S, 3, 1>(simd, padded, at, taps, out),
            4 => chunk::<S, 4, 1>(simd, padded, at, taps, out),
            5 => chunk::<S, 5, 1>(simd, padded, at, taps, out),
            6 => chunk::<S, 6, 1>(simd, padded, at, taps, out),
            7 => chunk::<S, 7, 1>(simd, padded, at, taps, out),
            _ => chunk::<S, CHUNK, 1>(simd, padded, at, taps, out),
        }
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
        if len == V * S::LANES {
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
}
