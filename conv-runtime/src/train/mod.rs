//! Training: the gradients a layer's backward pass returns, and the optimisers that apply
//! them.

pub mod gradients;
pub mod optim;
