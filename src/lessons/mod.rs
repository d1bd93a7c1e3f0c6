//! The seed's two lessons as pictures: what a dilated stack sees ([`receptive_field`]) and
//! why a strided transposed convolution whose kernel the stride does not divide paints a
//! checkerboard ([`checkerboard`]). `examples/receptive_field.rs` and
//! `examples/checkerboard.rs` write them as PNGs; `tests/lessons.rs` checks what they show.

pub mod checkerboard;
pub mod paint;
pub mod receptive_field;
