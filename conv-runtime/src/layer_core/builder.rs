//! The builder both layers are made with beyond their defaults.

use std::marker::PhantomData;

use ndarray::{Array1, Array4};

use super::init::{SplitMix64, default_parameters};
use crate::isa::Isa;

/// Builds a [`Conv2d`](crate::Conv2d) or [`ConvTranspose2d`](crate::ConvTranspose2d) with
/// settings beyond [`new`](crate::Layer::new)'s: groups, no bias, a fixed seed, an
/// instruction set.
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
    pub(super) settings: Settings,
    layer: PhantomData<L>,
}

/// What a builder collects.
#[derive(Clone, Copy, Debug)]
pub(super) struct Settings {
    pub in_channels: usize,
    pub out_channels: usize,
    pub groups: usize,
    pub bias: bool,
    pub seed: Option<u64>,
    /// `None`: the process default.
    pub isa: Option<Isa>,
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
                isa: None,
            },
            layer: PhantomData,
        }
    }

    /// The same settings, for a layer of another type (the 1-D layers build the 2-D layer
    /// they wrap).
    pub(crate) fn retarget<M>(self) -> Builder<M> {
        Builder {
            settings: self.settings,
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

    /// Runs the layer's kernels on `isa` rather than the process default
    /// ([`Isa::default_for_process`]); `build` refuses a set that is not
    /// [available](Isa::is_available). For tests and benchmarks that compare paths.
    pub fn isa(mut self, isa: Isa) -> Self {
        self.settings.isa = Some(isa);
        self
    }
}

impl Settings {
    /// PyTorch's default parameters for a weight of `shape`.
    pub fn initial_parameters(&self, shape: [usize; 4]) -> (Array4<f32>, Option<Array1<f32>>) {
        let mut rng = match self.seed {
            Some(seed) => SplitMix64::new(seed),
            None => SplitMix64::from_entropy(),
        };
        default_parameters(shape, self.bias.then_some(self.out_channels), &mut rng)
    }
}
