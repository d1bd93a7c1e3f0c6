//! An output array written by several tasks at once, each to its own ranges.

use std::mem::MaybeUninit;

use ndarray::{ArrayViewMut, Dimension};

/// The output of one image, written by several tasks at once, each to its own rows.
#[derive(Clone, Copy)]
pub(crate) struct SharedOutput(pub *mut MaybeUninit<f32>);

// SAFETY: tasks write through the pointer only to disjoint ranges (the drivers' contract),
// and the output outlives the parallel section.
unsafe impl Send for SharedOutput {}
// SAFETY: as for `Send`: shared between tasks, the pointer is only ever used to make slices
// of disjoint ranges.
unsafe impl Sync for SharedOutput {}

impl SharedOutput {
    /// `output`, which must be in standard layout (as every driver's is), to be shared by
    /// the tasks that write it.
    pub fn of<D: Dimension>(output: &mut ArrayViewMut<'_, MaybeUninit<f32>, D>) -> SharedOutput {
        SharedOutput(
            output
                .as_slice_mut()
                .expect("output is in standard layout")
                .as_mut_ptr(),
        )
    }

    /// # Safety
    ///
    /// `start..start + len` must be inside the output, and no other live slice may overlap it.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn slice<'a>(&self, start: usize, len: usize) -> &'a mut [MaybeUninit<f32>] {
        // SAFETY: guaranteed by the caller.
        unsafe { std::slice::from_raw_parts_mut(self.0.add(start), len) }
    }
}
