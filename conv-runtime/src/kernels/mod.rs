//! The kernel families, each a module with its own selection, layout and driver: the forward
//! row kernel, which runs both directions of a layer, the plane kernel of depthwise
//! convolutions, the Winograd kernel of 3x3 convolutions with many channels, the one-tap
//! family of 2x2 layers of stride 2, the two-tap family of layers whose filter is two
//! strides wide, and the weight-gradient correlation.

pub(crate) mod depthwise;
pub(crate) mod one_tap;
pub(crate) mod pool;
pub(crate) mod row;
pub(crate) mod two_tap;
pub(crate) mod weight_grad;
pub(crate) mod winograd;

/// Below this many multiply-adds a forward layer runs on the calling thread: handing work to
/// other threads costs more than it saves. Half a million is about 10 microseconds of one
/// core's work; the seed layers (1.8M and 0.8M) ran 1.47x and 1.29x faster on two threads
/// than on one (Zen 3, median of 7 alternated rounds), where the old 4M threshold kept them
/// on one.
const PARALLEL_THRESHOLD: usize = 1 << 19;

/// Enough independent pieces of work per thread that uneven pieces still balance.
pub(crate) const TASKS_PER_THREAD: usize = 4;

/// The threads a forward call of `multiply_adds` runs on: one below the threshold, else all
/// of rayon's (and the call is then marked parallel, see [`pool::mark_parallel`]).
pub(crate) fn forward_threads(multiply_adds: usize) -> usize {
    if multiply_adds < PARALLEL_THRESHOLD {
        1
    } else {
        let threads = rayon::current_num_threads();
        if threads > 1 {
            pool::mark_parallel();
        }
        threads
    }
}
