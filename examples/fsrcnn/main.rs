//! FSRCNN x3 super-resolution, a PyTorch network ported by loading its `state_dict`.
//!
//! The weights (`tests/fixtures/networks/fsrcnn.safetensors`) were trained by
//! `tools/make_networks.py` on the left three quarters of the demo's picture, each colour
//! channel a one-channel image made low resolution by 3x3 box averaging. This example makes
//! the same low-resolution picture, upscales it with bicubic interpolation (PyTorch's
//! `mode='bicubic'`) and with FSRCNN, prints the PSNR of both on the right quarter (never
//! trained on) and on the whole picture, the time per picture, and writes
//! `target/networks/fsrcnn.png`: low resolution (nearest), bicubic, FSRCNN, original.
//!
//! Run: `cargo run --release --example fsrcnn [-- --image PATH] [--python PATH]`
//!
//! With `--python ~/venv/bin/python` (a Python with torch and safetensors) it also runs the
//! PyTorch original on the same input, with as many threads, and prints both times and the
//! largest difference between the outputs.

mod network;

use std::path::PathBuf;

use conv_runtime::StateDict;
use conv_runtime::ndarray::{ArrayView3, Axis, s};
use conv_runtime::prelude::*;
use convgen::demo::DemoError;
use convgen::demo::image::{box_downscale, load, save_png, scene, side_by_side};
use convgen::demo::report::psnr;
use convgen::max_difference;
use convgen::side_by_side::{median_time, milliseconds, run_torch};
use network::{Fsrcnn, SCALE, Workspace};

struct Options {
    image: Option<PathBuf>,
    python: Option<PathBuf>,
    out: PathBuf,
    runs: usize,
}

fn options() -> Result<Options, DemoError> {
    let mut options = Options {
        image: None,
        python: None,
        out: PathBuf::from("target/networks"),
        runs: 20,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--image" => options.image = Some(value()?.into()),
            "--python" => options.python = Some(value()?.into()),
            "--out" => options.out = value()?.into(),
            "--runs" => options.runs = value()?.parse()?,
            _ => {
                return Err(format!(
                    "unknown option {flag}; options: --image PATH, --python PATH, --out DIR, \
                     --runs N"
                )
                .into());
            }
        }
    }
    Ok(options)
}

fn main() -> Result<(), DemoError> {
    let options = options()?;
    let weights_path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/networks/fsrcnn.safetensors");
    let network = Fsrcnn::load(&StateDict::open(&weights_path)?)?;

    let picture = match &options.image {
        Some(path) => load(path, 640)?,
        None => scene(512, 320),
    };
    let (_, h, w) = picture.dim();
    let high = picture.slice(s![.., ..h / SCALE * SCALE, ..w / SCALE * SCALE]);
    let low = box_downscale(&high, SCALE);
    let (_, low_h, low_w) = low.dim();
    println!(
        "FSRCNN x3, {} parameters, on {}: {low_w}x{low_h} -> {}x{} pixels, each of 3 channels",
        network.parameter_count(),
        options
            .image
            .as_ref()
            .map_or("the demo's picture".into(), |p| p.display().to_string()),
        SCALE * low_w,
        SCALE * low_h,
    );

    let bicubic = Upsample::bicubic(SCALE, false)?
        .forward(&low.view().insert_axis(Axis(0)))?
        .remove_axis(Axis(0));
    // The colour channels as a batch of one-channel images.
    let learned = network
        .forward(&low.view().insert_axis(Axis(1)))?
        .remove_axis(Axis(1));
    // Timed with the activations allocated once and reused, as a program upscaling many
    // pictures would run it (see `Fsrcnn::forward_in`).
    let mut workspace = Workspace::default();
    let ((), time) = median_time(options.runs, || {
        network
            .upscale_channels(&low.view(), &mut workspace)
            .map(|_| ())
    })?;

    // The right quarter, in whole low-resolution pixels, was never trained on.
    let held_out = (low_w - low_w * 3 / 4) * SCALE;
    println!("\n  method      PSNR, right quarter (unseen)   PSNR, whole picture");
    for (name, estimate) in [("bicubic", &bicubic), ("FSRCNN", &learned)] {
        println!(
            "  {name:<10} {:>14.2} dB {:>26.2} dB",
            psnr(&right(estimate.view(), held_out), &right(high, held_out)),
            psnr(estimate, &high)
        );
    }

    let threads = rayon::current_num_threads();
    println!(
        "\ntime per picture (3 channels as a batch of 3), median of {} runs:",
        options.runs
    );
    println!(
        "  convgen                {} ({threads} threads)",
        milliseconds(time)
    );
    if let Some(python) = &options.python {
        let batch = low.view().insert_axis(Axis(1));
        let torch = run_torch(
            python,
            "fsrcnn",
            &weights_path,
            batch,
            threads,
            options.runs,
            &options.out,
        )?;
        let (difference, _) = max_difference(&learned, &torch.output.index_axis(Axis(1), 0));
        torch.print_beside(time, difference);
    }

    std::fs::create_dir_all(&options.out)?;
    let nearest = Upsample::nearest(SCALE)?
        .forward(&low.view().insert_axis(Axis(0)))?
        .remove_axis(Axis(0));
    let panels: [ArrayView3<f32>; 4] = [nearest.view(), bicubic.view(), learned.view(), high];
    let path = options.out.join("fsrcnn.png");
    save_png(&side_by_side(&panels, 4).view(), &path)?;
    println!(
        "\nwrote {} (low resolution, bicubic, FSRCNN, original)",
        path.display()
    );
    Ok(())
}

/// The last `columns` columns of `picture`.
fn right(picture: ArrayView3<'_, f32>, columns: usize) -> ArrayView3<'_, f32> {
    let width = picture.dim().2;
    picture.slice_move(s![.., .., width - columns..])
}
