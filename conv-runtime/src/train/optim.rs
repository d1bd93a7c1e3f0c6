//! Optimisers, so that a layer can be trained without another crate: [`Sgd`] (with momentum,
//! Nesterov momentum and weight decay) and [`Adam`], with PyTorch's update rules and defaults.
//!
//! An optimiser applies a layer's [`Gradients`] to its parameters through the [`Trainable`]
//! trait, which both layers implement and which keeps the layer's packed kernel weights in
//! step with the new values. Optimisers with state (momentum, moment estimates) create it on
//! their first step, for the layer they are stepped on: **use one optimiser per layer**
//! (stepping one optimiser on layers with parameters of different shapes is refused with
//! [`ConvError::OptimizerState`]).
//!
//! Training a layer to copy another (a least-squares fit), with the loss falling:
//!
//! ```
//! use conv_runtime::prelude::*;
//! use conv_runtime::optim::Adam;
//! use conv_runtime::ndarray::Array4;
//!
//! conv! { struct K3; k = 3, padding = 1 }
//! let teacher = Conv2d::builder(K3, 2, 3).seed(1).build()?;
//! let mut student = Conv2d::builder(K3, 2, 3).seed(2).build()?;
//! let mut adam = Adam::new(0.02);
//! let x = Array4::from_shape_fn((2, 2, 8, 8), |(n, c, h, w)| ((n + 3 * c + h * w) % 7) as f32 - 3.0);
//! let target = teacher.forward(&x)?;
//!
//! let mut losses = Vec::new();
//! for _ in 0..50 {
//!     let y = student.forward(&x)?;
//!     let error = &y - &target;
//!     // The loss mean((y - target)^2) has gradient 2 (y - target) / len.
//!     losses.push(error.mapv(|e| e * e).mean().unwrap());
//!     let grads = student.backward(&x, &(error * (2.0 / y.len() as f32)))?;
//!     adam.step(&mut student, &grads)?;
//! }
//! assert!(losses[49] < 0.1 * losses[0], "{} -> {}", losses[0], losses[49]);
//! # Ok::<(), ConvError>(())
//! ```
//!
//! A model with several layers keeps one optimiser beside each:
//!
//! ```
//! use conv_runtime::prelude::*;
//! use conv_runtime::optim::Sgd;
//! use conv_runtime::ndarray::Array4;
//!
//! conv! { struct Down; k = 3, stride = 2, padding = 1 }
//! conv! { struct Up; k = 4, stride = 2, padding = 1 }
//!
//! struct Model {
//!     down: (Conv2d<Down>, Sgd),
//!     up: (ConvTranspose2d<Up>, Sgd),
//! }
//!
//! let sgd = Sgd::new(0.01).momentum(0.9);
//! let mut model = Model {
//!     down: (Conv2d::new(Down, 1, 4), sgd.clone()),
//!     up: (ConvTranspose2d::new(Up, 4, 1), sgd),
//! };
//! let x = Array4::<f32>::ones((1, 1, 8, 8));
//! let hidden = model.down.0.forward(&x)?;
//! let y = model.up.0.forward(&hidden)?;
//! // Backward through both layers, last first; then one step each.
//! let up_grads = model.up.0.backward(&hidden, &y)?; // the gradient of sum(y^2) / 2
//! let down_grads = model.down.0.backward(&x, &up_grads.input)?;
//! model.up.1.step(&mut model.up.0, &up_grads)?;
//! model.down.1.step(&mut model.down.0, &down_grads)?;
//! # Ok::<(), ConvError>(())
//! ```

use ndarray::{
    Array1, ArrayD, ArrayView, ArrayView1, ArrayViewD, ArrayViewMut, ArrayViewMut1, ArrayViewMutD,
    Dimension, Zip,
};

use super::gradients::Gradients;
use crate::shape::error::{ConvError, Parameter};

/// A layer with learnable parameters: what an optimiser needs. Implemented by
/// [`Conv2d`](crate::Conv2d) and [`ConvTranspose2d`](crate::ConvTranspose2d) (4-D weights)
/// and by [`Conv1d`](crate::Conv1d) and [`ConvTranspose1d`](crate::ConvTranspose1d) (3-D).
///
/// ```
/// use conv_runtime::prelude::*;
/// use conv_runtime::ndarray::Array4;
///
/// let mut layer = Conv2d::builder(conv!(k = 1), 1, 1).bias(false).build()?;
/// // Hand-written gradient descent on one weight.
/// layer.update_parameters(|mut weight, _bias| weight.fill(2.0));
/// let y = layer.forward(&Array4::<f32>::ones((1, 1, 2, 2)))?;
/// assert!(y.iter().all(|&v| v == 2.0));
/// # Ok::<(), ConvError>(())
/// ```
pub trait Trainable {
    /// The weight's dimension: `Ix4` for the 2-D layers, `Ix3` for the 1-D ones. The
    /// layer's [`Gradients`] have the same.
    type Dim: Dimension;

    /// The weight, in PyTorch's layout for the layer.
    fn weight(&self) -> ArrayView<'_, f32, Self::Dim>;

    /// The bias, if the layer has one.
    fn bias(&self) -> Option<ArrayView1<'_, f32>>;

    /// Lets `update` change the weight and bias in place (their shapes are fixed), then
    /// brings the copy the kernels read up to date.
    fn update_parameters(
        &mut self,
        update: impl FnOnce(ArrayViewMut<'_, f32, Self::Dim>, Option<ArrayViewMut1<'_, f32>>),
    );
}

/// An optimiser: applies gradients to a layer's parameters.
pub trait Optimizer {
    /// One update of `layer`'s parameters from `gradients` (from the layer's own
    /// `backward`). Refused, leaving the layer unchanged, when the gradients' shapes are not
    /// the parameters', or when the optimiser's state belongs to a layer of another shape.
    fn step<L: Trainable>(
        &mut self,
        layer: &mut L,
        gradients: &Gradients<L::Dim>,
    ) -> Result<(), ConvError>;
}

/// Stochastic gradient descent, PyTorch's `torch.optim.SGD`: with weight decay `wd`,
/// momentum `mu` and learning rate `lr`, each step computes `d = grad + wd * p`, then (with
/// momentum) the buffer `b = d` on the first step and `b = mu * b + d` after, and `d = b`
/// (or `d + mu * b` with Nesterov momentum), and finally `p = p - lr * d`.
///
/// Hyperparameters are `f64`, as PyTorch's are Python floats; each is rounded to `f32` where
/// PyTorch rounds it, in the arithmetic on the parameters.
///
/// ```
/// use conv_runtime::prelude::*;
/// use conv_runtime::optim::Sgd;
/// use conv_runtime::ndarray::{Array1, Array4};
///
/// let mut layer = Conv2d::from_weights(conv!(k = 1), Array4::ones((1, 1, 1, 1)), None, 1)?;
/// let mut sgd = Sgd::new(0.5).momentum(0.9);
/// let grads = Gradients {
///     input: Array4::zeros((1, 1, 1, 1)),
///     weight: Array4::ones((1, 1, 1, 1)),
///     bias: None,
/// };
/// sgd.step(&mut layer, &grads)?; // b = 1, w = 1 - 0.5 * 1
/// assert_eq!(layer.weight()[[0, 0, 0, 0]], 0.5);
/// sgd.step(&mut layer, &grads)?; // b = 0.9 * 1 + 1, w = 0.5 - 0.5 * 1.9
/// assert!((layer.weight()[[0, 0, 0, 0]] + 0.45).abs() < 1e-6);
/// # Ok::<(), ConvError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Sgd {
    learning_rate: f64,
    momentum: f64,
    weight_decay: f64,
    nesterov: bool,
    /// The momentum buffers, made on the first step with momentum.
    buffers: Option<State>,
}

impl Sgd {
    /// Plain gradient descent with learning rate `learning_rate`: no momentum, no weight
    /// decay.
    pub fn new(learning_rate: f64) -> Sgd {
        Sgd {
            learning_rate,
            momentum: 0.0,
            weight_decay: 0.0,
            nesterov: false,
            buffers: None,
        }
    }

    /// Momentum factor, PyTorch's `momentum` (default 0: none).
    pub fn momentum(mut self, momentum: f64) -> Sgd {
        self.momentum = momentum;
        self
    }

    /// L2 penalty added to the gradient, PyTorch's `weight_decay` (default 0).
    pub fn weight_decay(mut self, weight_decay: f64) -> Sgd {
        self.weight_decay = weight_decay;
        self
    }

    /// Nesterov momentum, PyTorch's `nesterov` (default off; needs momentum to matter).
    pub fn nesterov(mut self, nesterov: bool) -> Sgd {
        self.nesterov = nesterov;
        self
    }
}

impl Optimizer for Sgd {
    fn step<L: Trainable>(
        &mut self,
        layer: &mut L,
        gradients: &Gradients<L::Dim>,
    ) -> Result<(), ConvError> {
        check_gradients(layer, gradients)?;
        let rule = SgdRule {
            lr: self.learning_rate as f32,
            mu: self.momentum as f32,
            wd: self.weight_decay as f32,
            nesterov: self.nesterov,
            first: self.buffers.is_none(),
        };
        let buffers = if self.momentum != 0.0 {
            Some(State::for_layer(&mut self.buffers, layer)?)
        } else {
            None
        };
        let grad = (gradients.weight.view().into_dyn(), gradients.bias.as_ref());
        layer
            .update_parameters(|weight, bias| rule.apply((weight.into_dyn(), bias), grad, buffers));
        Ok(())
    }
}

/// One SGD step's arithmetic, apart from the layer type: the generic `step` only gathers
/// the views, so this code is compiled once, in this crate, not in every user's build for
/// every layer type.
#[derive(Clone, Copy)]
struct SgdRule {
    lr: f32,
    mu: f32,
    wd: f32,
    nesterov: bool,
    /// The momentum buffer starts as the first step's update.
    first: bool,
}

impl SgdRule {
    fn apply(
        self,
        (mut weight, bias): (ArrayViewMutD<'_, f32>, Option<ArrayViewMut1<'_, f32>>),
        (weight_grad, bias_grad): (ArrayViewD<'_, f32>, Option<&Array1<f32>>),
        buffers: Option<&mut State>,
    ) {
        let SgdRule {
            lr,
            mu,
            wd,
            nesterov,
            first,
        } = self;
        // One element: the parameter, its gradient and its momentum buffer.
        let update = |p: &mut f32, g: f32, b: Option<&mut f32>| {
            let mut d = if wd != 0.0 { g + wd * *p } else { g };
            if let Some(b) = b {
                *b = if first { d } else { *b * mu + d };
                d = if nesterov { d + mu * *b } else { *b };
            }
            *p += -lr * d;
        };
        let (weight_buffer, bias_buffer) = match buffers {
            Some(state) => (Some(&mut state.weight), state.bias.as_mut()),
            None => (None, None),
        };
        match weight_buffer {
            Some(b) => Zip::from(&mut weight)
                .and(&weight_grad)
                .and(b)
                .for_each(|p, &g, b| update(p, g, Some(b))),
            None => Zip::from(&mut weight)
                .and(&weight_grad)
                .for_each(|p, &g| update(p, g, None)),
        }
        if let (Some(mut bias), Some(grad)) = (bias, bias_grad) {
            match bias_buffer {
                Some(b) => Zip::from(&mut bias)
                    .and(grad)
                    .and(b)
                    .for_each(|p, &g, b| update(p, g, Some(b))),
                None => Zip::from(&mut bias)
                    .and(grad)
                    .for_each(|p, &g| update(p, g, None)),
            }
        }
    }
}

/// Adam, PyTorch's `torch.optim.Adam` (Kingma and Ba, 2015) with its defaults: betas
/// `(0.9, 0.999)`, `eps = 1e-8`, no weight decay. Step `t` (from 1) computes
/// `g = grad + wd * p`, the moment estimates `m = m + (1 - b1) * (g - m)` and
/// `v = b2 * v + (1 - b2) * g^2` (from zero), and
/// `p = p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)`, in PyTorch's order of
/// operations: the bias corrections in `f64`, each factor then rounded to `f32` once.
///
/// ```
/// use conv_runtime::optim::Adam;
///
/// let adam = Adam::new(1e-3).betas(0.9, 0.99).eps(1e-6).weight_decay(1e-4);
/// assert_eq!(adam.steps(), 0);
/// ```
#[derive(Clone, Debug)]
pub struct Adam {
    learning_rate: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
    steps: u64,
    /// The first moment estimates, made on the first step.
    first_moment: Option<State>,
    /// The second moment estimates, made with the first.
    second_moment: Option<State>,
}

impl Adam {
    /// Adam with learning rate `learning_rate` and PyTorch's other defaults.
    pub fn new(learning_rate: f64) -> Adam {
        Adam {
            learning_rate,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            steps: 0,
            first_moment: None,
            second_moment: None,
        }
    }

    /// The moment estimates' decay rates, PyTorch's `betas` (default `(0.9, 0.999)`).
    pub fn betas(mut self, beta1: f64, beta2: f64) -> Adam {
        self.beta1 = beta1;
        self.beta2 = beta2;
        self
    }

    /// Added to the denominator for stability, PyTorch's `eps` (default `1e-8`).
    pub fn eps(mut self, eps: f64) -> Adam {
        self.eps = eps;
        self
    }

    /// L2 penalty added to the gradient, PyTorch's `weight_decay` (default 0).
    pub fn weight_decay(mut self, weight_decay: f64) -> Adam {
        self.weight_decay = weight_decay;
        self
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }
}

impl Optimizer for Adam {
    fn step<L: Trainable>(
        &mut self,
        layer: &mut L,
        gradients: &Gradients<L::Dim>,
    ) -> Result<(), ConvError> {
        check_gradients(layer, gradients)?;
        // Both estimates are made together, so checking the first checks both.
        let m = State::for_layer(&mut self.first_moment, layer)?;
        let v = State::for_layer(&mut self.second_moment, layer)?;
        self.steps += 1;
        let step = self.steps as f64;
        let step_size = (self.learning_rate / (1.0 - self.beta1.powf(step))) as f32;
        let correction2_sqrt = (1.0 - self.beta2.powf(step)).sqrt() as f32;
        let (one_minus_b1, b2, one_minus_b2) = (
            (1.0 - self.beta1) as f32,
            self.beta2 as f32,
            (1.0 - self.beta2) as f32,
        );
        let rule = AdamRule {
            step_size,
            correction2_sqrt,
            one_minus_b1,
            b2,
            one_minus_b2,
            eps: self.eps as f32,
            wd: self.weight_decay as f32,
        };
        let grad = (gradients.weight.view().into_dyn(), gradients.bias.as_ref());
        layer.update_parameters(|weight, bias| rule.apply((weight.into_dyn(), bias), grad, m, v));
        Ok(())
    }
}

/// One Adam step's arithmetic, apart from the layer type (see `SgdRule`).
#[derive(Clone, Copy)]
struct AdamRule {
    step_size: f32,
    correction2_sqrt: f32,
    one_minus_b1: f32,
    b2: f32,
    one_minus_b2: f32,
    eps: f32,
    wd: f32,
}

impl AdamRule {
    fn apply(
        self,
        (mut weight, bias): (ArrayViewMutD<'_, f32>, Option<ArrayViewMut1<'_, f32>>),
        (weight_grad, bias_grad): (ArrayViewD<'_, f32>, Option<&Array1<f32>>),
        m: &mut State,
        v: &mut State,
    ) {
        let AdamRule {
            step_size,
            correction2_sqrt,
            one_minus_b1,
            b2,
            one_minus_b2,
            eps,
            wd,
        } = self;
        let update = |p: &mut f32, g: f32, m: &mut f32, v: &mut f32| {
            let g = if wd != 0.0 { g + wd * *p } else { g };
            *m += one_minus_b1 * (g - *m);
            *v = *v * b2 + one_minus_b2 * (g * g);
            *p += -step_size * (*m / (v.sqrt() / correction2_sqrt + eps));
        };
        Zip::from(&mut weight)
            .and(&weight_grad)
            .and(&mut m.weight)
            .and(&mut v.weight)
            .for_each(|p, &g, m, v| update(p, g, m, v));
        if let (Some(mut bias), Some(grad), Some(m), Some(v)) =
            (bias, bias_grad, m.bias.as_mut(), v.bias.as_mut())
        {
            Zip::from(&mut bias)
                .and(grad)
                .and(m)
                .and(v)
                .for_each(|p, &g, m, v| update(p, g, m, v));
        }
    }
}

/// One value per parameter element: a momentum buffer or a moment estimate. Its weight has
/// no fixed rank, so that one optimiser type serves the 2-D and the 1-D layers.
#[derive(Clone, Debug)]
struct State {
    weight: ArrayD<f32>,
    bias: Option<Array1<f32>>,
}

impl State {
    /// `slot`'s state, made (zeros) if there is none yet, after checking that it fits
    /// `layer`'s parameters.
    fn for_layer<'s, L: Trainable>(
        slot: &'s mut Option<State>,
        layer: &L,
    ) -> Result<&'s mut State, ConvError> {
        let weight_shape = layer.weight().shape().to_vec();
        let bias_shape = layer.bias().map(|b| b.shape().to_vec());
        if let Some(state) = slot {
            if state.weight.shape() != weight_shape.as_slice() {
                return Err(ConvError::OptimizerState {
                    parameter: Parameter::Weight,
                    expected: state.weight.shape().to_vec(),
                    got: weight_shape,
                });
            }
            let state_bias = state.bias.as_ref().map(|b| b.shape().to_vec());
            if state_bias != bias_shape {
                return Err(ConvError::OptimizerState {
                    parameter: Parameter::Bias,
                    expected: state_bias.unwrap_or_default(),
                    got: bias_shape.unwrap_or_default(),
                });
            }
        }
        Ok(slot.get_or_insert_with(|| State {
            weight: ArrayD::zeros(layer.weight().shape()),
            bias: layer.bias().map(|b| Array1::zeros(b.len())),
        }))
    }
}

/// The gradients have the shapes of `layer`'s parameters, and a bias gradient exactly when
/// the layer has a bias.
fn check_gradients<L: Trainable>(
    layer: &L,
    gradients: &Gradients<L::Dim>,
) -> Result<(), ConvError> {
    let weight = layer.weight();
    if gradients.weight.shape() != weight.shape() {
        return Err(ConvError::GradientShape {
            parameter: Parameter::Weight,
            expected: weight.shape().to_vec(),
            got: gradients.weight.shape().to_vec(),
        });
    }
    let expected = layer.bias().map(|b| b.shape().to_vec());
    let got = gradients.bias.as_ref().map(|b| b.shape().to_vec());
    if expected != got {
        return Err(ConvError::GradientShape {
            parameter: Parameter::Bias,
            expected: expected.unwrap_or_default(),
            got: got.unwrap_or_default(),
        });
    }
    Ok(())
}
