//! A small U-Net with a dilated bottleneck, a PyTorch network ported by loading its
//! `state_dict` and folding each batch norm into its convolution.
//!
//! The weights (`tests/fixtures/networks/unet.safetensors`, saved in float16 and read as
//! f32) are random, with batch-norm statistics that are not the identity, written by
//! `tools/make_networks.py`: the point is the numbers, not a trained segmentation. This
//! example runs it on a 256x256 crop of the demo's picture (or `--image PATH`, cropped to
//! its central 256x256) and prints the time per image; `tests/networks.rs` checks the same
//! code against PyTorch's output.
//!
//! Run: `cargo run --release --example unet [-- --image PATH] [--python PATH]`
//!
//! With `--python ~/venv/bin/python` (a Python with torch and safetensors) it also runs the
//! PyTorch original on the same input, with as many threads, and prints both times and the
//! largest difference between the outputs.

mod network;

use std::path::PathBuf;

use conv_runtime::StateDict;
use conv_runtime::ndarray::{Axis, s};
use convgen::demo::DemoError;
use convgen::demo::image::{load, scene};
use convgen::max_difference;
use convgen::side_by_side::{median_time, milliseconds, run_torch};
use network::{DilatedUNet, Workspace};

const SIDE: usize = 256;

fn main() -> Result<(), DemoError> {
    let mut image = None;
    let mut python = None;
    let mut runs = 20;
    let out = PathBuf::from("target/networks");
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--image" => image = Some(PathBuf::from(value()?)),
            "--python" => python = Some(PathBuf::from(value()?)),
            "--runs" => runs = value()?.parse()?,
            _ => {
                return Err(format!(
                    "unknown option {flag}; options: --image PATH, --python PATH, --runs N"
                )
                .into());
            }
        }
    }
    let weights_path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/networks/unet.safetensors");
    let network = DilatedUNet::load(&StateDict::open(&weights_path)?)?;

    let picture = match &image {
        Some(path) => load(path, SIDE)?,
        None => scene(2 * SIDE, SIDE + 64),
    };
    let (_, h, w) = picture.dim();
    if h < SIDE || w < SIDE {
        return Err(format!("the picture is {w}x{h}; the example needs {SIDE}x{SIDE}").into());
    }
    let (top, left) = ((h - SIDE) / 2, (w - SIDE) / 2);
    let x = picture
        .slice(s![.., top..top + SIDE, left..left + SIDE])
        .insert_axis(Axis(0));

    let logits = network.forward(&x)?;
    // Timed with the activations allocated once and reused, as a program serving many
    // images would run it (see `DilatedUNet::forward_in`).
    let mut workspace = Workspace::default();
    let ((), time) = median_time(runs, || network.forward_in(&x, &mut workspace).map(|_| ()))?;
    let threads = rayon::current_num_threads();
    println!(
        "dilated U-Net: {:?} -> {:?} logits",
        x.shape(),
        logits.shape()
    );
    println!("time per image, median of {runs} runs:");
    println!(
        "  convgen                {} ({threads} threads)",
        milliseconds(time)
    );
    if let Some(python) = &python {
        let torch = run_torch(python, "unet", &weights_path, x.view(), threads, runs, &out)?;
        let (difference, _) = max_difference(&logits, &torch.output);
        torch.print_beside(time, difference);
    }
    Ok(())
}
