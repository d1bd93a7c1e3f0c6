//! The checkerboard artifact of strided transposed convolution, on the demo's picture:
//! half-size, then upsampled by 2 with uniform weights by a 3x3 stride-2 transposed
//! convolution (kernel not divisible by the stride: uneven overlap, a grid pattern), a 4x4
//! stride-2 one (even overlap) and nearest resizing followed by a 3x3 convolution. Each
//! panel is the same crop, zoomed 4x so single pixels show.
//!
//! Run: `cargo run --release --example checkerboard [-- OUT_DIR]` (default
//! `target/lessons`); writes `checkerboard.png`.

use std::path::PathBuf;

use conv_runtime::ndarray::s;
use convgen::demo::image::{downscale, save_png, scene, side_by_side};
use convgen::lessons::checkerboard::{Method, upsample};
use convgen::lessons::paint::zoom;

/// The crop shown, in full-size pixels: `(top, left, side)`, over the brick house and the
/// fence of the 640x384 scene.
const CROP: (usize, usize, usize) = (244, 440, 96);
const ZOOM: usize = 4;

fn main() -> Result<(), convgen::demo::DemoError> {
    let out = PathBuf::from(std::env::args().nth(1).unwrap_or("target/lessons".into()));
    std::fs::create_dir_all(&out)?;
    let picture = scene(640, 384);
    let low = downscale(&picture.view());
    let (top, left, side) = CROP;
    let crop = s![.., top..top + side, left..left + side];
    let mut panels = vec![zoom(&picture.slice(crop), ZOOM)];
    println!(
        "method                     grid strength (mean |phase mean - mean| over the 4 pixel phases)"
    );
    for method in Method::ALL {
        let upsampled = upsample(method, &low.view())?;
        println!(
            "{:<26} {:.4}",
            method.label(),
            convgen::lessons::checkerboard::grid_strength(&upsampled.view())
        );
        panels.push(zoom(&upsampled.slice(crop), ZOOM));
    }
    let views: Vec<_> = panels.iter().map(|p| p.view()).collect();
    let path = out.join("checkerboard.png");
    save_png(&side_by_side(&views, 8).view(), &path)?;
    println!(
        "wrote {} (left to right: original, {})",
        path.display(),
        Method::ALL.map(Method::label).join(", ")
    );
    Ok(())
}
