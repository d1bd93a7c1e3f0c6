//! The kernel families, each a module with its own selection, layout and driver: the forward
//! row kernel, which runs both directions of a layer, the plane kernel of depthwise
//! convolutions, and the weight-gradient correlation.

pub(crate) mod depthwise;
pub(crate) mod row;
pub(crate) mod weight_grad;
