//! The benchmark suite of `../shared/bench-suite.json` as Rust: real layer shapes, each a
//! `conv!` geometry, and the baselines they are measured against.

use conv_runtime::ndarray::{Array4, ArrayView4, s};
use conv_runtime::prelude::*;
use conv_runtime::{Convolution, Direction, GeometrySpec, Isa, Transposed, reference};

use convgen::random_array;

/// A layer type of the suite.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `nn.Conv2d`.
    Conv,
    /// `nn.ConvTranspose2d`.
    ConvTranspose,
}

/// One case: a layer and its input shape, as in `bench-suite.json`.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub name: &'static str,
    pub op: Op,
    pub batch: usize,
    pub in_channels: usize,
    pub out_channels: usize,
    pub height: usize,
    pub width: usize,
    pub groups: usize,
}

/// A suite case, built: its layer and input, and what it costs.
pub struct Case {
    pub shape: Shape,
    pub spec: GeometrySpec,
    pub input: Array4<f32>,
    layer: Box<dyn Layer>,
    adjoint: Box<dyn Layer>,
}

/// What the harnesses need of a layer, whatever its geometry type.
trait Layer: Send + Sync {
    fn forward(&self, x: &ArrayView4<f32>) -> Array4<f32>;
    fn backward(&self, x: &ArrayView4<f32>, grad_output: &ArrayView4<f32>) -> Gradients;
    fn reference(&self, x: &ArrayView4<f32>) -> Array4<f32>;
    fn weight(&self) -> &Array4<f32>;
    fn bias(&self) -> &[f32];
    fn isa(&self) -> Isa;
    /// The layer of the other direction with the same weight and no bias: its forward pass
    /// is this layer's input gradient.
    fn adjoint(&self) -> Box<dyn Layer>;
}

/// What differs between the two directions here: the reference and the other direction.
trait SuiteDirection: Direction {
    fn reference<G: Geometry>(
        layer: &conv_runtime::Layer<G, Self>,
        x: &ArrayView4<f32>,
    ) -> Array4<f32>;
    /// The layer of the other direction with `layer`'s weight and instruction set, no bias.
    fn adjoint<G: ZeroPadded>(layer: &conv_runtime::Layer<G, Self>) -> Box<dyn Layer>;
}

impl SuiteDirection for Convolution {
    fn reference<G: Geometry>(layer: &Conv2d<G>, x: &ArrayView4<f32>) -> Array4<f32> {
        reference::conv2d(x, layer.weight(), layer.bias(), &G::SPEC, layer.groups()).unwrap()
    }
    fn adjoint<G: ZeroPadded>(layer: &Conv2d<G>) -> Box<dyn Layer> {
        let weight = layer.weight().clone();
        let adjoint = ConvTranspose2d::from_weights(G::default(), weight, None, layer.groups());
        Box::new(with_isa(adjoint, layer.isa()))
    }
}

impl SuiteDirection for Transposed {
    fn reference<G: Geometry>(layer: &ConvTranspose2d<G>, x: &ArrayView4<f32>) -> Array4<f32> {
        let (weight, bias, groups) = (layer.weight(), layer.bias(), layer.groups());
        reference::conv_transpose2d(x, weight, bias, &G::SPEC, groups, None).unwrap()
    }
    fn adjoint<G: ZeroPadded>(layer: &ConvTranspose2d<G>) -> Box<dyn Layer> {
        let weight = layer.weight().clone();
        let adjoint = Conv2d::from_weights(G::default(), weight, None, layer.groups());
        Box::new(with_isa(adjoint, layer.isa()))
    }
}

/// A layer built from another's weight, moved to that layer's instruction set.
fn with_isa<G: Geometry, D: Direction>(
    layer: Result<conv_runtime::Layer<G, D>, ConvError>,
    isa: Isa,
) -> conv_runtime::Layer<G, D> {
    layer
        .and_then(|layer| layer.with_isa(isa))
        .expect("the layer's own weight and instruction set")
}

impl<G: ZeroPadded, D: SuiteDirection> Layer for conv_runtime::Layer<G, D> {
    fn forward(&self, x: &ArrayView4<f32>) -> Array4<f32> {
        conv_runtime::Layer::forward(self, x).expect("suite shapes are valid")
    }
    fn backward(&self, x: &ArrayView4<f32>, grad_output: &ArrayView4<f32>) -> Gradients {
        conv_runtime::Layer::backward(self, x, grad_output).expect("suite shapes are valid")
    }
    fn reference(&self, x: &ArrayView4<f32>) -> Array4<f32> {
        D::reference(self, x)
    }
    fn weight(&self) -> &Array4<f32> {
        conv_runtime::Layer::weight(self)
    }
    fn bias(&self) -> &[f32] {
        conv_runtime::Layer::bias(self)
            .expect("suite layers have a bias")
            .as_slice()
            .unwrap()
    }
    fn isa(&self) -> Isa {
        conv_runtime::Layer::isa(self)
    }
    fn adjoint(&self) -> Box<dyn Layer> {
        D::adjoint(self)
    }
}

impl Case {
    fn new<G: ZeroPadded>(shape: Shape, geometry: G) -> Case {
        let Shape {
            in_channels,
            out_channels,
            groups,
            ..
        } = shape;
        let layer: Box<dyn Layer> = match shape.op {
            Op::Conv => Box::new(
                Conv2d::builder(geometry, in_channels, out_channels)
                    .groups(groups)
                    .seed(1)
                    .build()
                    .unwrap(),
            ),
            Op::ConvTranspose => Box::new(
                ConvTranspose2d::builder(geometry, in_channels, out_channels)
                    .groups(groups)
                    .seed(1)
                    .build()
                    .unwrap(),
            ),
        };
        let input = random_array((shape.batch, in_channels, shape.height, shape.width), 2);
        Case {
            shape,
            spec: G::SPEC,
            input,
            adjoint: layer.adjoint(),
            layer,
        }
    }

    /// The layer's forward pass through the public API (output allocated per call).
    pub fn forward(&self) -> Array4<f32> {
        self.layer.forward(&self.input.view())
    }

    /// A fixed output gradient for [`backward`](Self::backward): random values of the
    /// output's shape.
    pub fn grad_output(&self) -> Array4<f32> {
        random_array(self.forward().raw_dim(), 3)
    }

    /// The layer's backward pass (all three gradients) through the public API, for the
    /// case's input and `grad_output`.
    pub fn backward(&self, grad_output: &Array4<f32>) -> Gradients {
        self.layer.backward(&self.input.view(), &grad_output.view())
    }

    /// The input-gradient part of [`backward`](Self::backward) on its own: the forward pass
    /// of the other direction's layer with the same weight, on `grad_output`.
    pub fn input_gradient(&self, grad_output: &Array4<f32>) -> Array4<f32> {
        self.adjoint.forward(&grad_output.view())
    }

    /// The naive reference on the same layer and input.
    pub fn reference(&self) -> Array4<f32> {
        self.layer.reference(&self.input.view())
    }

    /// The instruction set the layer runs on.
    pub fn isa(&self) -> Isa {
        self.layer.isa()
    }

    /// Two flops per multiply-add that touches real data (taps in the padding excluded).
    pub fn useful_flops(&self) -> f64 {
        let Shape {
            batch,
            in_channels,
            out_channels,
            height,
            width,
            groups,
            ..
        } = self.shape;
        let per_axis = |axis: usize, size: usize| -> usize {
            let (kernel, stride, dilation, pad) = match axis {
                0 => (
                    self.spec.kernel_size.0,
                    self.spec.stride.0,
                    self.spec.dilation.0,
                    self.spec.pad_before().0,
                ),
                _ => (
                    self.spec.kernel_size.1,
                    self.spec.stride.1,
                    self.spec.dilation.1,
                    self.spec.pad_before().1,
                ),
            };
            match self.shape.op {
                Op::Conv => {
                    let out = self.spec.output_size((height, width)).unwrap();
                    let out = if axis == 0 { out.0 } else { out.1 };
                    (0..out)
                        .map(|o| {
                            (0..kernel)
                                .filter(|t| {
                                    (o * stride + t * dilation)
                                        .checked_sub(pad)
                                        .is_some_and(|i| i < size)
                                })
                                .count()
                        })
                        .sum()
                }
                Op::ConvTranspose => {
                    let out = self.spec.transposed_output_size((height, width)).unwrap();
                    let out = if axis == 0 { out.0 } else { out.1 };
                    (0..size)
                        .map(|i| {
                            (0..kernel)
                                .filter(|t| {
                                    (i * stride + t * dilation)
                                        .checked_sub(pad)
                                        .is_some_and(|o| o < out)
                                })
                                .count()
                        })
                        .sum()
                }
            }
        };
        let pairs = per_axis(0, height) * per_axis(1, width);
        2.0 * (batch * out_channels * (in_channels / groups) * pairs) as f64
    }

    /// im2col (or, transposed, GEMM then col2im) with `matrixmultiply`'s sgemm: how candle
    /// and burn run these layers. One thread.
    pub fn im2col_gemm(&self) -> Array4<f32> {
        let x = &self.input;
        let weight = self.layer.weight();
        let bias = self.layer.bias();
        let Shape {
            batch,
            in_channels,
            out_channels,
            height,
            width,
            groups,
            ..
        } = self.shape;
        let (kh, kw) = self.spec.kernel_size;
        let (sh, sw) = self.spec.stride;
        let (dh, dw) = self.spec.dilation;
        let (ph, pw) = self.spec.pad_before();
        let (cin, cout) = (in_channels / groups, out_channels / groups);
        match self.shape.op {
            Op::Conv => {
                let (oh, ow) = self.spec.output_size((height, width)).unwrap();
                let k = cin * kh * kw;
                let mut out = Array4::zeros((batch, out_channels, oh, ow));
                let mut columns = vec![0.0f32; k * oh * ow];
                for n in 0..batch {
                    for g in 0..groups {
                        for c in 0..cin {
                            for t in 0..kh * kw {
                                let (th, tw) = (t / kw, t % kw);
                                let row = &mut columns[(c * kh * kw + t) * oh * ow..][..oh * ow];
                                for y in 0..oh {
                                    for xo in 0..ow {
                                        let iy = (y * sh + th * dh)
                                            .checked_sub(ph)
                                            .filter(|&v| v < height);
                                        let ix = (xo * sw + tw * dw)
                                            .checked_sub(pw)
                                            .filter(|&v| v < width);
                                        row[y * ow + xo] = match (iy, ix) {
                                            (Some(iy), Some(ix)) => x[[n, g * cin + c, iy, ix]],
                                            _ => 0.0,
                                        };
                                    }
                                }
                            }
                        }
                        let w = weight.slice(s![g * cout..(g + 1) * cout, .., .., ..]);
                        let mut o = out.slice_mut(s![n, g * cout..(g + 1) * cout, .., ..]);
                        for (oc, mut plane) in o.outer_iter_mut().enumerate() {
                            plane.fill(bias[g * cout + oc]);
                        }
                        // SAFETY: the pointers and strides describe `w` ([cout, k], row-major),
                        // `columns` ([k, oh * ow]) and `o` ([cout, oh * ow], standard layout).
                        unsafe {
                            matrixmultiply::sgemm(
                                cout,
                                k,
                                oh * ow,
                                1.0,
                                w.as_ptr(),
                                k as isize,
                                1,
                                columns.as_ptr(),
                                (oh * ow) as isize,
                                1,
                                1.0,
                                o.as_mut_ptr(),
                                (oh * ow) as isize,
                                1,
                            );
                        }
                    }
                }
                out
            }
            Op::ConvTranspose => {
                let (oh, ow) = self.spec.transposed_output_size((height, width)).unwrap();
                let rows = cout * kh * kw;
                let pixels = height * width;
                let mut out = Array4::zeros((batch, out_channels, oh, ow));
                let mut columns = vec![0.0f32; rows * pixels];
                for n in 0..batch {
                    for g in 0..groups {
                        let w = weight.slice(s![g * cin..(g + 1) * cin, .., .., ..]);
                        let xg = x.slice(s![n, g * cin..(g + 1) * cin, .., ..]);
                        let xg = xg.as_standard_layout();
                        // columns[(o, t), pixel] = sum_c w[c, (o, t)] * x[c, pixel]
                        // SAFETY: `w` is [cin, cout * kh * kw] row-major, `xg` [cin, pixels]
                        // and `columns` [rows, pixels].
                        unsafe {
                            matrixmultiply::sgemm(
                                rows,
                                cin,
                                pixels,
                                1.0,
                                w.as_ptr(),
                                1,
                                rows as isize,
                                xg.as_ptr(),
                                pixels as isize,
                                1,
                                0.0,
                                columns.as_mut_ptr(),
                                pixels as isize,
                                1,
                            );
                        }
                        for o in 0..cout {
                            let oc = g * cout + o;
                            out.slice_mut(s![n, oc, .., ..]).fill(bias[oc]);
                            for t in 0..kh * kw {
                                let (th, tw) = (t / kw, t % kw);
                                let row = &columns[(o * kh * kw + t) * pixels..][..pixels];
                                for iy in 0..height {
                                    let Some(y) =
                                        (iy * sh + th * dh).checked_sub(ph).filter(|&v| v < oh)
                                    else {
                                        continue;
                                    };
                                    for ix in 0..width {
                                        if let Some(xo) =
                                            (ix * sw + tw * dw).checked_sub(pw).filter(|&v| v < ow)
                                        {
                                            out[[n, oc, y, xo]] += row[iy * width + ix];
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                out
            }
        }
    }
}

macro_rules! cases {
    ($($name:literal: $op:ident, n $n:literal, $cin:literal -> $cout:literal, $h:literal x $w:literal, groups $g:literal, $geometry:expr;)*) => {
        /// Every case of the suite, built (with a fixed seed), on the current instruction set.
        pub fn cases() -> Vec<Case> {
            vec![$(
                Case::new(
                    Shape {
                        name: $name,
                        op: Op::$op,
                        batch: $n,
                        in_channels: $cin,
                        out_channels: $cout,
                        height: $h,
                        width: $w,
                        groups: $g,
                    },
                    $geometry,
                ),
            )*]
        }
    };
}

cases! {
    "seed-dilated": Conv, n 1, 3 -> 16, 64 x 64, groups 1, conv!(k = 3, padding = 2, dilation = 2);
    "seed-upconv": ConvTranspose, n 1, 16 -> 3, 64 x 64, groups 1, conv!(k = 2, stride = 2);
    "unet-enc": Conv, n 1, 64 -> 64, 128 x 128, groups 1, conv!(k = 3, padding = 1);
    "unet-up": ConvTranspose, n 1, 128 -> 64, 64 x 64, groups 1, conv!(k = 2, stride = 2);
    "aspp-d12": Conv, n 1, 256 -> 256, 32 x 32, groups 1, conv!(k = 3, padding = 12, dilation = 12);
    "context-d4": Conv, n 1, 64 -> 64, 64 x 64, groups 1, conv!(k = 3, padding = 4, dilation = 4);
    "down-s2": Conv, n 1, 64 -> 128, 64 x 64, groups 1, conv!(k = 3, stride = 2, padding = 1);
    "dcgan-up": ConvTranspose, n 1, 256 -> 128, 16 x 16, groups 1, conv!(k = 4, stride = 2, padding = 1);
    "sr-x3": ConvTranspose, n 1, 32 -> 3, 64 x 64, groups 1, conv!(k = 9, stride = 3, padding = 3);
    "depthwise-d2": Conv, n 1, 128 -> 128, 64 x 64, groups 128, conv!(k = 3, padding = 2, dilation = 2);
    "unet-enc-b8": Conv, n 8, 64 -> 64, 64 x 64, groups 1, conv!(k = 3, padding = 1);
}

/// The fastest peer's one-thread time in milliseconds, from `../shared/peer-baseline.md`
/// (measured 2026-11-24 on a 2-core AMD Zen 5), and its name.
pub fn best_peer_ms(name: &str) -> Option<(&'static str, f64)> {
    Some(match name {
        "seed-dilated" => ("ort", 0.032),
        "seed-upconv" => ("ort", 0.021),
        "unet-enc" => ("ort", 4.949),
        "unet-up" => ("ort", 1.267),
        "aspp-d12" => ("ort", 3.921),
        "context-d4" => ("ort", 1.167),
        "down-s2" => ("ort", 0.639),
        "dcgan-up" => ("ort", 1.219),
        "sr-x3" => ("ort", 0.560),
        "depthwise-d2" => ("ort", 0.190),
        "unet-enc-b8" => ("ort", 10.115),
        _ => return None,
    })
}
