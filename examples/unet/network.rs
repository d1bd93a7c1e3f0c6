//! A small U-Net with a dilated bottleneck, ported from `tools/networks.py`'s `DilatedUNet`
//! and loaded from its `state_dict` by PyTorch's key names, each batch norm folded into the
//! convolution before it at load. Shared by `examples/unet` and `tests/networks.rs`, so the
//! test checks exactly the code the example runs.

use std::fmt;

use conv_runtime::ndarray::{Array4, ArrayBase, ArrayView4, ArrayViewMut4, Axis, Data, Ix4};
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

    fn out_channels(&self) -> usize {
        self.conv.out_channels()
    }

    /// `relu(bn(conv(x)))` into `out`.
    fn forward_into<S: Data<Elem = f32>>(
        &self,
        x: &ArrayBase<S, Ix4>,
        out: &mut ArrayViewMut4<f32>,
    ) -> Result<(), ConvError> {
        self.conv.forward_into(x, out)?;
        out.mapv_inplace(relu);
        Ok(())
    }
}

/// `torch.relu` (NaN stays NaN).
fn relu(v: f32) -> f32 {
    if v < 0.0 { 0.0 } else { v }
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
    /// multiples of 4. Allocates its activations for the call; a program that runs many
    /// images keeps a [`Workspace`] and calls [`forward_in`](Self::forward_in).
    pub fn forward<S: Data<Elem = f32>>(
        &self,
        x: &ArrayBase<S, Ix4>,
    ) -> Result<Array4<f32>, UNetError> {
        let mut workspace = Workspace::default();
        self.forward_in(x, &mut workspace)?;
        Ok(workspace.logits)
    }

    /// As [`forward`](Self::forward), with the activations in `workspace`, which is
    /// (re)allocated when the input's shape changes and otherwise reused: on a machine where
    /// fresh memory is slow to fault in (a VM), allocating every activation on every call
    /// cost a third of the time (Zen 3 VM, one thread: 60 ms against 42 ms). The logits
    /// are a view into the workspace.
    pub fn forward_in<'w, S: Data<Elem = f32>>(
        &self,
        x: &ArrayBase<S, Ix4>,
        workspace: &'w mut Workspace,
    ) -> Result<ArrayView4<'w, f32>, UNetError> {
        let (n, _, h, w) = x.dim();
        if h % 4 != 0 || w % 4 != 0 {
            return Err(UNetError::Size { got: (h, w) });
        }
        if workspace.input != Some((n, h, w)) {
            *workspace = self.workspace(n, h, w);
        }
        let Workspace {
            full,
            down1,
            half,
            quarter,
            dec2,
            dec1,
            logits,
            ..
        } = workspace;
        // The decoder's concatenations `[upsampled, skip]` are these two buffers: the
        // encoder writes its skip outputs into their second halves, so nothing is copied.
        let (mut upsampled1, mut skip1) =
            full.view_mut().split_at(Axis(1), self.up1.out_channels());
        let (mut upsampled2, mut skip2) =
            half.view_mut().split_at(Axis(1), self.up2.out_channels());
        let [q0, q1, q2, q3] = quarter;
        self.enc1.forward_into(x, &mut skip1)?;
        self.down1.forward_into(&skip1, &mut down1.view_mut())?;
        self.enc2.forward_into(down1, &mut skip2)?;
        self.down2.forward_into(&skip2, &mut q0.view_mut())?;
        self.context.0.forward_into(q0, &mut q1.view_mut())?;
        self.context.1.forward_into(q1, &mut q2.view_mut())?;
        self.context.2.forward_into(q2, &mut q3.view_mut())?;
        self.up2.forward_into(q3, &mut upsampled2)?;
        self.dec2.forward_into(half, &mut dec2.view_mut())?;
        self.up1.forward_into(dec2, &mut upsampled1)?;
        self.dec1.forward_into(full, &mut dec1.view_mut())?;
        self.head.forward_into(dec1, logits)?;
        Ok(logits.view())
    }

    /// Buffers for every activation of an `[n, 3, h, w]` input.
    fn workspace(&self, n: usize, h: usize, w: usize) -> Workspace {
        let zeros =
            |channels: usize, scale: usize| Array4::zeros((n, channels, h / scale, w / scale));
        Workspace {
            input: Some((n, h, w)),
            full: zeros(self.up1.out_channels() + self.enc1.out_channels(), 1),
            down1: zeros(self.down1.out_channels(), 2),
            half: zeros(self.up2.out_channels() + self.enc2.out_channels(), 2),
            quarter: [
                zeros(self.down2.out_channels(), 4),
                zeros(self.context.0.out_channels(), 4),
                zeros(self.context.1.out_channels(), 4),
                zeros(self.context.2.out_channels(), 4),
            ],
            dec2: zeros(self.dec2.out_channels(), 2),
            dec1: zeros(self.dec1.out_channels(), 1),
            logits: zeros(self.head.out_channels(), 1),
        }
    }
}

/// The activations of one [`DilatedUNet::forward_in`] call, kept for the next.
#[derive(Default)]
pub struct Workspace {
    /// The `(n, h, w)` of the input the buffers are for.
    input: Option<(usize, usize, usize)>,
    /// Full size: `up1`'s output, then `enc1`'s (the skip), `dec1`'s input.
    full: Array4<f32>,
    down1: Array4<f32>,
    /// Half size: `up2`'s output, then `enc2`'s (the skip), `dec2`'s input.
    half: Array4<f32>,
    /// Quarter size: `down2`'s output and the three context layers'.
    quarter: [Array4<f32>; 4],
    dec2: Array4<f32>,
    dec1: Array4<f32>,
    logits: Array4<f32>,
}
