//! A small U-Net with a dilated bottleneck, ported from `tools/networks.py`'s `DilatedUNet`
//! and loaded from its `state_dict` by PyTorch's key names, each batch norm folded into the
//! convolution before it at load. Shared by `examples/unet` and `tests/networks.rs`, so the
//! test checks exactly the code the example runs.

use std::fmt;

use conv_runtime::ndarray::{Array4, ArrayBase, Axis, Data, Ix4, concatenate};
use conv_runtime::prelude::*;
use conv_runtime::{Accepts, BatchNorm2d, Convolution, LoadError, StateDict};

conv! {
    /// The encoder's and decoder's 3x3 convolutions: the size kept.
    pub struct Same; k = 3, padding = 1
}
conv! {
    /// Going down a level: 3x3 with stride 2, half the size.
    pub struct Down; k = 3, stride = 2, padding = 1
}
conv! {
    /// The context block's first layer: a 5x5 field from 3x3 taps.
    pub struct Dilated2; k = 3, dilation = 2, padding = 2
}
conv! {
    /// The context block's second layer: a 9x9 field.
    pub struct Dilated4; k = 3, dilation = 4, padding = 4
}
conv! {
    /// The context block's third layer: a 17x17 field.
    pub struct Dilated8; k = 3, dilation = 8, padding = 8
}
conv! {
    /// Going up a level: each pixel becomes a learned 2x2 block.
    pub struct Up; k = 2, stride = 2
}
conv! {
    /// The head: per-pixel logits.
    pub struct Head; k = 1
}

/// PyTorch's `eps` for `nn.BatchNorm2d` (a `state_dict` does not record it).
const BATCH_NORM_EPS: f64 = 1e-5;

/// `ConvBn` of `tools/networks.py`: `prefix.conv` (no bias), `prefix.bn`, ReLU; the batch
/// norm folded into the convolution's weights and bias at load.
pub struct ConvBnRelu<G: Geometry> {
    conv: Conv2d<G>,
}

impl<G: Geometry> ConvBnRelu<G>
where
    Convolution: Accepts<G>,
{
    fn load(weights: &StateDict, prefix: &str, geometry: G) -> Result<Self, LoadError> {
        let conv = Conv2d::load(weights, &format!("{prefix}.conv"), geometry)?;
        let bn = BatchNorm2d::load(weights, &format!("{prefix}.bn"), BATCH_NORM_EPS)?;
        Ok(ConvBnRelu {
            conv: conv.fold_batch_norm(&bn)?,
        })
    }

    fn forward<S: Data<Elem = f32>>(
        &self,
        x: &ArrayBase<S, Ix4>,
    ) -> Result<Array4<f32>, ConvError> {
        let mut y = self.conv.forward(x)?;
        relu(&mut y);
        Ok(y)
    }
}

/// `torch.relu` in place (NaN stays NaN).
fn relu(x: &mut Array4<f32>) {
    x.mapv_inplace(|v| if v < 0.0 { 0.0 } else { v });
}

/// `torch.cat([a, b], dim=1)` of two arrays of the same batch and size.
fn cat_channels(a: &Array4<f32>, b: &Array4<f32>) -> Array4<f32> {
    concatenate(Axis(1), &[a.view(), b.view()]).expect("the caller checked the sizes")
}

/// Why [`DilatedUNet::forward`] refused its input.
#[derive(Clone, Debug, PartialEq)]
pub enum UNetError {
    /// A side is not a multiple of 4: after two halvings and two doublings the decoder's
    /// output would not line up with the encoder's skip connection (PyTorch fails in
    /// `torch.cat` there).
    Size {
        /// The input's `(height, width)`.
        got: (usize, usize),
    },
    /// A layer refused the input (the wrong number of channels, say).
    Layer(ConvError),
}

impl fmt::Display for UNetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UNetError::Size { got } => write!(
                f,
                "input of {}x{}: the U-Net needs both sides a multiple of 4",
                got.0, got.1
            ),
            UNetError::Layer(error) => error.fmt(f),
        }
    }
}

impl std::error::Error for UNetError {}

impl From<ConvError> for UNetError {
    fn from(error: ConvError) -> Self {
        UNetError::Layer(error)
    }
}

/// The network: `enc1` (3 -> 16), `down1` (16 -> 32, stride 2), `enc2` (32 -> 32), `down2`
/// (32 -> 64, stride 2), `context.0..2` (64 -> 64, dilations 2, 4, 8), then `up2` (k=2 s=2
/// transposed, 64 -> 32), concatenation with `enc2`'s output, `dec2` (64 -> 32), `up1`
/// (32 -> 16), concatenation with `enc1`'s output, `dec1` (32 -> 16), and the 1x1 `head`.
pub struct DilatedUNet {
    enc1: ConvBnRelu<Same>,
    down1: ConvBnRelu<Down>,
    enc2: ConvBnRelu<Same>,
    down2: ConvBnRelu<Down>,
    context: (
        ConvBnRelu<Dilated2>,
        ConvBnRelu<Dilated4>,
        ConvBnRelu<Dilated8>,
    ),
    up2: ConvTranspose2d<Up>,
    dec2: ConvBnRelu<Same>,
    up1: ConvTranspose2d<Up>,
    dec1: ConvBnRelu<Same>,
    head: Conv2d<Head>,
}

impl DilatedUNet {
    /// The network saved as a `state_dict` (any widths: they are read from the tensors).
    pub fn load(weights: &StateDict) -> Result<DilatedUNet, LoadError> {
        Ok(DilatedUNet {
            enc1: ConvBnRelu::load(weights, "enc1", Same)?,
            down1: ConvBnRelu::load(weights, "down1", Down)?,
            enc2: ConvBnRelu::load(weights, "enc2", Same)?,
            down2: ConvBnRelu::load(weights, "down2", Down)?,
            context: (
                ConvBnRelu::load(weights, "context.0", Dilated2)?,
                ConvBnRelu::load(weights, "context.1", Dilated4)?,
                ConvBnRelu::load(weights, "context.2", Dilated8)?,
            ),
            up2: ConvTranspose2d::load(weights, "up2", Up)?,
            dec2: ConvBnRelu::load(weights, "dec2", Same)?,
            up1: ConvTranspose2d::load(weights, "up1", Up)?,
            dec1: ConvBnRelu::load(weights, "dec1", Same)?,
            head: Conv2d::load(weights, "head", Head)?,
        })
    }

    /// The logits `[n, classes, h, w]` for `x`, `[n, 3, h, w]` (any layout), both sides
    /// multiples of 4.
    pub fn forward<S: Data<Elem = f32>>(
        &self,
        x: &ArrayBase<S, Ix4>,
    ) -> Result<Array4<f32>, UNetError> {
        let (_, _, h, w) = x.dim();
        if h % 4 != 0 || w % 4 != 0 {
            return Err(UNetError::Size { got: (h, w) });
        }
        let skip1 = self.enc1.forward(x)?;
        let skip2 = self.enc2.forward(&self.down1.forward(&skip1)?)?;
        let mut y = self.down2.forward(&skip2)?;
        y = self.context.0.forward(&y)?;
        y = self.context.1.forward(&y)?;
        y = self.context.2.forward(&y)?;
        y = self
            .dec2
            .forward(&cat_channels(&self.up2.forward(&y)?, &skip2))?;
        y = self
            .dec1
            .forward(&cat_channels(&self.up1.forward(&y)?, &skip1))?;
        Ok(self.head.forward(&y)?)
    }
}
