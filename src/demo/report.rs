//! Measuring and printing: PSNR, the receptive-field table, the results table.

use std::time::Duration;

use conv_runtime::ndarray::{ArrayBase, Data, Dimension, Zip};

use super::network::ReceptiveField;

/// Peak signal-to-noise ratio in dB of `estimate` against `truth`, both with values in
/// `[0, 1]` (`estimate` is clamped to it first, as when saved as an image).
pub fn psnr<S, T, D>(estimate: &ArrayBase<S, D>, truth: &ArrayBase<T, D>) -> f64
where
    S: Data<Elem = f32>,
    T: Data<Elem = f32>,
    D: Dimension,
{
    let mut sum = 0.0f64;
    Zip::from(estimate).and(truth).for_each(|&e, &t| {
        let d = f64::from(e.clamp(0.0, 1.0)) - f64::from(t);
        sum += d * d;
    });
    let mse = sum / truth.len() as f64;
    10.0 * (1.0 / mse.max(1e-12)).log10()
}

/// The held-out PSNR of each method, in dB.
#[derive(Clone, Copy, Debug)]
pub struct Scores {
    /// Nearest-neighbour interpolation.
    pub nearest: f64,
    /// Bilinear interpolation (`align_corners = false`).
    pub bilinear: f64,
    /// The learned network.
    pub learned: f64,
}

/// Prints the receptive field after each layer, with the dilations and without.
pub fn print_receptive_fields(rows: &[ReceptiveField]) {
    println!("receptive field of each layer's output, in low-resolution pixels:");
    println!(
        "  {:<32} {:>14} {:>18}",
        "layer", "with dilation", "without dilation"
    );
    for ReceptiveField {
        layer: name,
        with,
        without,
    } in rows
    {
        println!(
            "  {:<32} {:>14} {:>18}",
            name,
            format!("{}x{}", with.0, with.1),
            format!("{}x{}", without.0, without.1)
        );
    }
    println!("  (the same weights either way: dilation widens the context for free)");
}

/// Prints the PSNR table.
pub fn print_scores(scores: &Scores, region: (usize, usize)) {
    println!(
        "held-out PSNR ({}x{} pixels, right quarter of the picture, never trained on):",
        region.1, region.0
    );
    println!("  {:<34} {:>9} {:>14}", "method", "PSNR", "vs bilinear");
    for (name, value) in [
        ("nearest", scores.nearest),
        ("bilinear", scores.bilinear),
        ("learned (bilinear + upconvolution)", scores.learned),
    ] {
        println!(
            "  {:<34} {:>6.2} dB {:>+11.2} dB",
            name,
            value,
            value - scores.bilinear
        );
    }
}

/// `1.23 s` or `456 ms`.
pub fn seconds(duration: Duration) -> String {
    if duration.as_secs_f64() >= 1.0 {
        format!("{:.1} s", duration.as_secs_f64())
    } else {
        format!("{} ms", duration.as_millis())
    }
}
