//! How the kernels' operands sit in memory: the planar layout with column phases that every
//! kernel reads, the per-thread buffers that hold it, channels turned last, staged rows
//! woven into output rows, and the layers' aligned outputs.

pub(crate) mod aligned;
pub(crate) mod border;
pub(crate) mod layout;
pub(crate) mod scratch;
pub(crate) mod shared_output;
pub(crate) mod transpose;
pub(crate) mod weave;
