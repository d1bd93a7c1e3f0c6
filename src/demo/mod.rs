//! The demo: a learned x2 upsampling (dilated convolutions and a transposed convolution)
//! against nearest and bilinear interpolation, on a picture a person can look at.
//!
//! [`run`] takes a picture (the built-in [`image::scene`] or the user's PNG or JPEG), halves
//! it by 2x2 box averaging, trains [`network::Network`] to undo that on random patches of
//! the left three quarters, then measures nearest, bilinear and the network on the right
//! quarter, which training never sees, and writes those side by side as a PNG.
//! `src/bin/upsample.rs` is the command-line front end; `tests/demo.rs` runs a short
//! version.

pub mod image;
pub mod network;
pub mod report;
pub mod training;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use conv_runtime::SplitMix64;
use conv_runtime::ndarray::{ArrayView3, Axis, s};
use conv_runtime::prelude::*;
use indicatif::ProgressBar;

pub use image::DemoError;
use network::Network;
use report::Scores;
use training::Schedule;

/// Everything the demo can be told.
#[derive(Clone, Debug)]
pub struct Config {
    /// A PNG or JPEG to use instead of the built-in scene.
    pub image: Option<PathBuf>,
    /// The size `(width, height)` of the built-in scene.
    pub scene_size: (usize, usize),
    /// Larger pictures are cropped to their central `max_side` x `max_side` pixels.
    pub max_side: usize,
    /// Seeds the initial weights and the patches; the same seed gives the same numbers.
    pub seed: u64,
    /// Where the side-by-side PNG goes (created if missing).
    pub out_dir: PathBuf,
    /// Channels inside the network.
    pub features: usize,
    /// Adam's learning rate.
    pub learning_rate: f64,
    /// Steps, batch and patch size.
    pub schedule: Schedule,
    /// Print the tables and a progress bar.
    pub verbose: bool,
}

impl Default for Config {
    /// The command's defaults: the built-in scene, seed 0, `target/demo/`, and a training
    /// that takes about a minute on 2 cores.
    fn default() -> Config {
        Config {
            image: None,
            scene_size: (512, 320),
            max_side: 640,
            seed: 0,
            out_dir: PathBuf::from("target/demo"),
            features: 32,
            learning_rate: 2e-3,
            schedule: Schedule {
                steps: 1500,
                batch: 16,
                patch: 32,
            },
            verbose: true,
        }
    }
}

/// What a run produced.
#[derive(Clone, Debug)]
pub struct Summary {
    /// The training loss (mean squared error) of every step.
    pub losses: Vec<f32>,
    /// Held-out PSNR of each method.
    pub scores: Scores,
    /// The side-by-side PNG: low-resolution input (shown x2 by pixel repetition), nearest,
    /// bilinear, learned, original.
    pub png: PathBuf,
    /// Its size `(width, height)`.
    pub png_size: (usize, usize),
    /// The time spent training.
    pub training_time: Duration,
}

/// Runs the demo: prepares the picture, trains, evaluates, writes the PNG.
pub fn run(config: &Config) -> Result<Summary, DemoError> {
    let start = Instant::now();
    let (picture, source) = match &config.image {
        Some(path) => (
            image::load(path, config.max_side)?,
            path.display().to_string(),
        ),
        None => {
            let (w, h) = config.scene_size;
            (
                image::scene(w & !1, h & !1),
                "the built-in generated scene".to_string(),
            )
        }
    };
    let low = image::downscale(&picture.view());
    let (_, h, w) = picture.dim();
    let split = training::held_out_start(low.dim().2);
    let data = training::training_set(&picture.view(), &low.view());
    let patch = config.schedule.patch;
    if !data.fits(patch) {
        return Err(format!(
            "the picture ({w}x{h}) is too small for {patch}x{patch} low-resolution patches"
        )
        .into());
    }
    let mut network = Network::new(config.features, config.seed, config.learning_rate)?;
    if config.verbose {
        println!(
            "picture: {source}, {w}x{h}, halved to {}x{} by 2x2 box averaging ({})",
            w / 2,
            h / 2,
            report::seconds(start.elapsed())
        );
        println!(
            "training on the left {} low-resolution columns, holding out the right {}",
            split,
            w / 2 - split
        );
        println!(
            "network: {} parameters; each colour plane is one single-channel sample",
            network.parameter_count()
        );
        report::print_receptive_fields(&network.receptive_fields());
        println!(
            "Adam, learning rate {}, {} steps of {} patches of {}x{} -> {}x{}, on {} threads",
            config.learning_rate,
            config.schedule.steps,
            config.schedule.batch,
            patch,
            patch,
            2 * patch,
            2 * patch,
            threads()
        );
    }

    let progress = if config.verbose {
        ProgressBar::new(0)
    } else {
        ProgressBar::hidden()
    };
    let mut rng = SplitMix64::new(config.seed);
    let training_start = Instant::now();
    let losses = training::train(&mut network, &data, &config.schedule, &mut rng, &progress)?;
    let training_time = training_start.elapsed();

    let evaluation_start = Instant::now();
    let truth = picture.slice(s![.., .., 2 * split..]);
    let held_out = low.slice(s![.., .., split..]);
    // The three colour planes as a batch of single-channel images.
    let input = held_out.insert_axis(Axis(1));
    let planes = |x: conv_runtime::ndarray::Array4<f32>| x.remove_axis(Axis(1));
    let nearest = planes(Upsample::nearest(2)?.forward(&input)?);
    let bilinear = planes(Upsample::bilinear(2, false)?.forward(&input)?);
    let learned = planes(network.upsample(&input)?).mapv(|v| v.clamp(0.0, 1.0));
    let scores = Scores {
        nearest: report::psnr(&nearest, &truth),
        bilinear: report::psnr(&bilinear, &truth),
        learned: report::psnr(&learned, &truth),
    };
    let panels: [ArrayView3<f32>; 5] = [
        nearest.view(),
        nearest.view(),
        bilinear.view(),
        learned.view(),
        truth,
    ];
    let side_by_side = image::side_by_side(&panels, 2);
    std::fs::create_dir_all(&config.out_dir)
        .map_err(|error| format!("cannot create {}: {error}", config.out_dir.display()))?;
    let png = config.out_dir.join("upsample.png");
    image::save_png(&side_by_side.view(), &png)?;
    let evaluation_time = evaluation_start.elapsed();

    if config.verbose {
        let first = mean(&losses[..losses.len().min(20)]);
        let last = mean(&losses[losses.len().saturating_sub(20)..]);
        println!(
            "training: {} ({:.1} steps/s), loss {first:.2e} -> {last:.2e} (means of the \
             first and last 20 steps)",
            report::seconds(training_time),
            losses.len() as f64 / training_time.as_secs_f64(),
        );
        report::print_scores(&scores, (truth.dim().1, truth.dim().2));
        println!(
            "wrote {} ({}x{}): low-resolution input (shown x2), nearest, bilinear, learned, \
             original; evaluation and PNG in {}",
            png.display(),
            side_by_side.dim().2,
            side_by_side.dim().1,
            report::seconds(evaluation_time)
        );
    }
    Ok(Summary {
        losses,
        scores,
        png,
        png_size: (side_by_side.dim().2, side_by_side.dim().1),
        training_time,
    })
}

fn mean(values: &[f32]) -> f32 {
    values.iter().sum::<f32>() / values.len().max(1) as f32
}

/// Parses the command line (`--image PATH`, `--seed N`, `--out DIR`, `--steps N`) into a
/// [`Config`] on top of the defaults.
pub fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Config, String> {
    let mut config = Config::default();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--image" => config.image = Some(PathBuf::from(value("--image")?)),
            "--seed" => config.seed = number(&value("--seed")?, "--seed")?,
            "--out" => config.out_dir = PathBuf::from(value("--out")?),
            "--steps" => config.schedule.steps = number(&value("--steps")?, "--steps")?,
            "--features" => config.features = number(&value("--features")?, "--features")?,
            "--batch" => config.schedule.batch = number(&value("--batch")?, "--batch")?,
            "--patch" => config.schedule.patch = number(&value("--patch")?, "--patch")?,
            "--lr" => config.learning_rate = number(&value("--lr")?, "--lr")?,
            "-h" | "--help" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    Ok(config)
}

fn number<T: std::str::FromStr<Err: std::fmt::Display>>(
    text: &str,
    name: &str,
) -> Result<T, String> {
    text.parse()
        .map_err(|error| format!("{name} {text:?}: {error}"))
}

/// The command's help.
pub const USAGE: &str = "usage: cargo run --release --bin upsample -- [--image PATH] \
[--seed N] [--out DIR] [--steps N]
  --image PATH  a PNG or JPEG (default: a generated landscape); cropped to 640x640 at most
  --seed N      seeds initial weights and training patches (default 0)
  --out DIR     where upsample.png goes (default target/demo/)
  --steps N     training steps (default 1500, about a minute on 2 cores)
  --features N  channels inside the network (default 32)
  --batch N     patches per step (default 16)
  --patch N     low-resolution patch side (default 32)
  --lr X        Adam's learning rate (default 0.002)";

/// The number of threads the layers use: `RAYON_NUM_THREADS`, or one per core.
fn threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|n| n.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}
