//! The super-resolution network: dilated convolutions for context, a transposed convolution
//! for the x2 upsampling, predicting what bilinear interpolation misses.
//!
//! ```text
//! x (1 channel, h x w) ─┬─ conv 3x3 ─ ReLU ─ conv 3x3 dil 2 ─ ReLU ─ conv 3x3 dil 4 ─ ReLU
//!                       │   ─ conv 3x3 ─ ReLU ─ upconv 4x4 stride 2 ─┐
//!                       └─ bilinear x2 ──────────────────────────────(+)─ y (2h x 2w)
//! ```
//!
//! The network sees one colour plane at a time (R, G and B are three samples of the same
//! single-channel problem), so that it trains within the demo's minute and applies to any
//! picture.

use conv_runtime::GeometrySpec;
use conv_runtime::ndarray::{Array4, ArrayBase, Data, Ix4, Zip};
use conv_runtime::optim::Adam;
use conv_runtime::prelude::*;

conv! {
    /// 3x3 taps side by side: local detail.
    pub struct Local; k = 3, padding = 1
}
conv! {
    /// 3x3 taps two pixels apart: a 5x5 window for 9 weights.
    pub struct Dilated2; k = 3, dilation = 2, padding = 2
}
conv! {
    /// 3x3 taps four pixels apart: a 9x9 window for 9 weights.
    pub struct Dilated4; k = 3, dilation = 4, padding = 4
}
conv! {
    /// 4x4 taps at stride 2: each input pixel spreads into an overlapping, learned 4x4 block
    /// of the twice-as-large output.
    pub struct Up2; k = 4, stride = 2, padding = 1
}

/// The receptive field after one layer, `(h, w)` in low-resolution pixels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceptiveField {
    /// The layer, as text.
    pub layer: String,
    /// With the network's dilations.
    pub with: (usize, usize),
    /// The same stack with every dilation 1.
    pub without: (usize, usize),
}

/// `max(x, 0)`, elementwise.
pub fn relu(x: &Array4<f32>) -> Array4<f32> {
    x.mapv(|v| v.max(0.0))
}

/// The gradient through a ReLU: `grad` where the ReLU's input `pre` was positive, else 0.
pub fn relu_backward(grad: &Array4<f32>, pre: &Array4<f32>) -> Array4<f32> {
    Zip::from(grad)
        .and(pre)
        .map_collect(|&g, &p| if p > 0.0 { g } else { 0.0 })
}

/// The network: four convolutions with ReLU between, an upconvolution, and the bilinear
/// upsampling it corrects.
pub struct Network {
    head: Conv2d<Local>,
    context2: Conv2d<Dilated2>,
    context4: Conv2d<Dilated4>,
    tail: Conv2d<Local>,
    up: ConvTranspose2d<Up2>,
    bilinear: Upsample,
    /// One Adam per layer (optimisers keep per-parameter state).
    optimizers: [Adam; 5],
}

/// What one forward pass keeps for the backward pass.
pub struct Activations {
    input: Array4<f32>,
    /// The four convolutions' outputs, before their ReLU.
    pre: [Array4<f32>; 4],
    /// After their ReLU.
    post: [Array4<f32>; 4],
    /// `bilinear(x) + residual`.
    pub output: Array4<f32>,
}

/// The input is centred on 0 (pixel values are in `[0, 1]`).
const INPUT_OFFSET: f32 = 0.5;

impl Network {
    /// A network with `features` channels inside, initialised from `seed` (PyTorch's
    /// default initialisation; the last layer scaled down so that training starts from
    /// bilinear), trained with Adam at `learning_rate`.
    pub fn new(features: usize, seed: u64, learning_rate: f64) -> Result<Network, ConvError> {
        let seed = |layer: u64| seed.wrapping_mul(16).wrapping_add(layer);
        let mut up = ConvTranspose2d::builder(Up2, features, 1)
            .seed(seed(4))
            .build()?;
        up.update_parameters(|mut weight, bias| {
            weight *= 0.1;
            if let Some(mut bias) = bias {
                bias.fill(0.0);
            }
        });
        Ok(Network {
            head: Conv2d::builder(Local, 1, features).seed(seed(0)).build()?,
            context2: Conv2d::builder(Dilated2, features, features)
                .seed(seed(1))
                .build()?,
            context4: Conv2d::builder(Dilated4, features, features)
                .seed(seed(2))
                .build()?,
            tail: Conv2d::builder(Local, features, features)
                .seed(seed(3))
                .build()?,
            up,
            bilinear: Upsample::bilinear(2, false)?,
            optimizers: std::array::from_fn(|_| Adam::new(learning_rate)),
        })
    }

    /// The number of learned parameters.
    pub fn parameter_count(&self) -> usize {
        let count = |weight: usize, bias: Option<usize>| weight + bias.unwrap_or(0);
        count(self.head.weight().len(), self.head.bias().map(|b| b.len()))
            + count(
                self.context2.weight().len(),
                self.context2.bias().map(|b| b.len()),
            )
            + count(
                self.context4.weight().len(),
                self.context4.bias().map(|b| b.len()),
            )
            + count(self.tail.weight().len(), self.tail.bias().map(|b| b.len()))
            + count(self.up.weight().len(), self.up.bias().map(|b| b.len()))
    }

    /// `x` (`[n, 1, h, w]`, values in `[0, 1]`) upsampled x2: `[n, 1, 2h, 2w]`, keeping
    /// what the backward pass needs.
    pub fn forward<S: Data<Elem = f32>>(
        &self,
        x: &ArrayBase<S, Ix4>,
    ) -> Result<Activations, ConvError> {
        let input = x.mapv(|v| v - INPUT_OFFSET);
        let pre0 = self.head.forward(&input)?;
        let post0 = relu(&pre0);
        let pre1 = self.context2.forward(&post0)?;
        let post1 = relu(&pre1);
        let pre2 = self.context4.forward(&post1)?;
        let post2 = relu(&pre2);
        let pre3 = self.tail.forward(&post2)?;
        let post3 = relu(&pre3);
        let residual = self.up.forward(&post3)?;
        let output = self.bilinear.forward(x)? + residual;
        Ok(Activations {
            input,
            pre: [pre0, pre1, pre2, pre3],
            post: [post0, post1, post2, post3],
            output,
        })
    }

    /// `x` upsampled x2, for inference.
    pub fn upsample<S: Data<Elem = f32>>(
        &self,
        x: &ArrayBase<S, Ix4>,
    ) -> Result<Array4<f32>, ConvError> {
        Ok(self.forward(x)?.output)
    }

    /// Backpropagates `grad_output` (the loss's gradient with respect to
    /// `activations.output`) and takes one Adam step on every layer.
    pub fn backward_and_step(
        &mut self,
        activations: &Activations,
        grad_output: &Array4<f32>,
    ) -> Result<(), ConvError> {
        let Activations {
            input, pre, post, ..
        } = activations;
        // The bilinear branch has no parameters, and the input needs no gradient.
        let up = self.up.backward(&post[3], grad_output)?;
        let tail = self
            .tail
            .backward(&post[2], &relu_backward(&up.input, &pre[3]))?;
        let context4 = self
            .context4
            .backward(&post[1], &relu_backward(&tail.input, &pre[2]))?;
        let context2 = self
            .context2
            .backward(&post[0], &relu_backward(&context4.input, &pre[1]))?;
        let head = self
            .head
            .backward(input, &relu_backward(&context2.input, &pre[0]))?;
        let [o_head, o_context2, o_context4, o_tail, o_up] = &mut self.optimizers;
        o_up.step(&mut self.up, &up)?;
        o_tail.step(&mut self.tail, &tail)?;
        o_context4.step(&mut self.context4, &context4)?;
        o_context2.step(&mut self.context2, &context2)?;
        o_head.step(&mut self.head, &head)?;
        Ok(())
    }

    /// The receptive field of each layer's output, in input (low-resolution) pixels, with
    /// the dilations and for the same stack without them.
    pub fn receptive_fields(&self) -> Vec<ReceptiveField> {
        let f = self.head.out_channels();
        let convs: [(String, GeometrySpec, (usize, usize)); 4] = [
            (
                format!("conv 1->{f} 3x3"),
                Local::SPEC,
                Local::RECEPTIVE_FIELD,
            ),
            (
                format!("conv {f}->{f} 3x3 dilation 2"),
                Dilated2::SPEC,
                Dilated2::RECEPTIVE_FIELD,
            ),
            (
                format!("conv {f}->{f} 3x3 dilation 4"),
                Dilated4::SPEC,
                Dilated4::RECEPTIVE_FIELD,
            ),
            (
                format!("conv {f}->{f} 3x3"),
                Local::SPEC,
                Local::RECEPTIVE_FIELD,
            ),
        ];
        let mut rows = Vec::new();
        let (mut with, mut without) = ((1, 1), (1, 1));
        let grow =
            |field: (usize, usize), by: (usize, usize)| (field.0 + by.0 - 1, field.1 + by.1 - 1);
        for (name, spec, field) in convs {
            let undilated = GeometrySpec {
                dilation: (1, 1),
                ..spec
            };
            with = grow(with, field);
            without = grow(without, undilated.receptive_field());
            rows.push(ReceptiveField {
                layer: name,
                with,
                without,
            });
        }
        // Each output pixel of the stride-2 upconvolution reads ceil(4 / 2) = 2 inputs per
        // axis.
        let (k, stride) = (Up2::RECEPTIVE_FIELD, Up2::STRIDE);
        let reads = (k.0.div_ceil(stride.0), k.1.div_ceil(stride.1));
        rows.push(ReceptiveField {
            layer: format!("upconv {f}->1 4x4 stride 2"),
            with: grow(with, reads),
            without: grow(without, reads),
        });
        rows
    }
}
