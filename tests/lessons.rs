//! What the two lesson pictures claim (`examples/receptive_field.rs`,
//! `examples/checkerboard.rs`), checked on the arrays they are drawn from.

use conv_runtime::ndarray::Array3;
use convgen::lessons::checkerboard::{Method, grid_strength, upsample};
use convgen::lessons::receptive_field::{gradient_map, stack_field, support};

#[test]
fn a_dilated_3x3_sees_5x5_through_9_pixels() {
    let map = gradient_map(&[2], 9).unwrap();
    assert_eq!(support(&map), ((5, 5), 9));
    // Only every other pixel of the field, from the centre (4, 4).
    for ((y, x), value) in map.indexed_iter() {
        let tap = (2..=6).contains(&y) && (2..=6).contains(&x) && y % 2 == 0 && x % 2 == 0;
        assert_eq!(*value != 0.0, tap, "({y}, {x})");
    }
}

#[test]
fn the_gradient_field_of_each_stack_is_its_compile_time_field() {
    for dilations in [&[1, 1, 1][..], &[2, 2, 2], &[1, 2, 4], &[4, 1], &[1]] {
        let field = stack_field(dilations);
        let map = gradient_map(dilations, field + 4).unwrap();
        assert_eq!(support(&map).0, (field, field), "{dilations:?}");
    }
    assert_eq!(stack_field(&[1, 2, 4]), 15);
}

#[test]
fn repeated_equal_dilation_leaves_holes_and_doubling_does_not() {
    // (2, 2, 2): every tap offset is even, so the 13x13 field holds 7x7 seen pixels.
    let gridded = gradient_map(&[2, 2, 2], 17).unwrap();
    assert_eq!(support(&gridded), ((13, 13), 49));
    // (1, 2, 4): every offset from -7 to 7 is reached.
    let dense = gradient_map(&[1, 2, 4], 17).unwrap();
    assert_eq!(support(&dense), ((15, 15), 225));
    // A change of the input outside the field moves nothing: the gradient there is zero.
    assert_eq!(gradient_map(&[1, 2, 4], 17).unwrap()[[0, 0]], 0.0);
}

#[test]
fn only_the_kernel_the_stride_does_not_divide_paints_a_grid() {
    // A flat grey picture: any pattern in the output comes from how the taps overlap.
    let flat = Array3::from_elem((3, 12, 10), 0.5f32);
    for method in Method::ALL {
        let upsampled = upsample(method, &flat.view()).unwrap();
        assert_eq!(upsampled.dim(), (3, 24, 20), "{method:?}");
        // Away from the borders, where every method sees only the flat picture.
        let inner = upsampled.slice(conv_runtime::ndarray::s![.., 4..20, 4..16]);
        let strength = grid_strength(&inner);
        if method == Method::Kernel3Stride2 {
            // One, two or four taps of weight 4/9 each: 0.22, 0.44 and 0.89.
            assert!(strength > 0.1, "{method:?}: {strength}");
            let values: Vec<f32> = inner
                .slice(conv_runtime::ndarray::s![0, 0..2, 0..2])
                .iter()
                .copied()
                .collect();
            let mut sorted = values.clone();
            sorted.sort_by(f32::total_cmp);
            let expected = [
                0.5 * 4.0 / 9.0,
                0.5 * 8.0 / 9.0,
                0.5 * 8.0 / 9.0,
                0.5 * 16.0 / 9.0,
            ];
            for (got, want) in sorted.iter().zip(expected) {
                assert!((got - want).abs() < 1e-6, "{values:?}");
            }
        } else {
            assert!(strength < 1e-6, "{method:?}: {strength}");
            assert!(inner.iter().all(|v| (v - 0.5).abs() < 1e-6), "{method:?}");
        }
    }
}
