//! Buffers for the layouts the kernels read, kept per thread and reused across calls.
//!
//! A layer call lays its operands out in buffers of several megabytes. Allocating them
//! afresh each call costs more than the copy into them: the allocator hands such blocks back
//! to the system on free, so every call pays a page fault per 4 KiB on first touch (a fifth
//! of a backward pass on a 128 x 128 x 64 layer, measured). Keeping them per thread trades
//! that for holding the largest buffers a thread has used.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};

// Lent buffers start on a 64-byte boundary, a cache line and an AVX-512 vector: a vector
// load that straddles two lines costs two.
use super::aligned::{ALIGN_FLOATS, floats_to_line};

thread_local! {
    /// The thread's idle buffers.
    static POOL: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
    /// The thread's copy of an operand every thread of a call reads (see
    /// [`with_thread_copy`]), and the token of what it holds.
    static COPY: RefCell<(u64, Vec<f32>)> = const { RefCell::new((NO_TOKEN, Vec::new())) };
}

/// The token of no operand.
const NO_TOKEN: u64 = 0;

/// The last token [`new_token`] handed out.
static LAST_TOKEN: AtomicU64 = AtomicU64::new(NO_TOKEN);

/// A token never handed out before, naming one operand for [`with_thread_copy`].
pub(crate) fn new_token() -> u64 {
    LAST_TOKEN.fetch_add(1, Ordering::Relaxed) + 1
}

/// Lends `read` the calling thread's copy of the operand `token` names, `len` floats, which
/// `fill` writes the first time the thread asks for that token: each thread of a parallel
/// call that asks reads a copy it wrote itself, in its own cache, and writes it once
/// however many of the call's tasks it runs. A nested call (a layer run inside `read`)
/// gets a copy of its own.
pub(crate) fn with_thread_copy<R>(
    token: u64,
    len: usize,
    fill: impl FnOnce(&mut [f32]),
    read: impl FnOnce(&[f32]) -> R,
) -> R {
    let (mut held, mut buffer) = COPY.with_borrow_mut(std::mem::take);
    let needed = len + ALIGN_FLOATS;
    if buffer.len() < needed {
        buffer.resize(needed, 0.0);
        // A grown buffer may have moved, and its start with it.
        held = NO_TOKEN;
    }
    let start = floats_to_line(buffer.as_ptr());
    let copy = &mut buffer[start..start + len];
    if held != token {
        fill(copy);
        held = token;
    }
    let result = read(copy);
    COPY.with_borrow_mut(|copy| *copy = (held, buffer));
    result
}

/// Lends `f` a buffer of `len` floats whose contents are unspecified: `f` must write every
/// value it reads. Buffers are taken out of the thread's pool while in use, so nested calls
/// (a second operand, or a layer run from inside another's parallel section) each get their
/// own.
pub(crate) fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    let needed = len + ALIGN_FLOATS;
    let mut buffer = POOL.with_borrow_mut(|pool| take_fitting(pool, needed));
    // Only grown, never shrunk: a buffer's floats are zeroed once, when it first reaches
    // a size, not each time a larger request follows a smaller one.
    if buffer.len() < needed {
        buffer.resize(needed, 0.0);
    }
    let start = floats_to_line(buffer.as_ptr());
    let result = f(&mut buffer[start..start + len]);
    POOL.with_borrow_mut(|pool| pool.push(buffer));
    result
}

/// Takes out of `pool` the smallest buffer of at least `needed` floats or, where none is that
/// large, the largest (the least to grow); an empty one if the pool is. (The last buffer
/// returned, taken regardless of size, swapped a layer's large and small buffers between
/// its requests and zeroed the large one on every call.)
fn take_fitting(pool: &mut Vec<Vec<f32>>, needed: usize) -> Vec<f32> {
    let fitting = (0..pool.len())
        .filter(|&i| pool[i].len() >= needed)
        .min_by_key(|&i| pool[i].len());
    let largest = || (0..pool.len()).max_by_key(|&i| pool[i].len());
    match fitting.or_else(largest) {
        Some(i) => pool.swap_remove(i),
        None => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::aligned::ALIGN_BYTES;

    #[test]
    fn a_thread_copy_is_written_once_per_token() {
        let fills = std::cell::Cell::new(0);
        let fill = |value: f32| {
            let fills = &fills;
            move |copy: &mut [f32]| {
                fills.set(fills.get() + 1);
                copy.fill(value);
            }
        };
        let first = new_token();
        for _ in 0..3 {
            let sum: f32 = with_thread_copy(first, 10, fill(2.0), |copy| copy.iter().sum());
            assert_eq!(sum, 20.0);
        }
        assert_eq!(fills.get(), 1);
        // Another token, and a larger copy, are written afresh.
        let second = new_token();
        assert_ne!(first, second);
        let sum: f32 = with_thread_copy(second, 10, fill(3.0), |copy| copy.iter().sum());
        assert_eq!((sum, fills.get()), (30.0, 2));
        let sum: f32 = with_thread_copy(second, 1000, fill(1.0), |copy| copy.iter().sum());
        assert_eq!((sum, fills.get()), (1000.0, 3));
        // A nested call gets a copy of its own, and the outer one is kept.
        let third = new_token();
        with_thread_copy(second, 1000, fill(5.0), |outer| {
            let inner: f32 = with_thread_copy(third, 4, fill(7.0), |copy| copy.iter().sum());
            assert_eq!(inner, 28.0);
            assert!(outer.iter().all(|&value| value == 1.0));
        });
        assert_eq!(fills.get(), 4);
        let sum: f32 = with_thread_copy(second, 1000, fill(9.0), |copy| copy.iter().sum());
        assert_eq!((sum, fills.get()), (1000.0, 4));
    }

    #[test]
    fn the_smallest_fitting_buffer_is_lent() {
        let mut pool = vec![vec![0.0; 100], vec![0.0; 10], vec![0.0; 50]];
        assert_eq!(take_fitting(&mut pool, 40).len(), 50);
        assert_eq!(take_fitting(&mut pool, 400).len(), 100);
        assert_eq!(take_fitting(&mut pool, 1).len(), 10);
        assert!(take_fitting(&mut pool, 1).is_empty());
    }

    #[test]
    fn lent_buffers_are_aligned_and_as_long_as_asked() {
        for len in [1, 1000, 10] {
            with_scratch(len, |buffer| {
                assert_eq!(buffer.len(), len);
                assert_eq!(buffer.as_ptr().align_offset(ALIGN_BYTES), 0);
            });
        }
    }
}
