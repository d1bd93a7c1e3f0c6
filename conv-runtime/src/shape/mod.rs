//! The ground floor: what a layer is made of before any data arrives. The geometry `conv!`
//! fixes, with its shape arithmetic; the contract between generated code and the kernels;
//! and the errors every layer can return.

pub mod contract;
pub mod error;
pub mod geometry;
