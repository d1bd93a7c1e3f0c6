//! How the kernels' operands sit in memory: the planar layout with column phases that every
//! kernel reads, and the per-thread buffers that hold it.

pub(crate) mod border;
pub(crate) mod layout;
pub(crate) mod scratch;
pub(crate) mod shared_output;
