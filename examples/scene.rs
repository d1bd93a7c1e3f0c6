//! Writes the demo's built-in picture (`convgen::demo::image::scene`) for tools outside
//! Rust: as a PNG, or, for a path ending in `.safetensors`, as the exact `f32` pixels (one
//! tensor, `picture`, `[3, height, width]` in `[0, 1]`), which `tools/make_networks.py`
//! trains its FSRCNN on.
//!
//! Run: `cargo run --release --example scene -- PATH [WIDTH HEIGHT]` (default 512 x 320, the
//! demo's size).

use std::path::PathBuf;

use conv_runtime::StateDict;
use convgen::demo::image::{DemoError, save_png, scene};

fn main() -> Result<(), DemoError> {
    let mut args = std::env::args().skip(1);
    let path = PathBuf::from(args.next().ok_or("usage: scene PATH [WIDTH HEIGHT]")?);
    let width = args.next().map_or(Ok(512), |w| w.parse())?;
    let height = args.next().map_or(Ok(320), |h| h.parse())?;
    let picture = scene(width, height);
    if path.extension().is_some_and(|e| e == "safetensors") {
        StateDict::save(&path, [("picture".to_owned(), picture.view().into_dyn())])?;
    } else {
        save_png(&picture.view(), &path)?;
    }
    println!("wrote {} ({width}x{height})", path.display());
    Ok(())
}
