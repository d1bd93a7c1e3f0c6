//! The public faces: [`Conv2d`](conv2d::Conv2d) and
//! [`ConvTranspose2d`](conv_transpose2d::ConvTranspose2d), each a name for the generic layer
//! in one direction with that direction's rules; [`Conv1d`](one_dimensional::Conv1d) and
//! [`ConvTranspose1d`](one_dimensional::ConvTranspose1d), the same layers on a one-row view;
//! [`BatchNorm2d`](batch_norm::BatchNorm2d), which folds into them; and
//! [`Upsample`](upsample::Upsample), the fixed upsampling they are compared with.

pub mod batch_norm;
pub mod conv2d;
pub mod conv_transpose2d;
pub mod one_dimensional;
pub mod upsample;
