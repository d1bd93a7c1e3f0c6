//! FSRCNN x3 (Dong, Loy and Tang, ECCV 2016), ported from `tools/networks.py`'s `Fsrcnn`
//! and loaded from its `state_dict` by PyTorch's key names. Shared by `examples/fsrcnn`
//! and `tests/networks.rs`, so the test checks exactly the code the example runs.

use conv_runtime::ndarray::{
    Array1, Array4, ArrayBase, ArrayView3, ArrayView4, Axis, Data, Ix1, Ix4,
};
use conv_runtime::prelude::*;
use conv_runtime::{Accepts, Convolution, Direction, Layer, LoadError, StateDict};

conv! {
    /// Feature extraction: 5x5, the input's size kept.
    pub struct Feature; k = 5, padding = 2
}
conv! {
    /// The 1x1 shrink and expand.
    pub struct Pointwise; k = 1
}
conv! {
    /// The mapping layers: 3x3, the size kept.
    pub struct Mapping; k = 3, padding = 1
}
conv! {
    /// The upsampling: a 9x9 transposed convolution with stride 3 (PyTorch's
    /// `ConvTranspose2d(d, 1, 9, stride=3, padding=4, output_padding=2)`), so that an `h x w`
    /// input gives exactly `3h x 3w`. Split into 3 x 3 dense phases of 3x3 taps each.
    pub struct Upscale; k = 9, stride = 3, padding = 4, output_padding = 2
}

/// PyTorch's `nn.PReLU(channels)`: `x` where positive, `slope[c] * x` elsewhere, a learned
/// slope per channel (or one for all, `nn.PReLU()`). Small ndarray code, not a layer of the
/// library: it has no geometry to specialise.
#[derive(Clone, Debug)]
pub struct Prelu {
    slopes: Array1<f32>,
}

impl Prelu {
    /// `prefix.weight`: one slope, or one per channel of the `channels` the module sees.
    pub fn load(weights: &StateDict, prefix: &str, channels: usize) -> Result<Prelu, LoadError> {
        let key = format!("{prefix}.weight");
        let slopes = weights.array::<Ix1>(&key)?;
        if slopes.len() != 1 && slopes.len() != channels {
            return Err(LoadError::Shape {
                key,
                expected: vec![channels],
                got: vec![slopes.len()],
            });
        }
        Ok(Prelu { slopes })
    }

    /// Applies the slopes in place to `x`, NCHW with the channels given at load.
    pub fn apply(&self, x: &mut Array4<f32>) {
        for mut image in x.outer_iter_mut() {
            for (c, mut plane) in image.outer_iter_mut().enumerate() {
                let slope = self.slopes[c % self.slopes.len()];
                // PyTorch's `x > 0 ? x : slope * x`: NaN stays NaN, -0.0 becomes slope * -0.0.
                plane.mapv_inplace(|v| if v > 0.0 { v } else { slope * v });
            }
        }
    }
}

/// A convolution followed by its PReLU, saved as `prefix` and `prelu_prefix`.
pub struct ConvPrelu<G: Geometry> {
    conv: Conv2d<G>,
    prelu: Prelu,
}

impl<G: Geometry> ConvPrelu<G>
where
    Convolution: Accepts<G>,
{
    fn load(
        weights: &StateDict,
        prefix: &str,
        prelu_prefix: &str,
        geometry: G,
    ) -> Result<Self, LoadError> {
        let conv = Conv2d::load(weights, prefix, geometry)?;
        let prelu = Prelu::load(weights, prelu_prefix, conv.out_channels())?;
        Ok(ConvPrelu { conv, prelu })
    }

    fn out_channels(&self) -> usize {
        self.conv.out_channels()
    }

    /// `prelu(conv(x))` into `out`.
    fn forward_into<S: Data<Elem = f32>>(
        &self,
        x: &ArrayBase<S, Ix4>,
        out: &mut Array4<f32>,
    ) -> Result<(), ConvError> {
        self.conv.forward_into(x, out)?;
        self.prelu.apply(out);
        Ok(())
    }

    fn parameter_count(&self) -> usize {
        parameter_count(&self.conv) + self.prelu.slopes.len()
    }
}

fn parameter_count<G: Geometry, D: Direction>(layer: &Layer<G, D>) -> usize {
    layer.weight().len() + layer.bias().map_or(0, |b| b.len())
}

/// FSRCNN(d, s, m) for x3 on one-channel images: `feature` (5x5, 1 -> d), `shrink` (1x1,
/// d -> s), `m` `mapping` layers (3x3, s -> s), `expand` (1x1, s -> d), each followed by its
/// PReLU (`feature_prelu`, ..., `mapping_prelu.N`, ...), then `deconv` (9x9 transposed,
/// stride 3, d -> 1).
pub struct Fsrcnn {
    feature: ConvPrelu<Feature>,
    shrink: ConvPrelu<Pointwise>,
    mapping: Vec<ConvPrelu<Mapping>>,
    expand: ConvPrelu<Pointwise>,
    deconv: ConvTranspose2d<Upscale>,
}

/// The upsampling factor.
pub const SCALE: usize = 3;

impl Fsrcnn {
    /// The network `tools/networks.py`'s `Fsrcnn` saved as a `state_dict`, any `d`, `s`
    /// and `m` (read from the tensors' shapes and the `mapping.N` keys present).
    pub fn load(weights: &StateDict) -> Result<Fsrcnn, LoadError> {
        let mut mapping = Vec::new();
        while weights.contains(&format!("mapping.{}.weight", mapping.len())) {
            let index = mapping.len();
            let (conv, prelu) = (format!("mapping.{index}"), format!("mapping_prelu.{index}"));
            mapping.push(ConvPrelu::load(weights, &conv, &prelu, Mapping)?);
        }
        Ok(Fsrcnn {
            feature: ConvPrelu::load(weights, "feature", "feature_prelu", Feature)?,
            shrink: ConvPrelu::load(weights, "shrink", "shrink_prelu", Pointwise)?,
            mapping,
            expand: ConvPrelu::load(weights, "expand", "expand_prelu", Pointwise)?,
            deconv: ConvTranspose2d::load(weights, "deconv", Upscale)?,
        })
    }

    /// The `[n, 1, 3h, 3w]` upscaling of `x`, `[n, 1, h, w]` (any layout). Allocates its
    /// activations for the call; a program that upscales many pictures keeps a
    /// [`Workspace`] and calls [`forward_in`](Self::forward_in).
    pub fn forward<S: Data<Elem = f32>>(
        &self,
        x: &ArrayBase<S, Ix4>,
    ) -> Result<Array4<f32>, ConvError> {
        let mut workspace = Workspace::default();
        self.forward_in(x, &mut workspace)?;
        Ok(workspace.output)
    }

    /// As [`forward`](Self::forward), with the activations in `workspace`, (re)allocated
    /// when the input's shape changes and otherwise reused (fresh memory is slow to fault
    /// in on some machines, VMs above all). The output is a view into the workspace.
    pub fn forward_in<'w, S: Data<Elem = f32>>(
        &self,
        x: &ArrayBase<S, Ix4>,
        workspace: &'w mut Workspace,
    ) -> Result<ArrayView4<'w, f32>, ConvError> {
        let (n, _, h, w) = x.dim();
        if workspace.input != Some((n, h, w)) {
            *workspace = self.workspace(n, h, w);
        }
        let Workspace {
            wide, thin, output, ..
        } = workspace;
        let [current, next] = thin;
        let (mut current, mut next) = (current, next);
        self.feature.forward_into(x, wide)?;
        self.shrink.forward_into(wide, current)?;
        for layer in &self.mapping {
            layer.forward_into(current, next)?;
            std::mem::swap(&mut current, &mut next);
        }
        self.expand.forward_into(current, wide)?;
        self.deconv.forward_into(wide, output)?;
        Ok(output.view())
    }

    /// Buffers for every activation of an `[n, 1, h, w]` input: `d` channels (the feature
    /// extraction's output, later the expansion's), twice `s` channels (the shrink and
    /// mapping layers, in turn), and the output.
    fn workspace(&self, n: usize, h: usize, w: usize) -> Workspace {
        let low = |channels: usize| Array4::zeros((n, channels, h, w));
        let thin = self.shrink.out_channels();
        Workspace {
            input: Some((n, h, w)),
            wide: low(self.feature.out_channels()),
            thin: [low(thin), low(thin)],
            output: Array4::zeros((n, self.deconv.out_channels(), SCALE * h, SCALE * w)),
        }
    }

    /// Upscales each channel of `picture`, `[c, h, w]`, as a one-channel image, into
    /// `workspace`: `[c, 3h, 3w]`.
    pub fn upscale_channels<'w>(
        &self,
        picture: &ArrayView3<f32>,
        workspace: &'w mut Workspace,
    ) -> Result<ArrayView3<'w, f32>, ConvError> {
        let batch = picture.view().insert_axis(Axis(1));
        Ok(self.forward_in(&batch, workspace)?.remove_axis(Axis(1)))
    }

    /// The number of parameters (weights, biases and slopes).
    pub fn parameter_count(&self) -> usize {
        self.feature.parameter_count()
            + self.shrink.parameter_count()
            + self
                .mapping
                .iter()
                .map(ConvPrelu::parameter_count)
                .sum::<usize>()
            + self.expand.parameter_count()
            + parameter_count(&self.deconv)
    }
}

/// The activations of one [`Fsrcnn::forward_in`] call, kept for the next.
#[derive(Default)]
pub struct Workspace {
    /// The `(n, h, w)` of the input the buffers are for.
    input: Option<(usize, usize, usize)>,
    wide: Array4<f32>,
    thin: [Array4<f32>; 2],
    output: Array4<f32>,
}
