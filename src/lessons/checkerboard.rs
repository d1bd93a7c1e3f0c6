//! The checkerboard artifact of transposed convolution (Odena, Dumoulin and Olah,
//! "Deconvolution and Checkerboard Artifacts", Distill, 2016): a stride-2 transposed
//! convolution with a 3x3 kernel reaches its output pixels unevenly (one tap, two or four,
//! by the pixel's row and column parity), so even a uniform kernel paints a grid pattern.
//! A 4x4 kernel (divisible by the stride) reaches every pixel with four taps, and resizing
//! before convolving avoids the overlap question altogether.
//!
//! Each method here upsamples by exactly 2 with uniform weights that keep the mean
//! brightness, one channel at a time (groups = channels), so what differs is only how the
//! taps overlap.

use conv_runtime::ndarray::{Array3, Array4, ArrayView3, Axis, s};
use conv_runtime::prelude::*;

conv! { struct Kernel3Stride2; k = 3, stride = 2, padding = 1, output_padding = 1 }
conv! { struct Kernel4Stride2; k = 4, stride = 2, padding = 1 }
conv! { struct Smooth3; k = 3, padding = 1 }

/// A way to upsample by 2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// `ConvTranspose2d(k = 3, stride = 2)`: the kernel is not a multiple of the stride.
    Kernel3Stride2,
    /// `ConvTranspose2d(k = 4, stride = 2)`: it is.
    Kernel4Stride2,
    /// Nearest-neighbour x2, then a 3x3 `Conv2d`.
    ResizeConvolve,
}

impl Method {
    /// Every method, in the order the picture shows them.
    pub const ALL: [Method; 3] = [
        Method::Kernel3Stride2,
        Method::Kernel4Stride2,
        Method::ResizeConvolve,
    ];

    /// The method as a layer a reader knows.
    pub fn label(self) -> &'static str {
        match self {
            Method::Kernel3Stride2 => "ConvTranspose2d k=3 s=2",
            Method::Kernel4Stride2 => "ConvTranspose2d k=4 s=2",
            Method::ResizeConvolve => "nearest x2 + Conv2d k=3",
        }
    }
}

/// `picture` (`[channels, h, w]`) upsampled to `[channels, 2h, 2w]` by `method`, every
/// weight the same.
pub fn upsample(method: Method, picture: &ArrayView3<f32>) -> Result<Array3<f32>, ConvError> {
    let channels = picture.dim().0;
    let x = picture.view().insert_axis(Axis(0));
    let y = match method {
        Method::Kernel3Stride2 => {
            ConvTranspose2d::from_weights(Kernel3Stride2, uniform(channels, 3), None, channels)?
                .forward(&x)?
        }
        Method::Kernel4Stride2 => {
            ConvTranspose2d::from_weights(Kernel4Stride2, uniform(channels, 4), None, channels)?
                .forward(&x)?
        }
        Method::ResizeConvolve => {
            let resized = Upsample::nearest(2)?.forward(&x)?;
            // Each output sums all 9 taps: weights 1/9 keep the mean.
            let weight = Array4::from_elem((channels, 1, 3, 3), 1.0 / 9.0);
            Conv2d::from_weights(Smooth3, weight, None, channels)?.forward(&resized)?
        }
    };
    Ok(y.index_axis_move(Axis(0), 0))
}

/// How strongly `picture` (`[channels, h, w]`) varies with the parity of its rows and
/// columns: for each of the four pixel phases `(y % 2, x % 2)`, the mean of the phase's
/// pixels minus the mean of all, absolute, averaged over the phases and channels. A picture
/// without a 2-pixel grid pattern scores near 0 whatever its content.
pub fn grid_strength(picture: &ArrayView3<f32>) -> f32 {
    let (channels, h, w) = picture.dim();
    let mut total = 0.0;
    for channel in picture.outer_iter() {
        let mean = channel.mean().unwrap_or(0.0);
        for (dy, dx) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
            let phase = channel.slice(s![dy..h; 2, dx..w; 2]);
            total += (phase.mean().unwrap_or(mean) - mean).abs();
        }
    }
    total / (4 * channels) as f32
}

/// A depthwise transposed-convolution weight of `k x k` equal taps. A stride-2 output pixel
/// receives `(k / 2)^2` taps on average, so each tap weighs the inverse: the mean output
/// equals the mean input.
fn uniform(channels: usize, k: usize) -> Array4<f32> {
    let average_taps = (k * k) as f32 / 4.0;
    Array4::from_elem((channels, 1, k, k), 1.0 / average_taps)
}
