//! Pictures for the demo: the built-in scene, the user's PNG or JPEG, the x2 box
//! downscaling that makes the low-resolution input, and PNG output.
//!
//! A picture is an [`Array3<f32>`] of shape `[3, h, w]` (RGB planes, CHW), values in `[0, 1]`.

use std::path::Path;

use conv_runtime::ndarray::{Array3, ArrayView3, s};

/// The demo's error type: an unreadable image, an I/O error, a layer error.
pub type DemoError = Box<dyn std::error::Error + Send + Sync>;

/// The built-in test picture, `width` x `height` pixels: generated, deterministically, by
/// this function (no photograph is shipped), and meant to look like a real landscape in
/// which sharp detail matters: a sky gradient with fractal-noise clouds and a sun with a
/// hard rim, ridged fractal mountains with snow lines, grassy hills with fine texture, a
/// ploughed field of thin furrows, a white picket fence, pine trees and two brick houses
/// with tiled roofs and framed windows. One house and part of every kind of feature lie in
/// the right quarter, which the demo holds out for evaluation.
///
/// Each pixel averages 2x2 samples, so edges are sharp but not aliased beyond what a camera
/// would give. The picture depends only on its size (drawn in coordinates relative to the
/// height), never on the demo's `--seed`.
pub fn scene(width: usize, height: usize) -> Array3<f32> {
    let mut picture = Array3::zeros((3, height, width));
    let scale = 1.0 / height as f32;
    for y in 0..height {
        for x in 0..width {
            let mut sum = [0.0f32; 3];
            for (dy, dx) in [(0.25, 0.25), (0.25, 0.75), (0.75, 0.25), (0.75, 0.75)] {
                let colour = scene_at((x as f32 + dx) * scale, (y as f32 + dy) * scale);
                for (s, c) in sum.iter_mut().zip(colour) {
                    *s += c;
                }
            }
            for (channel, s) in sum.iter().enumerate() {
                picture[[channel, y, x]] = (s * 0.25).clamp(0.0, 1.0);
            }
        }
    }
    picture
}

type Rgb = [f32; 3];

fn mix(a: Rgb, b: Rgb, t: f32) -> Rgb {
    let t = t.clamp(0.0, 1.0);
    [
        a[0] + (b[0] - a[0]) * t,
        a[1] + (b[1] - a[1]) * t,
        a[2] + (b[2] - a[2]) * t,
    ]
}

fn shade(c: Rgb, factor: f32) -> Rgb {
    [c[0] * factor, c[1] * factor, c[2] * factor]
}

/// A hash of a lattice point, uniform in `[0, 1)`.
fn hash(i: i32, j: i32, salt: u32) -> f32 {
    let mut h = (i as u32).wrapping_mul(0x8da6_b343)
        ^ (j as u32).wrapping_mul(0xd816_3841)
        ^ salt.wrapping_mul(0xcb1a_b31f);
    h ^= h >> 15;
    h = h.wrapping_mul(0x2c1b_3c6d);
    h ^= h >> 12;
    h = h.wrapping_mul(0x297a_2d39);
    h ^= h >> 15;
    (h >> 8) as f32 / (1u32 << 24) as f32
}

/// Smooth value noise in `[0, 1)`.
fn noise(x: f32, y: f32, salt: u32) -> f32 {
    let (xi, yi) = (x.floor(), y.floor());
    let (fx, fy) = (x - xi, y - yi);
    let (sx, sy) = (fx * fx * (3.0 - 2.0 * fx), fy * fy * (3.0 - 2.0 * fy));
    let (i, j) = (xi as i32, yi as i32);
    let top = hash(i, j, salt) + (hash(i + 1, j, salt) - hash(i, j, salt)) * sx;
    let bottom = hash(i, j + 1, salt) + (hash(i + 1, j + 1, salt) - hash(i, j + 1, salt)) * sx;
    top + (bottom - top) * sy
}

/// Fractal (fBm) noise: `octaves` of value noise, each twice the frequency and half the
/// amplitude of the last; in `[0, 1)`.
fn fractal(x: f32, y: f32, octaves: u32, salt: u32) -> f32 {
    let (mut sum, mut amplitude, mut frequency, mut total) = (0.0, 1.0, 1.0, 0.0);
    for octave in 0..octaves {
        sum += amplitude * noise(x * frequency, y * frequency, salt + octave);
        total += amplitude;
        amplitude *= 0.5;
        frequency *= 2.0;
    }
    sum / total
}

/// Ridged fractal noise, for crags: sharp crests where the noise crosses its middle.
fn ridged(x: f32, octaves: u32, salt: u32) -> f32 {
    let (mut sum, mut amplitude, mut frequency, mut total) = (0.0, 1.0, 1.0, 0.0);
    for octave in 0..octaves {
        let n = noise(x * frequency, 0.5, salt + octave);
        sum += amplitude * (1.0 - (2.0 * n - 1.0).abs());
        total += amplitude;
        amplitude *= 0.55;
        frequency *= 2.1;
    }
    sum / total
}

/// The horizon line of the hills at `u`: a height `v` (0 at the top, 1 at the bottom).
fn hill_line(u: f32) -> f32 {
    0.60 - 0.07 * fractal(u * 2.5, 3.0, 4, 40) - 0.03 * (u * 2.3).sin()
}

/// The top of the ploughed field.
const FIELD_TOP: f32 = 0.80;

/// Pine trees: (position along the width, height, width), in units of the picture height.
const TREES: [(f32, f32, f32); 11] = [
    (0.08, 0.16, 0.07),
    (0.16, 0.12, 0.05),
    (0.34, 0.19, 0.08),
    (0.41, 0.14, 0.06),
    (0.82, 0.17, 0.07),
    (0.90, 0.13, 0.05),
    (1.02, 0.18, 0.08),
    (1.13, 0.11, 0.05),
    (1.27, 0.16, 0.07),
    (1.52, 0.20, 0.08),
    (1.58, 0.12, 0.05),
];

/// Houses: (left edge, wall width, wall height), standing on the field's top edge.
const HOUSES: [(f32, f32, f32); 2] = [(0.52, 0.22, 0.12), (1.32, 0.16, 0.10)];

/// The colour of the scene at `(u, v)`, in units of the picture height from the top left.
fn scene_at(u: f32, v: f32) -> Rgb {
    // Sky: a vertical gradient, a sun with a hard rim and a glow, fractal clouds.
    let horizon = 0.58;
    let mut colour = mix(
        [0.20, 0.38, 0.78],
        [0.78, 0.86, 0.95],
        (v / horizon).powf(1.3),
    );
    let (sun_u, sun_v, sun_r) = (1.05, 0.17, 0.055);
    let sun_d = ((u - sun_u).powi(2) + (v - sun_v).powi(2)).sqrt();
    colour = mix(
        colour,
        [1.0, 0.93, 0.70],
        (-(sun_d - sun_r) * 9.0).exp() * 0.6,
    );
    let cloud = fractal(u * 3.0, v * 9.0, 5, 7);
    let cloud_amount = ((cloud - 0.52) * 5.0).clamp(0.0, 1.0) * (1.0 - v / 0.45).clamp(0.0, 1.0);
    colour = mix(colour, [0.97, 0.97, 0.98], cloud_amount);
    if sun_d < sun_r {
        colour = [1.0, 0.96, 0.80];
    }

    // Far mountains: broad peaks with ridged crags, lit from the left, snow on the peaks.
    let crest_at = |u: f32| {
        let peaks = ((fractal(u * 2.2 + 5.0, 0.3, 2, 21) - 0.3) / 0.4).clamp(0.0, 1.0);
        0.50 - 0.20 * peaks - 0.07 * ridged(u * 3.0 + 3.0, 6, 20)
    };
    let crest = crest_at(u);
    if v > crest {
        let rock = fractal(u * 40.0, v * 40.0, 4, 30);
        let strata = (fractal(u * 6.0, v * 60.0, 3, 31) - 0.5) * 0.25;
        // Slopes rising to the right face the light.
        let rise = crest_at(u - 0.008) - crest_at(u + 0.008);
        let light = 1.0 + (rise * 12.0).clamp(-0.25, 0.25);
        let haze = ((v - crest) * 3.0).clamp(0.0, 1.0);
        colour = shade(
            mix([0.42, 0.45, 0.55], [0.58, 0.61, 0.70], haze),
            light * (0.8 + 0.4 * rock + strata),
        );
        let snow_line = 0.36 + 0.03 * fractal(u * 12.0, 1.0, 3, 32);
        if v < snow_line && v < crest + 0.06 && rock > 0.3 {
            colour = shade([0.93, 0.95, 0.98], light.min(1.05) * (0.88 + 0.1 * rock));
        }
    }

    // Hills: grass with fine texture, darker in small hollows.
    let hills = hill_line(u);
    if v > hills {
        let grass = fractal(u * 90.0, v * 140.0, 3, 50);
        let patches = fractal(u * 5.0, v * 5.0, 3, 51);
        colour = shade(
            mix([0.22, 0.48, 0.16], [0.38, 0.58, 0.20], patches),
            0.75 + 0.45 * grass,
        );
    }

    // A ploughed field: furrows converging towards the horizon, thin and sharp.
    if v > FIELD_TOP {
        let depth = v - FIELD_TOP + 0.05;
        let furrow = ((u - 0.8) / depth * 3.0).rem_euclid(1.0);
        let soil = fractal(u * 60.0, v * 60.0, 3, 60);
        colour = if furrow < 0.35 {
            shade([0.36, 0.24, 0.13], 0.8 + 0.3 * soil)
        } else {
            shade([0.62, 0.55, 0.30], 0.85 + 0.3 * soil)
        };
    }

    // A white picket fence along the top of the field.
    let fence_bottom = FIELD_TOP + 0.01;
    if v < fence_bottom && v > fence_bottom - 0.06 {
        let post = (u * 45.0).rem_euclid(1.0);
        let top = fence_bottom - 0.06 + 0.012 * (1.0 - (post - 0.15).abs() / 0.15).max(0.0);
        let on_post = post < 0.3 && v > top;
        let on_rail = (v - (fence_bottom - 0.045)).abs() < 0.004
            || (v - (fence_bottom - 0.018)).abs() < 0.004;
        if on_post || on_rail {
            colour = shade([0.95, 0.95, 0.92], if post < 0.08 { 0.8 } else { 1.0 });
        }
    }

    for &(centre, height, width) in &TREES {
        if let Some(c) = tree(u, v, centre, hill_line(centre) + 0.03, height, width) {
            colour = c;
        }
    }
    for &(left, width, height) in &HOUSES {
        if let Some(c) = house(u, v, left, width, height) {
            colour = c;
        }
    }
    colour
}

/// A pine tree standing at `(centre, base)`: three tiers of needles and a trunk.
fn tree(u: f32, v: f32, centre: f32, base: f32, height: f32, width: f32) -> Option<Rgb> {
    let dx = u - centre;
    if v > base || v < base - height || dx.abs() > width {
        return None;
    }
    let trunk_top = base - height * 0.18;
    if v > trunk_top {
        return (dx.abs() < width * 0.12).then(|| {
            shade(
                [0.35, 0.22, 0.12],
                0.8 + 0.4 * noise(u * 300.0, v * 40.0, 70),
            )
        });
    }
    // Each tier is a triangle whose apex is a third of the crown above its base.
    let crown = trunk_top - (base - height);
    let from_top = (v - (base - height)) / crown;
    let tier = (from_top * 3.0).min(2.999);
    let within = tier.fract();
    let half_width = width * (0.45 + 0.18 * tier.floor()) * (0.25 + 0.75 * within);
    (dx.abs() < half_width).then(|| {
        let needles = noise(u * 250.0, v * 250.0, 71);
        let light = if dx < 0.0 { 1.15 } else { 0.85 };
        shade([0.10, 0.30, 0.14], light * (0.7 + 0.6 * needles))
    })
}

/// A brick house on the field's top edge: wall, tiled roof, windows with crossed frames,
/// a door.
fn house(u: f32, v: f32, left: f32, width: f32, height: f32) -> Option<Rgb> {
    let ground = FIELD_TOP + 0.015;
    let wall_top = ground - height;
    let roof_height = height * 0.7;
    let x = u - left;
    // The roof: overhanging, with rows of tiles.
    let overhang = width * 0.08;
    if v < wall_top && v > wall_top - roof_height {
        let rise = (wall_top - v) / roof_height;
        let half = (width / 2.0 + overhang) * (1.0 - rise);
        if (x - width / 2.0).abs() < half {
            let row = (wall_top - v) / 0.012;
            let offset = if (row.floor() as i32) % 2 == 0 {
                0.0
            } else {
                0.5
            };
            let tile = ((x / 0.018) + offset).fract();
            let edge = row.fract() < 0.15 || tile < 0.08;
            let base = [0.60, 0.18, 0.12];
            return Some(if edge {
                shade(base, 0.55)
            } else {
                shade(base, 0.9 + 0.2 * noise(u * 200.0, v * 200.0, 80))
            });
        }
        return None;
    }
    if !(0.0..width).contains(&x) || v < wall_top || v > ground {
        return None;
    }
    let y = v - wall_top;
    // The door, in the middle, and two windows with white frames and a cross.
    let door = (x - width / 2.0).abs() < width * 0.09 && y > height * 0.35;
    if door {
        let knob =
            (x - width / 2.0 - width * 0.05).abs() < 0.004 && (y - height * 0.68).abs() < 0.004;
        return Some(if knob {
            [0.85, 0.75, 0.3]
        } else {
            [0.30, 0.17, 0.10]
        });
    }
    for window_x in [width * 0.22, width * 0.78] {
        let (wx, wy) = (x - window_x, y - height * 0.42);
        let (half_w, half_h) = (width * 0.11, height * 0.18);
        if wx.abs() < half_w && wy.abs() < half_h {
            let frame = wx.abs() > half_w - 0.006 || wy.abs() > half_h - 0.006;
            let cross = wx.abs() < 0.003 || wy.abs() < 0.003;
            return Some(if frame || cross {
                [0.96, 0.96, 0.94]
            } else {
                mix(
                    [0.25, 0.35, 0.50],
                    [0.55, 0.70, 0.85],
                    (wy + half_h) / (2.0 * half_h),
                )
            });
        }
    }
    // Bricks: staggered rows with thin mortar joints.
    let row = y / 0.011;
    let offset = if (row.floor() as i32) % 2 == 0 {
        0.0
    } else {
        0.5
    };
    let brick = (x / 0.026 + offset).fract();
    let mortar = row.fract() < 0.18 || brick < 0.08;
    Some(if mortar {
        [0.80, 0.78, 0.72]
    } else {
        let tone = noise((x / 0.026 + offset).floor(), row.floor(), 90);
        shade([0.66, 0.32, 0.22], 0.8 + 0.35 * tone)
    })
}

/// The user's PNG or JPEG as RGB in `[0, 1]`, cropped to even sides (so that x2 downscaling
/// is exact) and, if a side exceeds `max_side`, to its central `max_side` pixels (cropping,
/// not scaling, keeps the fine detail the demo is about, and bounds the time to evaluate).
pub fn load(path: &Path, max_side: usize) -> Result<Array3<f32>, DemoError> {
    let decoded = ::image::open(path)
        .map_err(|error| format!("cannot read {}: {error}", path.display()))?
        .to_rgb8();
    let (width, height) = (decoded.width() as usize, decoded.height() as usize);
    let picture = Array3::from_shape_fn((3, height, width), |(c, y, x)| {
        f32::from(decoded.get_pixel(x as u32, y as u32)[c]) / 255.0
    });
    let side = |n: usize| n.min(max_side) & !1;
    let (h, w) = (side(height), side(width));
    if h < 16 || w < 32 {
        return Err(format!(
            "{} is {width}x{height}: the demo needs at least 32x16 pixels",
            path.display()
        )
        .into());
    }
    let (top, left) = ((height - h) / 2, (width - w) / 2);
    Ok(picture
        .slice(s![.., top..top + h, left..left + w])
        .to_owned())
}

/// Halves each side by averaging 2x2 blocks (the low-resolution input the network learns
/// to undo); an odd last row or column is dropped.
pub fn downscale(picture: &ArrayView3<f32>) -> Array3<f32> {
    box_downscale(picture, 2)
}

/// Divides each side by `factor` (at least 1) by averaging `factor x factor` blocks, as
/// PyTorch's `avg_pool2d(x, factor)`; rows and columns past the last whole block are dropped.
pub fn box_downscale(picture: &ArrayView3<f32>, factor: usize) -> Array3<f32> {
    let (channels, h, w) = picture.dim();
    let f = factor.max(1);
    let area = (f * f) as f32;
    Array3::from_shape_fn((channels, h / f, w / f), |(c, y, x)| {
        let block = picture.slice(s![c, f * y..f * y + f, f * x..f * x + f]);
        block.sum() / area
    })
}

/// Writes `picture` (`[3, h, w]`, clamped to `[0, 1]`) as an 8-bit RGB PNG.
pub fn save_png(picture: &ArrayView3<f32>, path: &Path) -> Result<(), DemoError> {
    let (_, h, w) = picture.dim();
    let mut bytes = Vec::with_capacity(3 * h * w);
    let hwc = picture.view().permuted_axes([1, 2, 0]);
    for pixel in hwc.rows() {
        for &value in pixel {
            bytes.push((value.clamp(0.0, 1.0) * 255.0).round() as u8);
        }
    }
    ::image::save_buffer_with_format(
        path,
        &bytes,
        w as u32,
        h as u32,
        ::image::ExtendedColorType::Rgb8,
        ::image::ImageFormat::Png,
    )
    .map_err(|error| format!("cannot write {}: {error}", path.display()))?;
    Ok(())
}

/// Places `panels` (each `[3, h, w]`, the same height) side by side, left to right, with a
/// `separator`-pixel white line between them.
pub fn side_by_side(panels: &[ArrayView3<f32>], separator: usize) -> Array3<f32> {
    let h = panels.first().map_or(0, |p| p.dim().1);
    let width = panels.iter().map(|p| p.dim().2).sum::<usize>()
        + separator * panels.len().saturating_sub(1);
    let mut out = Array3::ones((3, h, width));
    let mut left = 0;
    for panel in panels {
        let w = panel.dim().2;
        out.slice_mut(s![.., .., left..left + w]).assign(panel);
        left += w + separator;
    }
    out
}
