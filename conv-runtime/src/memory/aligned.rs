//! Layer outputs and packed weights that start on a cache line.
//!
//! The allocator places a large array 16 bytes past a page boundary, so every AVX-512 store
//! of an output row whose length is a multiple of 16 floats straddles two cache lines and
//! costs two: depthwise-d2, whose 2 MB output is written by whole-vector stores, ran 3-4%
//! faster from an aligned output (Zen 4, one thread, 0.163 -> 0.158 ms, five alternated
//! rounds). A network's next layer reads that output as its input, aligned too.

use std::mem::MaybeUninit;

use ndarray::{Array1, Array4, s};

/// Floats that start on a cache line, for weights the kernels read as whole vectors.
///
/// A `Vec<f32>` of packed weights sits where the allocator puts it, 16 bytes past a page
/// boundary for a large one, so every 64-byte vector load of it straddled two cache lines:
/// with its weights aligned, dcgan-up's forward ran 1.365 -> 1.247 ms and aspp-d12's 5.23
/// -> 5.11 at one thread (Intel Xeon, fastest of three alternated `suite --only ... --quick
/// --fastest` runs). A clone is aligned afresh: copying the storage would copy the offset
/// into an allocation that needs another.
#[derive(Debug)]
pub(crate) struct AlignedFloats {
    storage: Vec<f32>,
    offset: usize,
    len: usize,
}

impl AlignedFloats {
    /// `values`, copied to storage that starts on a 64-byte boundary.
    pub fn new(values: &[f32]) -> AlignedFloats {
        let mut storage = vec![0.0; values.len() + ALIGN_FLOATS - 1];
        let offset = floats_to_line(storage.as_ptr());
        storage[offset..offset + values.len()].copy_from_slice(values);
        AlignedFloats {
            storage,
            offset,
            len: values.len(),
        }
    }
}

impl From<Vec<f32>> for AlignedFloats {
    fn from(values: Vec<f32>) -> AlignedFloats {
        AlignedFloats::new(&values)
    }
}

impl Clone for AlignedFloats {
    fn clone(&self) -> AlignedFloats {
        AlignedFloats::new(self)
    }
}

impl std::ops::Deref for AlignedFloats {
    type Target = [f32];

    fn deref(&self) -> &[f32] {
        &self.storage[self.offset..self.offset + self.len]
    }
}

/// Alignment of the first element, in bytes: a cache line and an AVX-512 vector.
pub(crate) const ALIGN_BYTES: usize = 64;
pub(crate) const ALIGN_FLOATS: usize = ALIGN_BYTES / size_of::<f32>();

/// Floats from `start` to the first 64-byte boundary at or after it, at most
/// `ALIGN_FLOATS - 1`: storage with that many floats to spare holds an aligned run of the
/// rest. (`align_offset` may answer "not possible", `usize::MAX`, in principle; any offset
/// up to `ALIGN_FLOATS - 1` keeps the run inside the storage.)
pub(crate) fn floats_to_line(start: *const f32) -> usize {
    start.align_offset(ALIGN_BYTES).min(ALIGN_FLOATS - 1)
}

/// A new standard-layout array of `shape`, uninitialised, whose first element starts on a
/// 64-byte boundary. It owns `ALIGN_FLOATS - 1` floats more than it shows, in front of and
/// behind its elements.
pub(crate) fn uninit_aligned(shape: [usize; 4]) -> Array4<MaybeUninit<f32>> {
    let len: usize = shape.iter().product();
    let storage = Array1::<f32>::uninit(len + ALIGN_FLOATS - 1);
    let offset = floats_to_line(storage.as_ptr().cast());
    storage
        .slice_move(s![offset..offset + len])
        .into_shape_with_order(shape)
        .expect("a contiguous run of the shape's length takes the shape")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_floats_and_their_clones_start_on_a_cache_line() {
        for len in [0, 1, 17, 100_000] {
            let values: Vec<f32> = (0..len).map(|i| i as f32).collect();
            let aligned = AlignedFloats::new(&values);
            let clone = aligned.clone();
            for floats in [&aligned, &clone] {
                assert_eq!(&floats[..], &values[..]);
                assert_eq!(floats.as_ptr() as usize % ALIGN_BYTES, 0, "{len}");
            }
        }
    }

    #[test]
    fn outputs_start_on_a_cache_line_and_have_their_shape() {
        for shape in [[1, 1, 1, 1], [2, 3, 5, 7], [1, 128, 64, 64], [0, 4, 4, 4]] {
            let array = uninit_aligned(shape);
            assert_eq!(array.shape(), shape);
            assert!(array.is_standard_layout());
            if !array.is_empty() {
                assert_eq!(array.as_ptr() as usize % ALIGN_BYTES, 0, "{shape:?}");
            }
        }
    }
}
