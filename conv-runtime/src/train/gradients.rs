//! The gradients a layer's `backward` returns, and the bias gradient, which every layer
//! computes the same way.

use ndarray::{Array, Array1, Array4, ArrayView4, Axis, Dimension, Ix3, Ix4};
use rayon::prelude::*;

/// The gradients of a loss with respect to a layer's input and parameters, given the
/// gradient with respect to its output: what PyTorch's autograd puts in `x.grad`,
/// `layer.weight.grad` and `layer.bias.grad`.
///
/// Returned by [`Conv2d::backward`](crate::Conv2d::backward) and
/// [`ConvTranspose2d::backward`](crate::ConvTranspose2d::backward) (`D` = `Ix4`: NCHW input,
/// `[_, _, kh, kw]` weight) and by the 1-D layers' `backward` (`D` = `Ix3`); an optimiser in
/// [`optim`](crate::optim) applies it to the layer.
///
/// ```
/// use conv_runtime::prelude::*;
/// use conv_runtime::ndarray::Array4;
///
/// let layer = Conv2d::builder(conv!(k = 3, padding = 1), 2, 4).seed(1).build()?;
/// let x = Array4::<f32>::ones((1, 2, 5, 5));
/// let y = layer.forward(&x)?;
/// // The loss sum(y) has gradient 1 with respect to every output.
/// let grads = layer.backward(&x, &Array4::ones(y.dim()))?;
/// assert_eq!(grads.input.shape(), x.shape());
/// assert_eq!(grads.weight.shape(), layer.weight().shape());
/// // d sum(y) / d bias[o] counts the outputs of channel o.
/// assert!(grads.bias.unwrap().iter().all(|&b| b == 25.0));
/// # Ok::<(), ConvError>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Gradients<D: Dimension = Ix4> {
    /// With respect to the input, the input's shape.
    pub input: Array<f32, D>,
    /// With respect to the weight, the weight's shape (PyTorch's layout for the layer).
    pub weight: Array<f32, D>,
    /// With respect to the bias, `[out_channels]`; `None` when the layer has no bias.
    pub bias: Option<Array1<f32>>,
}

impl Gradients {
    /// The gradients from the input and weight gradients; the bias gradient, if the layer
    /// `has_bias`, from `grad_output`.
    pub(crate) fn new(
        input: Array4<f32>,
        weight: Array4<f32>,
        has_bias: bool,
        grad_output: &ArrayView4<f32>,
    ) -> Self {
        Gradients {
            input,
            weight,
            bias: has_bias.then(|| bias_grad(grad_output)),
        }
    }

    /// The gradients of a 1-D layer run as a 2-D one on inputs one row high: the input
    /// `[n, c, 1, l]` and weight `[_, _, 1, k]` lose their row axis (no copy).
    pub(crate) fn without_rows(self) -> Gradients<Ix3> {
        Gradients {
            input: self.input.remove_axis(Axis(2)),
            weight: self.weight.remove_axis(Axis(2)),
            bias: self.bias,
        }
    }
}

/// Below this many values the bias gradient is summed on the calling thread.
const PARALLEL_THRESHOLD: usize = 1 << 18;

/// The bias gradient: `grad_output` summed over the batch and both spatial axes, per
/// channel. Each channel is summed by one task in a fixed order, whatever the thread count.
fn bias_grad(grad_output: &ArrayView4<f32>) -> Array1<f32> {
    let channel_sum = |channel: usize| {
        // Eight running sums, so that the compiler can keep them in one vector register.
        let mut sums = [0.0f32; 8];
        for image in grad_output.outer_iter() {
            for row in image.index_axis(Axis(0), channel).outer_iter() {
                match row.as_slice() {
                    Some(row) => {
                        let chunks = row.chunks_exact(8);
                        let rest = chunks.remainder();
                        for chunk in chunks {
                            for (sum, &value) in sums.iter_mut().zip(chunk) {
                                *sum += value;
                            }
                        }
                        for (sum, &value) in sums.iter_mut().zip(rest) {
                            *sum += value;
                        }
                    }
                    None => {
                        for (i, &value) in row.iter().enumerate() {
                            sums[i % 8] += value;
                        }
                    }
                }
            }
        }
        sums.iter().sum::<f32>()
    };
    let channels = grad_output.dim().1;
    let sums: Vec<f32> = if grad_output.len() >= PARALLEL_THRESHOLD {
        (0..channels).into_par_iter().map(channel_sum).collect()
    } else {
        (0..channels).map(channel_sum).collect()
    };
    Array1::from(sums)
}
