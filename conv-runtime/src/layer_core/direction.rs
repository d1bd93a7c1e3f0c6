//! What tells the two layers apart: a direction type, which the one generic layer takes as a
//! parameter. Its rules (weight layout, kernels, backward pass) live with each public face:
//! `Convolution` in `layers/conv2d.rs`, `Transposed` in `layers/conv_transpose2d.rs`.

use ndarray::{Array4, ArrayView4};

use super::parameters::{Pack, Parameters};
use crate::shape::error::{ConvError, Operation};
use crate::shape::geometry::{Geometry, GeometrySpec, ZeroPadded};
use crate::train::gradients::Gradients;

/// The direction of a [`Layer`](crate::Layer): [`Convolution`](crate::Convolution) for
/// [`Conv2d`](crate::Conv2d), [`Transposed`](crate::Transposed) for
/// [`ConvTranspose2d`](crate::ConvTranspose2d). Sealed: the two directions are all there is.
pub trait Direction: Rules + Copy + Send + Sync + 'static {}

/// The geometries a direction can run: every one for a convolution, those padding with
/// zeros for a transposed convolution (PyTorch's rule). A bound of the layers'
/// constructors, so that a transposed layer of another padding mode does not compile.
pub trait Accepts<G: Geometry> {}

impl<G: Geometry> Accepts<G> for crate::Convolution {}

impl<G: ZeroPadded> Accepts<G> for crate::Transposed {}

/// A direction's rules. Public in name only, so that it can bound [`Direction`]: it lives in
/// a private module, so no other crate can name or implement it (that seals `Direction`),
/// and the crate-private types in its signatures cannot leak, which is what
/// `private_interfaces` would warn of.
#[allow(private_interfaces)]
pub trait Rules {
    /// The PyTorch class the direction mirrors, for `Debug`.
    #[doc(hidden)]
    const NAME: &'static str;
    /// How shape errors name the direction.
    #[doc(hidden)]
    const OPERATION: Operation;

    /// `(in_channels, out_channels)` of a layer with this weight (the direction's layout).
    #[doc(hidden)]
    fn channels(weight: &Array4<f32>, groups: usize) -> (usize, usize);

    /// The weight's shape for the channels and kernel size.
    #[doc(hidden)]
    fn weight_shape(
        in_channels: usize,
        out_channels: usize,
        groups: usize,
        kernel_size: (usize, usize),
    ) -> [usize; 4];

    /// The packer of the direction's own operation for geometry `G`.
    #[doc(hidden)]
    fn pack<G: Geometry>() -> Pack;

    /// The packer of the adjoint operation, which computes the input gradient.
    #[doc(hidden)]
    fn pack_adjoint<G: Geometry>() -> Pack;

    /// The gradients for input `x` and output gradient `grad_output`, the adjoint engine
    /// packed by `adjoint` on first use.
    #[doc(hidden)]
    fn backward(
        spec: &GeometrySpec,
        parameters: &Parameters,
        adjoint: Pack,
        x: &ArrayView4<f32>,
        grad_output: &ArrayView4<f32>,
    ) -> Result<Gradients, ConvError>;
}
