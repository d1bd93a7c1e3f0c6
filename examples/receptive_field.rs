//! What a stack of dilated 3x3 convolutions sees, drawn from the layers' own backward pass:
//! the gradient of one output pixel with respect to the input, for one layer of dilation 2
//! (the seed's claim: a 3x3 kernel with dilation 2 sees 5x5) and for the stacks (1, 1, 1),
//! (2, 2, 2) and (1, 2, 4). Every weight is 1, so a pixel's value counts the paths from it
//! to the output pixel; black is a pixel the output never sees.
//!
//! Run: `cargo run --release --example receptive_field [-- OUT_DIR]` (default
//! `target/lessons`); writes `receptive_field.png`.

use std::path::PathBuf;

use convgen::demo::image::{save_png, side_by_side};
use convgen::lessons::paint::heat_map;
use convgen::lessons::receptive_field::{gradient_map, stack_field, support};

/// Input pixels a side: the largest field below (15) with a margin of black.
const SIZE: usize = 19;
/// Screen pixels per input pixel.
const SCALE: usize = 14;

fn main() -> Result<(), convgen::demo::DemoError> {
    let out = PathBuf::from(std::env::args().nth(1).unwrap_or("target/lessons".into()));
    std::fs::create_dir_all(&out)?;
    let stacks: [&[usize]; 4] = [&[2], &[1, 1, 1], &[2, 2, 2], &[1, 2, 4]];
    println!("dilations   field (theory)   field (gradient)   pixels seen");
    let mut panels = Vec::new();
    for dilations in stacks {
        let map = gradient_map(dilations, SIZE)?;
        let ((h, w), seen) = support(&map);
        let field = stack_field(dilations);
        println!(
            "{:<11} {field:>2}x{field:<13} {h:>2}x{w:<15} {seen:>3} of {}",
            format!("{dilations:?}"),
            h * w
        );
        panels.push(heat_map(&map, SCALE));
    }
    let views: Vec<_> = panels.iter().map(|p| p.view()).collect();
    let path = out.join("receptive_field.png");
    save_png(&side_by_side(&views, 2 * SCALE).view(), &path)?;
    println!("wrote {} (left to right: {stacks:?})", path.display());
    Ok(())
}
