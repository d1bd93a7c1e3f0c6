//! The public faces: [`Conv2d`] and [`ConvTranspose2d`], each a name for the generic layer in
//! one direction with that direction's rules, and [`Upsample`], the fixed upsampling they
//! are compared with.

pub mod conv2d;
pub mod conv_transpose2d;
pub mod one_dimensional;
pub mod upsample;
