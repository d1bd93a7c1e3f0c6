//! The kernel families, each a module with its own selection, layout and driver: the forward
//! row kernel, which runs both directions of a layer, the plane kernel of depthwise
//! convolutions, the Winograd kernel of 3x3 convolutions with many channels, and the
//! weight-gradient correlation.

pub(crate) mod depthwise;
pub(crate) mod row;
pub(crate) mod weight_grad;
pub(crate) mod winograd;
