//! The lattice's layout in vectors. Each laid-out row is the same table (the lattice's row
//! map) applied to a source row: float `i` of the laid-out row is source column `from[i] - 1`,
//! or zero. Where the source row fits in four vectors (64 columns on AVX-512, context-d4's
//! rows), a vector of the laid-out row is one [`Simd::select`] from the row's four vectors
//! (two permutes and a blend on AVX-512) instead of sixteen loads of an index and a value.
//! Float by float the layout took a fifth of context-d4's time: 68-77 µs a row class against
//! 37 µs a tile row; in vectors 35-40 µs (Intel Xeon, one thread, the layer's sections timed
//! inside it).

use ndarray::ArrayView2;

use crate::isa::{Family, Kernel, MAX_SELECT_LANES, Simd};
use crate::memory::layout::{PlaneLayout, contiguous};

/// The family: every kernel lays out one channel's [`LatticeRowsJob`].
pub(super) struct LatticeRowsFamily;

impl Family for LatticeRowsFamily {
    type Job<'a> = LatticeRowsJob<'a>;
}

/// A row map as the vectors of a laid-out row pick their floats: `index` (a source column
/// per float) and, per vector, `live` (a bit per lane, clear where the float is a zero).
#[derive(Debug, PartialEq, Eq)]
pub(super) struct VectorMap {
    lanes: usize,
    index: Vec<u32>,
    live: Vec<u32>,
}

impl VectorMap {
    /// The map for vectors of `lanes` floats of the row map `from` (0 for a zero, `1 + x`
    /// for source column `x`), if every column it reads is in four such vectors and the
    /// laid-out row is whole vectors.
    pub fn new(from: &[u32], lanes: usize) -> Option<VectorMap> {
        let fits = from.iter().all(|&from| (from as usize) <= 4 * lanes);
        if !fits || !from.len().is_multiple_of(lanes) {
            return None;
        }
        let index = from.iter().map(|&from| from.saturating_sub(1)).collect();
        let live = from
            .chunks_exact(lanes)
            .map(|lanes| {
                let bits = lanes
                    .iter()
                    .enumerate()
                    .map(|(i, &from)| u32::from(from != 0) << i);
                bits.fold(0, |live, bit| live | bit)
            })
            .collect();
        Some(VectorMap { lanes, index, live })
    }
}

/// One channel to lay out: the laid-out rows are padded rows `first, first + step, ...`
/// (input row `y` at padded row `y + pad_top`, zero rows around), each `map` applied to its
/// source row.
pub(super) struct LatticeRowsJob<'a> {
    pub source: ArrayView2<'a, f32>,
    pub pad_top: usize,
    pub rows: (usize, usize),
    pub layout: PlaneLayout,
    pub map: &'a VectorMap,
    pub target: &'a mut [f32],
}

/// The kernel: written once, compiled for each instruction set.
pub(super) struct LatticeRows;

impl Kernel<LatticeRowsFamily> for LatticeRows {
    #[inline(always)]
    fn run<S: Simd>(simd: S, job: &mut LatticeRowsJob<'_>) {
        let map = job.map;
        let row_stride = job.layout.row_stride();
        assert_eq!(map.lanes, S::LANES, "a map for this set's vectors");
        assert_eq!(map.index.len(), row_stride);
        let (first, step) = job.rows;
        let in_h = job.source.nrows();
        // The source row's first `4 * LANES` floats, zeros after a shorter row.
        let mut buffer = [0.0f32; 4 * MAX_SELECT_LANES];
        let row_floats = 4 * S::LANES;
        assert!(row_floats <= buffer.len());
        let mut gathered = Vec::new();
        let rows = job
            .target
            .chunks_exact_mut(row_stride)
            .take(job.layout.rows);
        for (index, row) in rows.enumerate() {
            let padded_row = first + step * index;
            let Some(y) = padded_row.checked_sub(job.pad_top).filter(|&y| y < in_h) else {
                row.fill(0.0);
                continue;
            };
            let source_row = job.source.row(y);
            let source = contiguous(&source_row, &mut gathered);
            let source = if source.len() >= row_floats {
                &source[..row_floats]
            } else {
                buffer[..source.len()].copy_from_slice(source);
                &buffer[..row_floats]
            };
            let vectors = std::array::from_fn(|v| {
                let lanes = &source[v * S::LANES..][..S::LANES];
                // SAFETY: `lanes` holds `LANES` floats.
                unsafe { simd.load(lanes.as_ptr()) }
            });
            let picks = map.index.chunks_exact(S::LANES).zip(&map.live);
            for (out, (index, &live)) in row.chunks_exact_mut(S::LANES).zip(picks) {
                simd.store(out, simd.select(&vectors, index, live));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::isa::{Compiled, Isa};

    /// Maps that read past four vectors, or whose rows are not whole vectors, have no
    /// vector form; the others keep each float's column and say which are zeros.
    #[test]
    fn a_vector_map_is_the_row_map_by_vectors() {
        assert_eq!(VectorMap::new(&[1, 2, 0, 17], 4), None);
        assert_eq!(VectorMap::new(&[1, 2, 0], 4), None);
        let map = VectorMap::new(&[1, 16, 0, 3, 0, 0, 0, 9], 4).unwrap();
        assert_eq!(map.index, [0, 15, 0, 2, 0, 0, 0, 8]);
        assert_eq!(map.live, [0b1011, 0b1000]);
    }

    /// On every set: each laid-out row is its padded row's source floats as the map says,
    /// zeros where the map or the padding says so, over a NaN-filled target, for source
    /// rows of the full four vectors and shorter, contiguous and transposed.
    #[test]
    fn each_row_is_its_source_row_through_the_map() {
        for isa in Isa::available() {
            let lanes = isa.lanes();
            let kernel = Compiled::<LatticeRowsFamily>::for_isa::<LatticeRows>(isa);
            for width in [4 * lanes, 4 * lanes - 3, 5] {
                let in_h = 5;
                let layout = PlaneLayout {
                    channels: 1,
                    rows: 6,
                    col_phases: 2,
                    phase_len: 3 * lanes,
                };
                let from: Vec<u32> = (0..layout.row_stride())
                    .map(|i| {
                        if i % 5 == 3 {
                            0
                        } else {
                            (i * 7 % width) as u32 + 1
                        }
                    })
                    .collect();
                let map = VectorMap::new(&from, lanes).unwrap();
                let value = |y: usize, x: usize| (y * 100 + x) as f32 + 1.0;
                let standard = ndarray::Array2::from_shape_fn((in_h, width), |(y, x)| value(y, x));
                let columns = ndarray::Array2::from_shape_fn((width, in_h), |(x, y)| value(y, x));
                let (pad_top, rows) = (2, (1, 2));
                for source in [standard.view(), columns.t()] {
                    let mut target = vec![f32::NAN; layout.channel_stride()];
                    kernel.run(&mut LatticeRowsJob {
                        source,
                        pad_top,
                        rows,
                        layout,
                        map: &map,
                        target: &mut target,
                    });
                    for (r, row) in target.chunks_exact(layout.row_stride()).enumerate() {
                        let y = (rows.0 + rows.1 * r)
                            .checked_sub(pad_top)
                            .filter(|&y| y < in_h);
                        for (i, (&got, &from)) in row.iter().zip(&from).enumerate() {
                            let expected = match (y, from) {
                                (Some(y), 1..) => value(y, from as usize - 1),
                                _ => 0.0,
                            };
                            assert_eq!(got, expected, "{isa} width {width} row {r} float {i}");
                        }
                    }
                }
            }
        }
    }
}
