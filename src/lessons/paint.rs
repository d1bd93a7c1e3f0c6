//! Turning the lessons' arrays into pictures: a heat map of a gradient, and nearest-neighbour
//! zoom so single pixels can be seen. Pictures are `[3, h, w]` RGB in `[0, 1]`, as
//! [`crate::demo::image`] saves them.

use conv_runtime::ndarray::{Array2, Array3, ArrayView3, s};

/// `map` as a heat map, each value a `scale` x `scale` block with a one-pixel dark grid line
/// between blocks: zero is black, and the rest runs from dark red through yellow to white
/// with the square root of `value / max`, so that small path counts stay visible.
pub fn heat_map(map: &Array2<f32>, scale: usize) -> Array3<f32> {
    let (h, w) = map.dim();
    let max = map.iter().fold(0.0f32, |max, v| max.max(v.abs()));
    let mut picture = Array3::from_elem((3, h * scale, w * scale), 0.15);
    for ((y, x), value) in map.indexed_iter() {
        let colour = if *value == 0.0 || max == 0.0 {
            [0.0, 0.0, 0.0]
        } else {
            let level = (value.abs() / max).sqrt();
            let ramp = |offset: f32| (3.0 * level - offset).clamp(0.0, 1.0);
            [0.25 + 0.75 * ramp(0.0), ramp(1.0), ramp(2.0)]
        };
        let (top, left) = (y * scale, x * scale);
        for (channel, value) in colour.into_iter().enumerate() {
            picture
                .slice_mut(s![channel, top..top + scale - 1, left..left + scale - 1])
                .fill(value);
        }
    }
    picture
}

/// `picture` with each pixel repeated `factor` times across and down.
pub fn zoom(picture: &ArrayView3<f32>, factor: usize) -> Array3<f32> {
    let (channels, h, w) = picture.dim();
    Array3::from_shape_fn((channels, h * factor, w * factor), |(c, y, x)| {
        picture[[c, y / factor, x / factor]]
    })
}
