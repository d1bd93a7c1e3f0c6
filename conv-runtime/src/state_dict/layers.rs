//! The layers read from and written to a [`StateDict`] under PyTorch's names: a module at
//! `prefix` keeps `prefix.weight` and `prefix.bias` (and a batch norm its running
//! statistics), as `model.state_dict()` names them.

use ndarray::{Array, Array1, ArrayViewD, Dimension, Ix1, Ix3, Ix4};

use super::{LoadError, StateDict};
use crate::layer_core::{Accepts, Direction, Layer};
use crate::layers::batch_norm::{BatchNorm1d, BatchNorm2d};
use crate::layers::one_dimensional::Layer1d;
use crate::shape::geometry::{Geometry, Geometry1d};

/// A convolution's weight and optional bias.
type LayerParameters<D> = (Array<f32, D>, Option<Array1<f32>>);

impl StateDict {
    /// The tensor `key` as an `f32` array with `D`'s number of axes, for parameters of
    /// modules other than this crate's layers (a PReLU's slopes, say); refused with
    /// [`LoadError::Rank`] when it has another number of axes.
    ///
    /// ```
    /// use conv_runtime::StateDict;
    /// use conv_runtime::ndarray::{Ix1, arr1};
    ///
    /// let slopes = arr1(&[0.25f32, 0.1]).into_dyn();
    /// let bytes = StateDict::to_bytes([("act.weight".to_owned(), slopes.view())])?;
    /// let weights = StateDict::from_bytes(bytes)?;
    /// assert_eq!(weights.array::<Ix1>("act.weight")?, arr1(&[0.25, 0.1]));
    /// assert!(weights.array::<conv_runtime::ndarray::Ix2>("act.weight").is_err());
    /// # Ok::<(), conv_runtime::LoadError>(())
    /// ```
    pub fn array<D: Dimension>(&self, key: &str) -> Result<Array<f32, D>, LoadError> {
        let tensor = self.tensor(key)?;
        let shape = tensor.shape().to_vec();
        tensor
            .into_dimensionality::<D>()
            .map_err(|_| LoadError::Rank {
                key: key.to_owned(),
                expected: D::NDIM.unwrap_or(0),
                got: shape.len(),
                shape,
            })
    }

    /// A convolution's `prefix.weight` with `D`'s axes, and `prefix.bias` if the file has
    /// it (PyTorch leaves it out of a layer built with `bias=False`).
    fn layer_parameters<D: Dimension>(
        &self,
        prefix: &str,
    ) -> Result<LayerParameters<D>, LoadError> {
        let weight = self.array::<D>(&format!("{prefix}.weight"))?;
        let key = format!("{prefix}.bias");
        let bias = if self.contains(&key) {
            Some(self.array::<Ix1>(&key)?)
        } else {
            None
        };
        Ok((weight, bias))
    }
}

fn layer_error(prefix: &str) -> impl FnOnce(crate::ConvError) -> LoadError + '_ {
    move |source| LoadError::Layer {
        prefix: prefix.to_owned(),
        source,
    }
}

impl<G: Geometry, D: Direction + Accepts<G>> Layer<G, D> {
    /// The layer saved at `prefix` (`prefix.weight`, and `prefix.bias` if present), one
    /// group: `Conv2d::load(&weights, "decoder.up1", conv!(k = 2, stride = 2))` reads
    /// `decoder.up1.weight` and `decoder.up1.bias`. A `state_dict` does not record groups;
    /// use [`load_groups`](Self::load_groups) for a grouped or depthwise layer.
    pub fn load(weights: &StateDict, prefix: &str, geometry: G) -> Result<Self, LoadError> {
        Self::load_groups(weights, prefix, geometry, 1)
    }

    /// As [`load`](Self::load), for a layer of `groups` channel groups.
    pub fn load_groups(
        weights: &StateDict,
        prefix: &str,
        geometry: G,
        groups: usize,
    ) -> Result<Self, LoadError> {
        let (weight, bias) = weights.layer_parameters::<Ix4>(prefix)?;
        Self::from_weights(geometry, weight, bias, groups).map_err(layer_error(prefix))
    }
}

impl<G: Geometry, D: Direction> Layer<G, D> {
    /// The layer's parameters under PyTorch's names for a module at `prefix`, for
    /// [`StateDict::save`]: `prefix.weight`, and `prefix.bias` if the layer has one.
    pub fn state_dict(&self, prefix: &str) -> Vec<(String, ArrayViewD<'_, f32>)> {
        let mut tensors = vec![(format!("{prefix}.weight"), self.weight().view().into_dyn())];
        if let Some(bias) = self.bias() {
            tensors.push((format!("{prefix}.bias"), bias.view().into_dyn()));
        }
        tensors
    }
}

impl<G: Geometry1d, D: Direction + Accepts<G>> Layer1d<G, D> {
    /// The 1-D layer saved at `prefix` (a 3-D `prefix.weight`), one group.
    pub fn load(weights: &StateDict, prefix: &str, geometry: G) -> Result<Self, LoadError> {
        Self::load_groups(weights, prefix, geometry, 1)
    }

    /// As [`load`](Self::load), for a layer of `groups` channel groups.
    pub fn load_groups(
        weights: &StateDict,
        prefix: &str,
        geometry: G,
        groups: usize,
    ) -> Result<Self, LoadError> {
        let (weight, bias) = weights.layer_parameters::<Ix3>(prefix)?;
        Self::from_weights(geometry, weight, bias, groups).map_err(layer_error(prefix))
    }
}

impl<G: Geometry, D: Direction> Layer1d<G, D> {
    /// The layer's parameters under PyTorch's names for a module at `prefix`, for
    /// [`StateDict::save`]: `prefix.weight` (3-D), and `prefix.bias` if the layer has one.
    pub fn state_dict(&self, prefix: &str) -> Vec<(String, ArrayViewD<'_, f32>)> {
        let mut tensors = vec![(format!("{prefix}.weight"), self.weight().into_dyn())];
        if let Some(bias) = self.bias() {
            tensors.push((format!("{prefix}.bias"), bias.view().into_dyn()));
        }
        tensors
    }
}

impl BatchNorm2d {
    /// The batch norm saved at `prefix`: `prefix.weight`, `prefix.bias`,
    /// `prefix.running_mean` and `prefix.running_var` (`num_batches_tracked` is not needed
    /// in eval mode). `eps` is the module's (PyTorch's default `1e-5`): a `state_dict` does
    /// not record it.
    pub fn load(weights: &StateDict, prefix: &str, eps: f64) -> Result<Self, LoadError> {
        let vector = |name: &str| weights.array::<Ix1>(&format!("{prefix}.{name}"));
        BatchNorm2d::new(
            vector("weight")?,
            vector("bias")?,
            vector("running_mean")?,
            vector("running_var")?,
            eps,
        )
        .map_err(layer_error(prefix))
    }

    /// The batch norm under PyTorch's names for a module at `prefix`, for
    /// [`StateDict::save`]: `prefix.weight`, `prefix.bias`, `prefix.running_mean` and
    /// `prefix.running_var`. `num_batches_tracked` is left out: PyTorch's `load_state_dict`
    /// fills it in when absent, and only training with `momentum=None` reads it.
    pub fn state_dict(&self, prefix: &str) -> Vec<(String, ArrayViewD<'_, f32>)> {
        [
            ("weight", self.weight()),
            ("bias", self.bias()),
            ("running_mean", self.running_mean()),
            ("running_var", self.running_var()),
        ]
        .into_iter()
        .map(|(name, tensor)| (format!("{prefix}.{name}"), tensor.view().into_dyn()))
        .collect()
    }
}

impl BatchNorm1d {
    /// The batch norm saved at `prefix`, under the names [`BatchNorm2d::load`] reads.
    pub fn load(weights: &StateDict, prefix: &str, eps: f64) -> Result<Self, LoadError> {
        BatchNorm2d::load(weights, prefix, eps).map(Self::from)
    }

    /// Its tensors under PyTorch's names, as [`BatchNorm2d::state_dict`].
    pub fn state_dict(&self, prefix: &str) -> Vec<(String, ArrayViewD<'_, f32>)> {
        self.as_2d().state_dict(prefix)
    }
}
