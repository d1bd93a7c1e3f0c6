//! Training on random patches of the picture's training region, and the split that keeps
//! the held-out region out of it.

use conv_runtime::ndarray::{Array3, Array4, ArrayView3, s};
use conv_runtime::{ConvError, SplitMix64};
use indicatif::{ProgressBar, ProgressStyle};

use super::network::Network;

/// The training pairs: the low-resolution picture and the original, restricted to the
/// columns left of the held-out region.
pub struct TrainingSet {
    /// `[3, h, w]`, the x2-downscaled training region.
    pub low: Array3<f32>,
    /// `[3, 2h, 2w]`, the original training region.
    pub high: Array3<f32>,
}

/// A batch: `[n, 1, p, p]` low-resolution patches and their `[n, 1, 2p, 2p]` originals.
pub struct Batch {
    /// The network's input.
    pub low: Array4<f32>,
    /// What it should output.
    pub high: Array4<f32>,
}

impl TrainingSet {
    /// The low-resolution patch size must fit: `patch` at most the region's sides.
    pub fn fits(&self, patch: usize) -> bool {
        let (_, h, w) = self.low.dim();
        patch <= h && patch <= w
    }

    /// `batch` random patches of `patch` x `patch` low-resolution pixels, each from a
    /// random colour plane, mirrored left-right at random.
    pub fn batch(&self, rng: &mut SplitMix64, batch: usize, patch: usize) -> Batch {
        let (channels, h, w) = self.low.dim();
        let mut low = Array4::zeros((batch, 1, patch, patch));
        let mut high = Array4::zeros((batch, 1, 2 * patch, 2 * patch));
        for i in 0..batch {
            let c = rng.below(channels);
            let (y, x) = (rng.below(h - patch + 1), rng.below(w - patch + 1));
            let mirror = rng.below(2) == 1;
            let lo = self.low.slice(s![c, y..y + patch, x..x + patch]);
            let hi = self
                .high
                .slice(s![c, 2 * y..2 * (y + patch), 2 * x..2 * (x + patch)]);
            let (lo, hi) = if mirror {
                (lo.slice_move(s![.., ..;-1]), hi.slice_move(s![.., ..;-1]))
            } else {
                (lo, hi)
            };
            low.slice_mut(s![i, 0, .., ..]).assign(&lo);
            high.slice_mut(s![i, 0, .., ..]).assign(&hi);
        }
        Batch { low, high }
    }
}

/// Where the held-out region starts, in low-resolution columns: the right quarter of a
/// picture `low_width` columns wide.
pub fn held_out_start(low_width: usize) -> usize {
    low_width - low_width / 4
}

/// The training set of a picture (`[3, 2h, 2w]`) and its x2 downscaling (`[3, h, w]`):
/// the columns left of [`held_out_start`]. No training patch touches a held-out pixel.
pub fn training_set(high: &ArrayView3<f32>, low: &ArrayView3<f32>) -> TrainingSet {
    let split = held_out_start(low.dim().2);
    TrainingSet {
        low: low.slice(s![.., .., ..split]).to_owned(),
        high: high.slice(s![.., .., ..2 * split]).to_owned(),
    }
}

/// How to train.
#[derive(Clone, Debug)]
pub struct Schedule {
    /// Adam steps.
    pub steps: usize,
    /// Patches per step.
    pub batch: usize,
    /// Side of a low-resolution patch.
    pub patch: usize,
}

/// Trains `network` on `data` for `schedule.steps` Adam steps of mean squared error,
/// drawing patches from `rng`; returns the loss of every step. `progress` is advanced once
/// per step and shows the running loss.
pub fn train(
    network: &mut Network,
    data: &TrainingSet,
    schedule: &Schedule,
    rng: &mut SplitMix64,
    progress: &ProgressBar,
) -> Result<Vec<f32>, ConvError> {
    progress.set_length(schedule.steps as u64);
    progress.set_style(
        ProgressStyle::with_template(
            "{prefix} [{bar:32}] {pos}/{len} steps, {elapsed} (eta {eta}), loss {msg}",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    progress.set_prefix("training");
    let mut losses = Vec::with_capacity(schedule.steps);
    for step in 0..schedule.steps {
        let Batch { low, high } = data.batch(rng, schedule.batch, schedule.patch);
        let activations = network.forward(&low)?;
        let error = &activations.output - &high;
        let scale = 1.0 / error.len() as f32;
        losses.push(error.iter().map(|e| e * e).sum::<f32>() * scale);
        // d mean(e^2) / d output = 2 e / len.
        network.backward_and_step(&activations, &(error * (2.0 * scale)))?;
        if step % 10 == 9 || step + 1 == schedule.steps {
            let recent = &losses[losses.len().saturating_sub(20)..];
            let mean = recent.iter().sum::<f32>() / recent.len() as f32;
            progress.set_message(format!("{mean:.2e}"));
        }
        progress.inc(1);
    }
    progress.finish();
    Ok(losses)
}
