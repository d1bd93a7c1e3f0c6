//! The demo, shortened: about a second of training (300 small steps) on a small built-in scene. The loss
//! falls, the same seed gives the same numbers, and the side-by-side PNG decodes to the
//! expected size.

use std::path::PathBuf;

use convgen::demo::training::Schedule;
use convgen::demo::{Config, run};

fn short_config(out_dir: PathBuf) -> Config {
    Config {
        scene_size: (160, 96),
        out_dir,
        features: 8,
        learning_rate: 3e-3,
        schedule: Schedule {
            steps: 300,
            batch: 8,
            patch: 16,
        },
        verbose: false,
        ..Config::default()
    }
}

#[test]
fn short_training_lowers_the_loss_and_writes_a_valid_png() {
    let out_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("demo-test");
    let config = short_config(out_dir.clone());
    let summary = run(&config).expect("the demo runs");

    let losses = &summary.losses;
    assert_eq!(losses.len(), 300);
    assert!(losses.iter().all(|loss| loss.is_finite()), "{losses:?}");
    let mean = |values: &[f32]| values.iter().sum::<f32>() / values.len() as f32;
    let (first, last) = (mean(&losses[..20]), mean(&losses[280..]));
    assert!(
        last < 0.8 * first,
        "the loss did not fall: {first:e} -> {last:e}"
    );

    // Five panels of the held-out quarter (160 / 2 = 80 low-resolution columns, the last
    // 20 held out, so 40 columns each), with four 2-pixel separators.
    assert_eq!(summary.png, out_dir.join("upsample.png"));
    assert_eq!(summary.png_size, (5 * 40 + 4 * 2, 96));
    let decoded = image::open(&summary.png).expect("a PNG that decodes");
    assert_eq!(
        (decoded.width() as usize, decoded.height() as usize),
        summary.png_size
    );
    assert_eq!(decoded.color(), image::ColorType::Rgb8);

    let scores = summary.scores;
    assert!(
        scores.nearest.is_finite() && scores.bilinear.is_finite() && scores.learned.is_finite(),
        "{scores:?}"
    );
    // Even this short training beats bilinear on the held-out quarter (by 0.8 dB with
    // these settings; the run is deterministic).
    assert!(scores.learned > scores.bilinear, "{scores:?}");

    // The same seed gives the same run, to the bit; another seed another one.
    let again = run(&Config {
        schedule: Schedule {
            steps: 5,
            ..config.schedule.clone()
        },
        ..config.clone()
    })
    .expect("the demo runs");
    assert_eq!(again.losses[..], losses[..5]);
    let other = run(&Config {
        seed: 1,
        schedule: Schedule {
            steps: 5,
            ..config.schedule.clone()
        },
        ..config
    })
    .expect("the demo runs");
    assert_ne!(other.losses[..], losses[..5]);
}

#[test]
fn command_line_arguments_override_the_defaults() {
    let args = ["--seed", "7", "--out", "elsewhere", "--steps", "10"].map(String::from);
    let config = convgen::demo::parse_args(args).expect("valid arguments");
    assert_eq!(config.seed, 7);
    assert_eq!(config.out_dir, PathBuf::from("elsewhere"));
    assert_eq!(config.schedule.steps, 10);
    assert!(config.image.is_none());
    assert_eq!(Config::default().out_dir, PathBuf::from("target/demo"));
    assert!(convgen::demo::parse_args(["--seed".to_string()]).is_err());
    assert!(convgen::demo::parse_args(["--bogus".to_string()]).is_err());
}

/// `--image` reads PNG and JPEG, cropping odd sides to even and large ones to `max_side`.
#[test]
fn user_images_load_as_png_and_jpeg() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("demo-test-images");
    std::fs::create_dir_all(&dir).unwrap();
    let picture = image::RgbImage::from_fn(65, 41, |x, y| {
        image::Rgb([(x * 3) as u8, (y * 5) as u8, 128])
    });
    for name in ["odd.png", "odd.jpg"] {
        let path = dir.join(name);
        picture.save(&path).unwrap();
        let loaded = convgen::demo::image::load(&path, 640).unwrap();
        assert_eq!(loaded.dim(), (3, 40, 64), "{name}");
        assert!(loaded.iter().all(|v| (0.0..=1.0).contains(v)), "{name}");
        let cropped = convgen::demo::image::load(&path, 32).unwrap();
        assert_eq!(cropped.dim(), (3, 32, 32), "{name}");
    }
    // The PNG is lossless: the top-left pixel of the central crop is exact.
    let loaded = convgen::demo::image::load(&dir.join("odd.png"), 640).unwrap();
    assert_eq!(loaded[[2, 0, 0]], 128.0 / 255.0);
    assert!(convgen::demo::image::load(&dir.join("missing.png"), 640).is_err());
}
