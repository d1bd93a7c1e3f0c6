//! `Upsample`: PyTorch's `nn.Upsample(scale_factor=..., mode=...)` for integer scale factors,
//! the fixed interpolations a learned upconvolution is measured against.

use ndarray::{Array4, ArrayBase, ArrayView1, ArrayView2, ArrayViewMut2, Data, DataMut, Ix4};
use rayon::prelude::*;

use crate::shape::error::ConvError;

/// How [`Upsample`] fills the new pixels: PyTorch's `mode` and, for bilinear and bicubic,
/// its `align_corners`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UpsampleMode {
    /// `mode='nearest'`: each output pixel copies the input pixel it falls in.
    Nearest,
    /// `mode='bilinear'`: each output pixel mixes the four input pixels around its centre.
    Bilinear {
        /// PyTorch's `align_corners`. `false` (PyTorch's default) treats pixels as squares
        /// and maps the output's edges onto the input's edges; `true` maps the centres of the
        /// corner pixels onto each other.
        align_corners: bool,
    },
    /// `mode='bicubic'`: each output pixel mixes the sixteen input pixels around its centre
    /// with PyTorch's cubic convolution weights (`A = -0.75`), the edge pixels repeated
    /// beyond the border. Unlike bilinear, the weights can be negative, so the output can
    /// overshoot the input's range (and an infinity next to a repeated edge pixel becomes
    /// NaN, as in PyTorch).
    Bicubic {
        /// PyTorch's `align_corners`, as for [`Bilinear`](UpsampleMode::Bilinear).
        align_corners: bool,
    },
}

/// An integer scale factor, `(h, w)`: `2.into()` is `(2, 2)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ScaleFactor {
    /// The factor along the height (axis 2).
    pub h: usize,
    /// The factor along the width (axis 3).
    pub w: usize,
}

impl From<usize> for ScaleFactor {
    fn from(factor: usize) -> Self {
        ScaleFactor {
            h: factor,
            w: factor,
        }
    }
}

impl From<(usize, usize)> for ScaleFactor {
    fn from((h, w): (usize, usize)) -> Self {
        ScaleFactor { h, w }
    }
}

/// Fixed (not learned) upsampling of NCHW `f32` input by an integer factor per axis, with
/// the numbers of PyTorch's `nn.Upsample(scale_factor=s, mode=...)` (and
/// `F.interpolate`) in the modes `'nearest'`, `'bilinear'` and `'bicubic'`, the last two
/// with `align_corners` false or true.
///
/// An input of shape `[n, c, h, w]` gives `[n, c, h * s_h, w * s_w]`. Like PyTorch, an input
/// with no rows or no columns is refused ([`ConvError::EmptyInput`]); unlike PyTorch, an
/// input with zero channels is accepted and gives an empty output.
///
/// The source positions are computed in `f32` exactly as PyTorch computes them, so even
/// PyTorch's rounding quirks are kept: with `'nearest'` and a factor such as 41, whose
/// reciprocal rounds down in `f32`, output row 41 reads input row 0.
///
/// ```
/// use conv_runtime::prelude::*;
/// use conv_runtime::ndarray::{array, s};
///
/// // PyTorch: nn.Upsample(scale_factor=2, mode='nearest')
/// let nearest = Upsample::nearest(2)?;
/// let x = array![[[[1.0f32, 2.0], [3.0, 4.0]]]]; // [1, 1, 2, 2]
/// let y = nearest.forward(&x)?;
/// assert_eq!(y.shape(), &[1, 1, 4, 4]);
/// assert_eq!(y.slice(s![0, 0, 1, ..]), array![1.0, 1.0, 2.0, 2.0]);
///
/// // PyTorch: nn.Upsample(scale_factor=(2, 3), mode='bilinear', align_corners=False)
/// let bilinear = Upsample::bilinear((2, 3), false)?;
/// let y = bilinear.forward(&x)?;
/// assert_eq!(y.shape(), &[1, 1, 4, 6]);
/// // The output's corner pixel lies over the input's corner pixel.
/// assert_eq!(y[[0, 0, 0, 0]], 1.0);
/// assert_eq!(y[[0, 0, 1, 0]], 1.5); // a quarter of the way from 1 down to 3
///
/// // PyTorch: nn.Upsample(scale_factor=2, mode='bicubic', align_corners=True)
/// let bicubic = Upsample::bicubic(2, true)?;
/// let y = bicubic.forward(&x)?;
/// assert_eq!(y.shape(), &[1, 1, 4, 4]);
/// assert_eq!(y[[0, 0, 3, 3]], 4.0); // the corners' centres coincide
///
/// // Views of any layout are accepted: here the transposed image.
/// let t = bilinear.forward(&x.view().permuted_axes([0, 1, 3, 2]))?;
/// assert_eq!(t[[0, 0, 0, 0]], 1.0);
///
/// // A zero factor is refused, saying what was expected.
/// assert!(matches!(Upsample::nearest((0, 2)), Err(ConvError::ScaleFactor { .. })));
/// # Ok::<(), ConvError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Upsample {
    scale_factor: ScaleFactor,
    mode: UpsampleMode,
}

/// Below this many output values the planes are filled on the calling thread.
const PARALLEL_THRESHOLD: usize = 1 << 16;

impl Upsample {
    /// Upsampling by `scale_factor` (one factor for both axes, or `(h, w)`) in `mode`.
    /// Refused with [`ConvError::ScaleFactor`] when a factor is zero.
    pub fn new(
        scale_factor: impl Into<ScaleFactor>,
        mode: UpsampleMode,
    ) -> Result<Self, ConvError> {
        let scale_factor = scale_factor.into();
        if scale_factor.h == 0 || scale_factor.w == 0 {
            return Err(ConvError::ScaleFactor {
                got: (scale_factor.h, scale_factor.w),
            });
        }
        Ok(Upsample { scale_factor, mode })
    }

    /// `nn.Upsample(scale_factor, mode='nearest')`.
    pub fn nearest(scale_factor: impl Into<ScaleFactor>) -> Result<Self, ConvError> {
        Self::new(scale_factor, UpsampleMode::Nearest)
    }

    /// `nn.Upsample(scale_factor, mode='bilinear', align_corners)`.
    pub fn bilinear(
        scale_factor: impl Into<ScaleFactor>,
        align_corners: bool,
    ) -> Result<Self, ConvError> {
        Self::new(scale_factor, UpsampleMode::Bilinear { align_corners })
    }

    /// `nn.Upsample(scale_factor, mode='bicubic', align_corners)`.
    pub fn bicubic(
        scale_factor: impl Into<ScaleFactor>,
        align_corners: bool,
    ) -> Result<Self, ConvError> {
        Self::new(scale_factor, UpsampleMode::Bicubic { align_corners })
    }

    /// The factor per axis.
    pub fn scale_factor(&self) -> ScaleFactor {
        self.scale_factor
    }

    /// The interpolation.
    pub fn mode(&self) -> UpsampleMode {
        self.mode
    }

    /// The output shape `[n, c, h * s_h, w * s_w]` for an input of shape `[n, c, h, w]`, or
    /// why that input is refused: no rows or columns ([`ConvError::EmptyInput`]), or an
    /// output too large to address ([`ConvError::TooLarge`]).
    pub fn output_shape(&self, input: [usize; 4]) -> Result<[usize; 4], ConvError> {
        let [n, c, h, w] = input;
        if h == 0 || w == 0 {
            return Err(ConvError::EmptyInput { got: (h, w) });
        }
        let too_large = ConvError::TooLarge { got: (h, w) };
        let out_h = h
            .checked_mul(self.scale_factor.h)
            .ok_or(too_large.clone())?;
        let out_w = w
            .checked_mul(self.scale_factor.w)
            .ok_or(too_large.clone())?;
        // ndarray needs the element count, and the allocator the byte count, to fit isize.
        let bytes = [n, c, out_h, out_w, size_of::<f32>()]
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d));
        match bytes {
            Some(bytes) if bytes <= isize::MAX as usize => Ok([n, c, out_h, out_w]),
            _ => Err(too_large),
        }
    }

    /// Upsamples `x`, NCHW, any layout (views, slices with steps and permuted axes
    /// included), into a new standard-layout array.
    pub fn forward<S: Data<Elem = f32>>(
        &self,
        x: &ArrayBase<S, Ix4>,
    ) -> Result<Array4<f32>, ConvError> {
        let shape = self.output_shape(x.dim().into())?;
        let mut out = Array4::zeros(shape);
        self.run(x, &mut out);
        Ok(out)
    }

    /// Upsamples `x` into `out`, which must have the shape
    /// [`output_shape`](Self::output_shape) gives ([`ConvError::OutputShape`] otherwise);
    /// any layout.
    pub fn forward_into<S: Data<Elem = f32>, T: DataMut<Elem = f32>>(
        &self,
        x: &ArrayBase<S, Ix4>,
        out: &mut ArrayBase<T, Ix4>,
    ) -> Result<(), ConvError> {
        let expected = self.output_shape(x.dim().into())?;
        let got: [usize; 4] = out.dim().into();
        if got != expected {
            return Err(ConvError::OutputShape {
                expected: expected.to_vec(),
                got: got.to_vec(),
            });
        }
        self.run(x, out);
        Ok(())
    }

    /// Fills `out`, of the checked output shape, one plane (image and channel) at a time.
    fn run<S: Data<Elem = f32>, T: DataMut<Elem = f32>>(
        &self,
        x: &ArrayBase<S, Ix4>,
        out: &mut ArrayBase<T, Ix4>,
    ) {
        let (_, _, h, w) = x.dim();
        let (_, _, out_h, out_w) = out.dim();
        let tables = Tables::new(self.mode, (h, w), (out_h, out_w), self.scale_factor);
        let parallel = out.len() >= PARALLEL_THRESHOLD;
        let planes: Vec<(ArrayView2<f32>, ArrayViewMut2<f32>)> = x
            .outer_iter()
            .zip(out.outer_iter_mut())
            .flat_map(|(image, out_image)| {
                image.into_outer_iter().zip(out_image.into_outer_iter_mut())
            })
            .collect();
        let fill = |(plane, out_plane): (ArrayView2<f32>, ArrayViewMut2<f32>)| {
            tables.fill(&plane, out_plane)
        };
        if parallel {
            planes.into_par_iter().for_each(fill);
        } else {
            planes.into_iter().for_each(fill);
        }
    }
}

/// Where each output row and column reads the input: one source index per axis (nearest),
/// or two (bilinear) or four (bicubic) with their weights.
enum Tables {
    Nearest {
        rows: Vec<usize>,
        columns: Vec<usize>,
    },
    Bilinear {
        rows: Vec<Taps>,
        columns: Vec<Taps>,
    },
    Bicubic {
        rows: Vec<CubicTaps>,
        columns: Vec<CubicTaps>,
    },
}

/// Two source indices and their weights along one axis.
#[derive(Clone, Copy)]
struct Taps {
    first: usize,
    second: usize,
    first_weight: f32,
    second_weight: f32,
}

/// Four source indices (the edge ones repeated beyond the border) and their weights along
/// one axis.
#[derive(Clone, Copy)]
struct CubicTaps {
    indices: [usize; 4],
    weights: [f32; 4],
}

/// `v0 * w0 + v1 * w1 + v2 * w2 + v3 * w3`, summed left to right as in ATen's source. Rust
/// never fuses these into FMAs; PyTorch's compiled kernels may, a few ulps apart.
fn weighted_sum(values: [f32; 4], weights: [f32; 4]) -> f32 {
    let [v0, v1, v2, v3] = values;
    let [w0, w1, w2, w3] = weights;
    v0 * w0 + v1 * w1 + v2 * w2 + v3 * w3
}

impl Tables {
    fn new(
        mode: UpsampleMode,
        input: (usize, usize),
        output: (usize, usize),
        factor: ScaleFactor,
    ) -> Tables {
        match mode {
            UpsampleMode::Nearest => Tables::Nearest {
                rows: nearest_sources(input.0, output.0, factor.h),
                columns: nearest_sources(input.1, output.1, factor.w),
            },
            UpsampleMode::Bilinear { align_corners } => Tables::Bilinear {
                rows: linear_sources(input.0, output.0, factor.h, align_corners),
                columns: linear_sources(input.1, output.1, factor.w, align_corners),
            },
            UpsampleMode::Bicubic { align_corners } => Tables::Bicubic {
                rows: cubic_sources(input.0, output.0, factor.h, align_corners),
                columns: cubic_sources(input.1, output.1, factor.w, align_corners),
            },
        }
    }

    /// One output plane from one input plane.
    fn fill(&self, input: &ArrayView2<f32>, mut out: ArrayViewMut2<f32>) {
        match self {
            Tables::Nearest { rows, columns } => {
                for (mut out_row, &r) in out.outer_iter_mut().zip(rows) {
                    let row = input.row(r);
                    for (o, &c) in out_row.iter_mut().zip(columns) {
                        *o = row[c];
                    }
                }
            }
            Tables::Bilinear { rows, columns } => {
                let along = |row: &ArrayView1<f32>, taps: &Taps| {
                    row[taps.first] * taps.first_weight + row[taps.second] * taps.second_weight
                };
                for (mut out_row, r) in out.outer_iter_mut().zip(rows) {
                    let (top, bottom) = (input.row(r.first), input.row(r.second));
                    for (o, c) in out_row.iter_mut().zip(columns) {
                        // PyTorch's order: along the width first, then the height.
                        *o = along(&top, c) * r.first_weight + along(&bottom, c) * r.second_weight;
                    }
                }
            }
            Tables::Bicubic { rows, columns } => {
                for (mut out_row, r) in out.outer_iter_mut().zip(rows) {
                    let source_rows = r.indices.map(|i| input.row(i));
                    for (o, c) in out_row.iter_mut().zip(columns) {
                        // ATen's order (`cpu_upsample_generic`): each of the four rows along
                        // the width, then those four values along the height.
                        let along_width = source_rows
                            .each_ref()
                            .map(|row| weighted_sum(c.indices.map(|k| row[k]), c.weights));
                        *o = weighted_sum(along_width, r.weights);
                    }
                }
            }
        }
    }
}

/// PyTorch passes the user's scale factor on to the kernels, which use the `f32` reciprocal
/// of the `f64` factor (`compute_scales_value` in ATen's `UpSample.h`).
fn reciprocal(factor: usize) -> f32 {
    (1.0 / factor as f64) as f32
}

/// The input index each of `output` indices copies, as ATen's `nearest_idx`: exact for
/// factors 1 and 2, otherwise `floor(i * reciprocal)` in `f32`.
fn nearest_sources(input: usize, output: usize, factor: usize) -> Vec<usize> {
    let scale = reciprocal(factor);
    (0..output)
        .map(|i| {
            if output == input {
                i
            } else if output == 2 * input {
                i >> 1
            } else {
                ((i as f32 * scale).floor() as usize).min(input - 1)
            }
        })
        .collect()
}

/// Input pixels per output pixel along one axis, as ATen's `area_pixel_compute_scale`:
/// the reciprocal of the factor, or with `align_corners` the ratio of the spans between the
/// corner pixels' centres (0 for a single output pixel).
fn source_scale(input: usize, output: usize, factor: usize, align_corners: bool) -> f32 {
    if !align_corners {
        reciprocal(factor)
    } else if output > 1 {
        (input - 1) as f32 / (output - 1) as f32
    } else {
        0.0
    }
}

/// The two input indices and weights each of `output` indices mixes, as ATen's
/// `area_pixel_compute_source_index` and `guard_index_and_lambda`, in `f32`.
fn linear_sources(input: usize, output: usize, factor: usize, align_corners: bool) -> Vec<Taps> {
    let scale = source_scale(input, output, factor, align_corners);
    (0..output)
        .map(|i| {
            let source = if align_corners {
                scale * i as f32
            } else {
                (scale * (i as f32 + 0.5) - 0.5).max(0.0)
            };
            let first = (source.floor() as usize).min(input - 1);
            let second = if first < input - 1 { first + 1 } else { first };
            let second_weight = (source - first as f32).clamp(0.0, 1.0);
            Taps {
                first,
                second,
                first_weight: 1.0 - second_weight,
                second_weight,
            }
        })
        .collect()
}

/// PyTorch's bicubic constant (`get_cubic_upsample_coefficients`): -0.75 as in OpenCV, not
/// the -0.5 of Keys (which PyTorch uses only with `antialias=True`).
const CUBIC_A: f32 = -0.75;

/// The cubic convolution kernel for `|x| <= 1` (ATen's `cubic_convolution1`).
fn cubic_near(x: f32) -> f32 {
    ((CUBIC_A + 2.0) * x - (CUBIC_A + 3.0)) * x * x + 1.0
}

/// The cubic convolution kernel for `1 < |x| < 2` (ATen's `cubic_convolution2`).
fn cubic_far(x: f32) -> f32 {
    ((CUBIC_A * x - 5.0 * CUBIC_A) * x + 8.0 * CUBIC_A) * x - 4.0 * CUBIC_A
}

/// The four input indices and weights each of `output` indices mixes, as ATen's
/// `HelperInterpCubic::compute_indices_weights`, in `f32`.
fn cubic_sources(
    input: usize,
    output: usize,
    factor: usize,
    align_corners: bool,
) -> Vec<CubicTaps> {
    let scale = source_scale(input, output, factor, align_corners);
    let last = input as i64 - 1;
    (0..output)
        .map(|i| {
            // Unlike linear, ATen does not clamp the source at 0 for cubic: the taps then
            // start at -1 (the edge pixel repeated) and the weights keep the true distance.
            let source = if align_corners {
                scale * i as f32
            } else {
                scale * (i as f32 + 0.5) - 0.5
            };
            // `guard_index_and_lambda`: the index at most the last, the fraction in [0, 1].
            let floor = (source.floor() as i64).min(last);
            let t = (source - floor as f32).clamp(0.0, 1.0);
            // The distances to the four taps are t + 1, t, 1 - t and (1 - t) + 1, each
            // rounded in f32 as ATen rounds them.
            let u = 1.0 - t;
            let weights = [
                cubic_far(t + 1.0),
                cubic_near(t),
                cubic_near(u),
                cubic_far(u + 1.0),
            ];
            let indices = [-1, 0, 1, 2].map(|j| (floor + j).clamp(0, last) as usize);
            CubicTaps { indices, weights }
        })
        .collect()
}
