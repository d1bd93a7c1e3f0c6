//! PyTorch's default initialisation, reproducible from a seed.

use ndarray::{Array1, Array4};

/// SplitMix64 (Steele, Lea and Flood, 2014): a tiny, well-studied generator whose output
/// for a given seed never changes, so `.seed(n)` gives the same weights in every release.
///
/// The generator behind [`Builder::seed`](crate::Builder::seed), public so that a program
/// that seeds its layers can draw the rest of its randomness (batches, crops, noise) from
/// the same stable stream. Not for cryptography.
///
/// ```
/// use conv_runtime::SplitMix64;
///
/// let mut rng = SplitMix64::new(7);
/// let pick = rng.below(10);
/// assert!(pick < 10);
/// assert_eq!(SplitMix64::new(7).below(10), pick);
/// ```
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator whose every output is a fixed function of `seed`.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    /// A seed that differs between calls and runs, as PyTorch's unseeded default does.
    pub fn from_entropy() -> SplitMix64 {
        use std::hash::{BuildHasher, RandomState};
        SplitMix64(RandomState::new().hash_one(std::time::SystemTime::now()))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[-bound, bound)`.
    pub fn uniform(&mut self, bound: f32) -> f32 {
        // The top 24 bits give every f32 in [0, 1) on a uniform grid.
        let unit = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        (2.0 * unit - 1.0) * bound
    }

    /// In `0..n`, by the remainder (biased by at most `n / 2^64`). `0` when `n` is 0.
    pub fn below(&mut self, n: usize) -> usize {
        match n {
            0 => 0,
            n => (self.next_u64() % n as u64) as usize,
        }
    }
}

/// Weights and bias as PyTorch's `reset_parameters` makes them for a convolution layer:
/// `kaiming_uniform_(weight, a = sqrt(5))`, which is uniform in `+-1 / sqrt(fan_in)`, and a
/// bias uniform in the same bound. `fan_in` is what PyTorch computes from the weight's shape:
/// `shape[1] * kh * kw`, which is `in / groups * kh * kw` for `Conv2d` but
/// `out / groups * kh * kw` for `ConvTranspose2d`, whose weight is `[in, out / groups, kh, kw]`.
pub(super) fn default_parameters(
    shape: [usize; 4],
    bias: Option<usize>,
    rng: &mut SplitMix64,
) -> (Array4<f32>, Option<Array1<f32>>) {
    let fan_in = shape[1] * shape[2] * shape[3];
    let bound = 1.0 / (fan_in as f32).sqrt();
    let weight = Array4::from_shape_simple_fn(shape, || rng.uniform(bound));
    let bias = bias.map(|len| Array1::from_shape_simple_fn(len, || rng.uniform(bound)));
    (weight, bias)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_stay_inside_the_bound_and_fill_it() {
        let mut rng = SplitMix64::new(7);
        let values: Vec<f32> = (0..10_000).map(|_| rng.uniform(0.25)).collect();
        assert!(values.iter().all(|v| (-0.25..0.25).contains(v)));
        let (min, max) = values
            .iter()
            .fold((f32::MAX, f32::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        assert!(min < -0.24 && max > 0.24, "spread {min}..{max}");
        let mean = values.iter().sum::<f32>() / values.len() as f32;
        assert!(mean.abs() < 0.01, "mean {mean}");
    }

    #[test]
    fn the_same_seed_gives_the_same_numbers() {
        let first: Vec<u64> = {
            let mut rng = SplitMix64::new(42);
            (0..4).map(|_| rng.next_u64()).collect()
        };
        let mut rng = SplitMix64::new(42);
        assert!(first.iter().all(|&v| v == rng.next_u64()));
        // SplitMix64's published first output for seed 0.
        assert_eq!(SplitMix64::new(0).next_u64(), 0xe220_a839_7b1d_cdaf);
    }

    #[test]
    fn bound_follows_pytorch_fan_in() {
        let mut rng = SplitMix64::new(1);
        let (weight, bias) = default_parameters([16, 3, 3, 3], Some(16), &mut rng);
        let bound = 1.0 / 27f32.sqrt();
        assert!(weight.iter().all(|w| w.abs() <= bound));
        assert!(weight.iter().any(|w| w.abs() > 0.9 * bound));
        assert_eq!(bias.map(|b| b.len()), Some(16));
    }
}
