//! Buffers for the layouts the kernels read, kept per thread and reused across calls.
//!
//! A layer call lays its operands out in buffers of several megabytes. Allocating them
//! afresh each call costs more than the copy into them: the allocator hands such blocks back
//! to the system on free, so every call pays a page fault per 4 KiB on first touch (a fifth
//! of a backward pass on a 128 x 128 x 64 layer, measured). Keeping them per thread trades
//! that for holding the largest buffers a thread has used.

use std::cell::RefCell;

/// Lent buffers start on a 64-byte boundary, a cache line and an AVX-512 vector: a vector
/// load that straddles two lines costs two.
const ALIGN_BYTES: usize = 64;
const ALIGN_FLOATS: usize = ALIGN_BYTES / size_of::<f32>();

thread_local! {
    /// The thread's idle buffers.
    static POOL: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
}

/// Lends `f` a buffer of `len` floats whose contents are unspecified: `f` must write every
/// value it reads. Buffers are taken out of the thread's pool while in use, so nested calls
/// (a second operand, or a layer run from inside another's parallel section) each get their
/// own.
pub(crate) fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    let mut buffer = POOL.with_borrow_mut(Vec::pop).unwrap_or_default();
    buffer.resize(len + ALIGN_FLOATS, 0.0);
    let start = buffer.as_ptr().align_offset(ALIGN_BYTES).min(ALIGN_FLOATS);
    let result = f(&mut buffer[start..start + len]);
    POOL.with_borrow_mut(|pool| pool.push(buffer));
    result
}
