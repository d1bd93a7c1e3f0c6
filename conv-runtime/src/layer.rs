//! What `Conv2d` and `ConvTranspose2d` share: the builder, parameter checks, the checks on
//! each input, and the engine that runs the kernels.

use std::marker::PhantomData;

use ndarray::{Array1, Array4, ArrayBase, ArrayView4, ArrayViewMut4, Data, DataMut, Ix4};

use crate::driver::{self, Parameters, Plan};
use crate::error::{ConvError, Operation};
use crate::init::{SplitMix64, default_parameters};
use crate::pack::PackedWeights;
use crate::{Geometry, GeometrySpec};

/// Builds a [`Conv2d`](crate::Conv2d) or [`ConvTranspose2d`](crate::ConvTranspose2d) with
/// settings beyond [`new`](crate::Conv2d::new)'s: groups, no bias, a fixed seed.
///
/// ```
/// use conv_runtime::prelude::*;
///
/// // PyTorch: nn.Conv2d(32, 64, 3, padding=1, groups=4, bias=False)
/// let layer = Conv2d::builder(conv!(k = 3, padding = 1), 32, 64)
///     .groups(4)
///     .bias(false)
///     .seed(7)
///     .build()?;
/// assert_eq!(layer.weight().shape(), &[64, 8, 3, 3]);
/// assert!(layer.bias().is_none());
/// # Ok::<(), ConvError>(())
/// ```
#[derive(Clone, Debug)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct Builder<L> {
    pub(crate) settings: Settings,
    layer: PhantomData<L>,
}

/// What a builder collects.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Settings {
    pub in_channels: usize,
    pub out_channels: usize,
    pub groups: usize,
    pub bias: bool,
    pub seed: Option<u64>,
}

impl<L> Builder<L> {
    pub(crate) fn new(in_channels: usize, out_channels: usize) -> Self {
        Builder {
            settings: Settings {
                in_channels,
                out_channels,
                groups: 1,
                bias: true,
                seed: None,
            },
            layer: PhantomData,
        }
    }

    /// Splits the channels into `groups` independent groups, as PyTorch's `groups`
    /// (`groups == in_channels` is a depthwise convolution). Default 1.
    pub fn groups(mut self, groups: usize) -> Self {
        self.settings.groups = groups;
        self
    }

    /// Whether the layer adds a learnable bias. Default `true`.
    pub fn bias(mut self, bias: bool) -> Self {
        self.settings.bias = bias;
        self
    }

    /// Makes the initial weights and bias a deterministic function of `seed`.
    pub fn seed(mut self, seed: u64) -> Self {
        self.settings.seed = Some(seed);
        self
    }
}

impl Settings {
    /// PyTorch's default parameters for a weight of `shape`.
    pub fn initial_parameters(&self, shape: [usize; 4]) -> (Array4<f32>, Option<Array1<f32>>) {
        check_channels(self.in_channels, self.out_channels, self.groups)
            .expect("checked before initialisation");
        let mut rng = match self.seed {
            Some(seed) => SplitMix64::new(seed),
            None => SplitMix64::from_entropy(),
        };
        default_parameters(shape, self.bias.then_some(self.out_channels), &mut rng)
    }
}

/// Both channel counts at least 1, and `groups` at least 1 and dividing both.
pub(crate) fn check_channels(
    in_channels: usize,
    out_channels: usize,
    groups: usize,
) -> Result<(), ConvError> {
    if in_channels == 0 || out_channels == 0 {
        return Err(ConvError::ZeroChannels {
            in_channels,
            out_channels,
        });
    }
    if groups == 0 || !in_channels.is_multiple_of(groups) || !out_channels.is_multiple_of(groups) {
        return Err(ConvError::Groups {
            groups,
            in_channels,
            out_channels,
        });
    }
    Ok(())
}

/// The weight's kernel axes match the geometry's kernel size.
pub(crate) fn check_kernel(spec: &GeometrySpec, weight: &Array4<f32>) -> Result<(), ConvError> {
    let got: [usize; 4] = weight.dim().into();
    if (got[2], got[3]) != spec.kernel_size {
        return Err(ConvError::KernelSize {
            expected: spec.kernel_size,
            got,
        });
    }
    Ok(())
}

/// The bias, if any, has one value per output channel.
pub(crate) fn check_bias(bias: Option<&Array1<f32>>, out_channels: usize) -> Result<(), ConvError> {
    match bias {
        Some(bias) if bias.len() != out_channels => Err(ConvError::BiasShape {
            expected: out_channels,
            got: bias.len(),
        }),
        _ => Ok(()),
    }
}

/// The output shape for an input of `shape`, after checking its channels and size.
pub(crate) fn output_shape(
    shape: [usize; 4],
    in_channels: usize,
    out_channels: usize,
    spec: &GeometrySpec,
    operation: Operation,
) -> Result<[usize; 4], ConvError> {
    let [batch, channels, h, w] = shape;
    if channels != in_channels {
        return Err(ConvError::InputChannels {
            expected: in_channels,
            got: channels,
        });
    }
    let (min, size) = match operation {
        Operation::Convolution => (spec.min_input_size(), spec.output_size((h, w))),
        Operation::TransposedConvolution => (
            spec.transposed_min_input_size(),
            spec.transposed_output_size((h, w)),
        ),
    };
    if h < min.0 || w < min.1 {
        return Err(ConvError::InputTooSmall {
            operation,
            min,
            got: (h, w),
        });
    }
    let (out_h, out_w) = size.ok_or(ConvError::TooLarge { got: (h, w) })?;
    Ok([batch, out_channels, out_h, out_w])
}

/// The shape `forward_into` was given matches the output's.
pub(crate) fn check_output<S: Data<Elem = f32>>(
    out: &ArrayBase<S, Ix4>,
    expected: [usize; 4],
) -> Result<(), ConvError> {
    let got: [usize; 4] = out.dim().into();
    if got != expected {
        return Err(ConvError::OutputShape { expected, got });
    }
    Ok(())
}

/// A layer's parameters as the kernels read them, and the kernels chosen for its geometry.
#[derive(Clone)]
pub(crate) struct Engine {
    plan: Plan,
    packed: PackedWeights,
    /// One per output channel, zeros when the layer has no bias.
    bias: Vec<f32>,
    groups: usize,
    operation: Operation,
}

impl Engine {
    pub fn conv<G: Geometry>(
        weight: &Array4<f32>,
        bias: Option<&Array1<f32>>,
        groups: usize,
    ) -> Engine {
        let out_channels = weight.dim().0;
        let (plan, block) =
            crate::dispatch::plan::<crate::kernel::Forward<G>>(out_channels / groups);
        Engine {
            plan,
            packed: PackedWeights::conv(weight.view(), groups, block),
            bias: bias_values(bias, out_channels),
            groups,
            operation: Operation::Convolution,
        }
    }

    pub fn transposed<G: Geometry>(
        weight: &Array4<f32>,
        bias: Option<&Array1<f32>>,
        groups: usize,
    ) -> Engine {
        let out_channels = weight.dim().1 * groups;
        let (plan, block) =
            crate::dispatch::plan::<crate::kernel::Transposed<G>>(out_channels / groups);
        Engine {
            plan,
            packed: PackedWeights::transposed(weight.view(), groups, block),
            bias: bias_values(bias, out_channels),
            groups,
            operation: Operation::TransposedConvolution,
        }
    }

    /// The instruction set the layer's kernels use.
    pub fn isa(&self) -> crate::Isa {
        self.plan.isa
    }

    /// Runs the layer on a checked input into an output of the checked shape.
    pub fn run<S: Data<Elem = f32>, T: DataMut<Elem = f32>>(
        &self,
        input: &ArrayBase<S, Ix4>,
        out: &mut ArrayBase<T, Ix4>,
    ) {
        if out.is_standard_layout() {
            self.run_standard(&input.view(), &mut out.view_mut());
        } else {
            // The kernels write rows in place; a caller's strided view gets a copy.
            let mut standard = Array4::zeros(out.dim());
            self.run_standard(&input.view(), &mut standard.view_mut());
            out.assign(&standard);
        }
    }

    fn run_standard(&self, input: &ArrayView4<f32>, out: &mut ArrayViewMut4<f32>) {
        if out.is_empty() {
            return;
        }
        let params = Parameters {
            packed: &self.packed,
            bias: &self.bias,
            groups: self.groups,
        };
        match self.operation {
            Operation::Convolution => driver::convolve(&self.plan, &params, input, out),
            Operation::TransposedConvolution => {
                driver::convolve_transposed(&self.plan, &params, input, out)
            }
        }
    }
}

fn bias_values(bias: Option<&Array1<f32>>, out_channels: usize) -> Vec<f32> {
    match bias {
        Some(bias) => bias.to_vec(),
        None => vec![0.0; out_channels],
    }
}
