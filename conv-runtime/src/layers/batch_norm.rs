//! `BatchNorm2d` and `BatchNorm1d` for inference (PyTorch's modules in `eval()` mode), and
//! folding them into the convolution before them, as onnxruntime and tract do when they load a model: the
//! normalisation is an affine map per channel, so it becomes part of that layer's weight and
//! bias and costs nothing at run time.

use ndarray::{
    Array1, Array3, Array4, ArrayBase, ArrayViewMut, Axis, Data, Dimension, Ix3, Ix4, Zip, s,
};

use crate::layer_core::{Accepts, Direction, Layer};
use crate::shape::error::{ConvError, Operation};
use crate::shape::geometry::Geometry;

/// Batch normalisation with fixed statistics, PyTorch's `nn.BatchNorm2d` in `eval()` mode:
/// `y = (x - running_mean) / sqrt(running_var + eps) * weight + bias`, per channel of an NCHW
/// input. Computed as PyTorch's CPU kernel computes it: `scale = weight / sqrt(var + eps)`,
/// `shift = bias - mean * scale`, then `y = x * scale + shift`.
///
/// ```
/// use conv_runtime::BatchNorm2d;
/// use conv_runtime::ndarray::{Array1, Array4};
///
/// // PyTorch: bn = nn.BatchNorm2d(2); bn.eval(), with its statistics set.
/// let bn = BatchNorm2d::new(
///     Array1::from(vec![1.0, 2.0]),  // weight
///     Array1::from(vec![0.0, 0.5]),  // bias
///     Array1::from(vec![1.0, -1.0]), // running_mean
///     Array1::from(vec![4.0, 1.0]),  // running_var
///     0.0,                           // eps (PyTorch's default is 1e-5)
/// )?;
/// let y = bn.forward(&Array4::<f32>::ones((1, 2, 1, 1)))?;
/// assert_eq!(y.into_raw_vec_and_offset().0, vec![0.0, 4.5]);
/// # Ok::<(), conv_runtime::ConvError>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct BatchNorm2d {
    weight: Array1<f32>,
    bias: Array1<f32>,
    running_mean: Array1<f32>,
    running_var: Array1<f32>,
    eps: f64,
}

impl BatchNorm2d {
    /// From PyTorch's tensors of the same names (`bn.weight`, `bn.bias`, `bn.running_mean`,
    /// `bn.running_var`, each `[num_features]`) and `bn.eps`. Refused when a tensor's length
    /// is not `weight`'s.
    pub fn new(
        weight: Array1<f32>,
        bias: Array1<f32>,
        running_mean: Array1<f32>,
        running_var: Array1<f32>,
        eps: f64,
    ) -> Result<Self, ConvError> {
        let expected = weight.len();
        for (name, tensor) in [
            ("bias", &bias),
            ("running_mean", &running_mean),
            ("running_var", &running_var),
        ] {
            if tensor.len() != expected {
                return Err(ConvError::BatchNormShape {
                    tensor: name,
                    expected,
                    got: tensor.len(),
                });
            }
        }
        Ok(BatchNorm2d {
            weight,
            bias,
            running_mean,
            running_var,
            eps,
        })
    }

    /// Channels normalised, PyTorch's `num_features`.
    pub fn num_features(&self) -> usize {
        self.weight.len()
    }

    /// `bn.eps`.
    pub fn eps(&self) -> f64 {
        self.eps
    }

    /// `bn.weight`, the learned scale per channel (PyTorch's gamma).
    pub fn weight(&self) -> &Array1<f32> {
        &self.weight
    }

    /// `bn.bias`, the learned shift per channel (PyTorch's beta).
    pub fn bias(&self) -> &Array1<f32> {
        &self.bias
    }

    /// `bn.running_mean`.
    pub fn running_mean(&self) -> &Array1<f32> {
        &self.running_mean
    }

    /// `bn.running_var`.
    pub fn running_var(&self) -> &Array1<f32> {
        &self.running_var
    }

    /// The affine map per channel, `(scale, shift)`: `y = x * scale + shift`.
    pub fn scale_and_shift(&self) -> (Array1<f32>, Array1<f32>) {
        // PyTorch adds eps in the tensors' precision.
        let eps = self.eps as f32;
        let scale = Zip::from(&self.weight)
            .and(&self.running_var)
            .map_collect(|&w, &var| (1.0 / (var + eps).sqrt()) * w);
        let shift = Zip::from(&self.bias)
            .and(&self.running_mean)
            .and(&scale)
            .map_collect(|&b, &mean, &scale| b - mean * scale);
        (scale, shift)
    }

    /// Normalises `x`, NCHW, any layout, into a new standard-layout array.
    pub fn forward<S: Data<Elem = f32>>(
        &self,
        x: &ArrayBase<S, Ix4>,
    ) -> Result<Array4<f32>, ConvError> {
        let channels = x.dim().1;
        if channels != self.num_features() {
            return Err(ConvError::InputChannels {
                expected: self.num_features(),
                got: channels,
            });
        }
        let (scale, shift) = self.scale_and_shift();
        let mut y = x.as_standard_layout().into_owned();
        for mut image in y.outer_iter_mut() {
            for ((mut plane, &scale), &shift) in
                image.axis_iter_mut(Axis(0)).zip(&scale).zip(&shift)
            {
                plane.mapv_inplace(|v| v * scale + shift);
            }
        }
        Ok(y)
    }
}

impl<G: Geometry, D: Direction + Accepts<G>> Layer<G, D> {
    /// This layer followed by `bn`, as one layer: each output channel's filter scaled by the
    /// normalisation's scale, its bias (zero if the layer has none) scaled and shifted. The
    /// result computes `bn.forward(layer.forward(x))` up to rounding, at the cost of the
    /// layer alone; the layer is kept on its instruction set.
    ///
    /// ```
    /// use conv_runtime::prelude::*;
    /// use conv_runtime::BatchNorm2d;
    /// use conv_runtime::ndarray::{Array1, Array4};
    ///
    /// let conv = Conv2d::builder(conv!(k = 3, padding = 1), 2, 3).bias(false).seed(1).build()?;
    /// let bn = BatchNorm2d::new(
    ///     Array1::from(vec![1.0, 0.5, 2.0]),
    ///     Array1::from(vec![0.1, 0.2, 0.3]),
    ///     Array1::from(vec![0.0, 1.0, -1.0]),
    ///     Array1::from(vec![1.0, 4.0, 0.25]),
    ///     1e-5,
    /// )?;
    /// let x = Array4::from_shape_fn((1, 2, 5, 5), |(_, c, h, w)| (c + h * w) as f32 / 10.0);
    /// let separate = bn.forward(&conv.forward(&x)?)?;
    /// let folded = conv.fold_batch_norm(&bn)?.forward(&x)?;
    /// assert!(separate.iter().zip(&folded).all(|(a, b)| (a - b).abs() < 1e-5));
    /// # Ok::<(), ConvError>(())
    /// ```
    pub fn fold_batch_norm(&self, bn: &BatchNorm2d) -> Result<Self, ConvError> {
        let out_channels = self.out_channels();
        if bn.num_features() != out_channels {
            return Err(ConvError::BatchNormFeatures {
                expected: out_channels,
                got: bn.num_features(),
            });
        }
        let (scale, shift) = bn.scale_and_shift();
        let mut weight = self.weight().clone();
        let groups = self.groups();
        match D::OPERATION {
            // `[out, in / groups, kh, kw]`: filter `o` makes output channel `o`.
            Operation::Convolution => {
                for (filter, &s) in weight.outer_iter_mut().zip(&scale) {
                    scale_in_place(filter, s);
                }
            }
            // `[in, out / groups, kh, kw]`: filter `[i, j]` makes output channel
            // `group(i) * (out / groups) + j`.
            Operation::TransposedConvolution => {
                let in_per_group = weight.dim().0 / groups;
                let out_per_group = out_channels / groups;
                for (i, mut filters) in weight.outer_iter_mut().enumerate() {
                    let first = (i / in_per_group) * out_per_group;
                    for (filter, &s) in filters.outer_iter_mut().zip(&scale.slice(s![first..])) {
                        scale_in_place(filter, s);
                    }
                }
            }
        }
        let bias = match self.bias() {
            Some(bias) => Zip::from(bias)
                .and(&scale)
                .and(&shift)
                .map_collect(|&b, &scale, &shift| b * scale + shift),
            None => shift,
        };
        Layer::from_weights(self.geometry(), weight, Some(bias), groups)?.with_isa(self.isa())
    }
}

fn scale_in_place<D: Dimension>(mut filter: ArrayViewMut<'_, f32, D>, scale: f32) {
    filter.mapv_inplace(|w| w * scale);
}

/// PyTorch's `nn.BatchNorm1d` in `eval()` mode, on `[n, c, l]` inputs (the layout of
/// [`Conv1d`](crate::Conv1d)): the same per-channel map as [`BatchNorm2d`], which it holds,
/// and which [`Layer1d::fold_batch_norm`](crate::Layer1d::fold_batch_norm) folds into the
/// 1-D convolution before it.
///
/// ```
/// use conv_runtime::BatchNorm1d;
/// use conv_runtime::ndarray::{Array1, Array3};
///
/// // PyTorch: bn = nn.BatchNorm1d(2, eps=0.0); bn.eval(), with its statistics set.
/// let bn = BatchNorm1d::new(
///     Array1::from(vec![1.0, 2.0]),  // weight
///     Array1::from(vec![0.0, 0.5]),  // bias
///     Array1::from(vec![1.0, -1.0]), // running_mean
///     Array1::from(vec![4.0, 1.0]),  // running_var
///     0.0,                           // eps
/// )?;
/// let y = bn.forward(&Array3::<f32>::ones((1, 2, 3)))?;
/// assert_eq!(y.into_raw_vec_and_offset().0, vec![0.0, 0.0, 0.0, 4.5, 4.5, 4.5]);
/// # Ok::<(), conv_runtime::ConvError>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct BatchNorm1d {
    planes: BatchNorm2d,
}

impl BatchNorm1d {
    /// From PyTorch's tensors of the same names, as [`BatchNorm2d::new`].
    pub fn new(
        weight: Array1<f32>,
        bias: Array1<f32>,
        running_mean: Array1<f32>,
        running_var: Array1<f32>,
        eps: f64,
    ) -> Result<Self, ConvError> {
        BatchNorm2d::new(weight, bias, running_mean, running_var, eps).map(Self::from)
    }

    /// The same statistics as a [`BatchNorm2d`], whose getters and affine map this shares.
    pub fn as_2d(&self) -> &BatchNorm2d {
        &self.planes
    }

    /// Normalises `x`, `[n, c, l]`, any layout, into a new standard-layout array.
    pub fn forward<S: Data<Elem = f32>>(
        &self,
        x: &ArrayBase<S, Ix3>,
    ) -> Result<Array3<f32>, ConvError> {
        let y = self.planes.forward(&x.view().insert_axis(Axis(2)))?;
        Ok(y.remove_axis(Axis(2)))
    }
}

impl From<BatchNorm2d> for BatchNorm1d {
    /// The same statistics, for `[n, c, l]` inputs.
    fn from(planes: BatchNorm2d) -> Self {
        BatchNorm1d { planes }
    }
}
