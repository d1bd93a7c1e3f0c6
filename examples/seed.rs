//! The seed example: a dilated convolution for context, then a learned 2x upsampling.
//!
//! PyTorch:
//!     dilated_conv = nn.Conv2d(3, 16, kernel_size=3, dilation=2, padding=2)
//!     upconv = nn.ConvTranspose2d(16, 3, kernel_size=2, stride=2)
//!
//! Run: `cargo run --release --example seed`

use std::time::{Duration, Instant};

use conv_runtime::ndarray::Array4;
use conv_runtime::prelude::*;

conv! {
    /// 3x3 taps spread two pixels apart: a 5x5 window for 9 weights.
    struct Dilated; k = 3, dilation = 2, padding = 2
}
conv! {
    /// 2x2 taps two pixels apart: each input pixel becomes a learned 2x2 block.
    struct Upsample; k = 2, stride = 2
}

fn main() -> Result<(), ConvError> {
    let dilated_conv = Conv2d::builder(Dilated, 3, 16).seed(0).build()?;
    let upconv = ConvTranspose2d::builder(Upsample, 16, 3).seed(1).build()?;
    // A smooth test pattern stands in for an image.
    let x = Array4::from_shape_fn((1, 3, 64, 64), |(_, c, h, w)| {
        ((h as f32 * 0.2).sin() + (w as f32 * 0.15 + c as f32).cos()) * 0.5
    });

    println!("input                      {:?}", x.shape());
    println!(
        "Conv2d {:<38} receptive field {}x{} from {} weights per filter",
        format!("{:?}", dilated_conv.geometry()),
        Dilated::RECEPTIVE_FIELD.0,
        Dilated::RECEPTIVE_FIELD.1,
        Dilated::KERNEL_SIZE.0 * Dilated::KERNEL_SIZE.1,
    );
    let (y, conv_time) = timed(|| dilated_conv.forward(&x))?;
    println!("  -> {:?} in {}", y.shape(), micros(conv_time));
    println!("ConvTranspose2d {:?}", upconv.geometry());
    let (z, up_time) = timed(|| upconv.forward(&y))?;
    println!("  -> {:?} in {}", z.shape(), micros(up_time));
    println!(
        "(median of {RUNS} runs each on {} threads; `cargo bench` measures properly)",
        rayon_threads()
    );
    Ok(())
}

const RUNS: usize = 51;

/// Runs `f` `RUNS` times; returns its last result and the median time.
fn timed<T>(mut f: impl FnMut() -> Result<T, ConvError>) -> Result<(T, Duration), ConvError> {
    let mut times = Vec::with_capacity(RUNS);
    let mut result = f()?;
    for _ in 0..RUNS {
        let start = Instant::now();
        result = f()?;
        times.push(start.elapsed());
    }
    times.sort();
    Ok((result, times[RUNS / 2]))
}

fn micros(duration: Duration) -> String {
    format!("{:.1} us", duration.as_secs_f64() * 1e6)
}

fn rayon_threads() -> usize {
    rayon::current_num_threads()
}
