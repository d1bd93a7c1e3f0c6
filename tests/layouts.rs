//! Inputs in any layout give the same result as the same values in standard layout; empty
//! batches and caller-provided outputs work.

use conv_runtime::ndarray::{Array4, Axis, s};
use conv_runtime::prelude::*;
use conv_runtime::reference;
use convgen::{assert_close, random_array};

conv! { struct Dilated; k = 3, dilation = 2, padding = 2 }
conv! { struct Strided; k = (3, 2), stride = (2, 3), padding = (1, 1) }
conv! { struct Up; k = 4, stride = 2, padding = 1 }

fn layers() -> (Conv2d<Dilated>, Conv2d<Strided>, ConvTranspose2d<Up>) {
    (
        Conv2d::builder(Dilated, 6, 5).seed(1).build().unwrap(),
        Conv2d::builder(Strided, 6, 4)
            .groups(2)
            .seed(2)
            .build()
            .unwrap(),
        ConvTranspose2d::builder(Up, 6, 3).seed(3).build().unwrap(),
    )
}

/// Runs all three layers on `x` and compares with the same values in standard layout.
fn check_view(x: &conv_runtime::ndarray::ArrayView4<f32>, what: &str) {
    assert!(
        !x.is_standard_layout(),
        "{what}: the view should not be contiguous"
    );
    let standard = x.as_standard_layout().into_owned();
    let (dilated, strided, up) = layers();
    assert_close(
        &dilated.forward(x).unwrap(),
        &dilated.forward(&standard).unwrap(),
        0.0,
        what,
    );
    assert_close(
        &strided.forward(x).unwrap(),
        &strided.forward(&standard).unwrap(),
        0.0,
        what,
    );
    assert_close(
        &up.forward(x).unwrap(),
        &up.forward(&standard).unwrap(),
        0.0,
        what,
    );
    let naive = reference::conv2d(x, dilated.weight(), dilated.bias(), &Dilated::SPEC, 1).unwrap();
    assert_close(&dilated.forward(x).unwrap(), &naive, 2e-5, what);
}

#[test]
fn permuted_input_nhwc_storage() {
    // Stored as NHWC, viewed as NCHW: the channel axis has stride 1.
    let nhwc = random_array((2, 9, 11, 6), 1);
    let x = nhwc.view().permuted_axes([0, 3, 1, 2]);
    check_view(&x, "NHWC storage viewed as NCHW");
}

#[test]
fn input_sliced_with_steps() {
    let big = random_array((3, 12, 23, 31), 2);
    let x = big.slice(s![..;2, 1..;2, 2..21;2, ..;3]);
    check_view(&x, "slice with steps");
}

#[test]
fn input_with_negative_strides() {
    let big = random_array((1, 6, 10, 13), 3);
    let x = big.slice(s![.., ..;-1, .., ..;-1]);
    check_view(&x, "reversed axes");
}

#[test]
fn input_with_a_broadcast_axis() {
    let row = random_array((1, 6, 1, 17), 4);
    let x = row.broadcast((2, 6, 9, 17)).unwrap();
    check_view(&x, "broadcast rows");
}

#[test]
fn empty_batch_gives_empty_output_of_the_right_shape() {
    let (dilated, strided, up) = layers();
    let x = Array4::<f32>::zeros((0, 6, 9, 10));
    assert_eq!(dilated.forward(&x).unwrap().shape(), &[0, 5, 9, 10]);
    assert_eq!(strided.forward(&x).unwrap().shape(), &[0, 4, 5, 4]);
    assert_eq!(up.forward(&x).unwrap().shape(), &[0, 3, 18, 20]);
    assert_eq!(
        up.forward_with_output_size(&x, (19, 21)).unwrap().shape(),
        &[0, 3, 19, 21]
    );
}

#[test]
fn forward_into_writes_the_same_values_as_forward() {
    let (dilated, _, up) = layers();
    let x = random_array((2, 6, 7, 9), 5);
    let mut out = Array4::from_elem((2, 5, 7, 9), f32::NAN);
    dilated.forward_into(&x, &mut out).unwrap();
    assert_close(&out, &dilated.forward(&x).unwrap(), 0.0, "forward_into");

    // Into a non-contiguous view of a larger buffer; the rest of the buffer is untouched.
    let mut buffer = Array4::from_elem((2, 3, 28, 36), -7.0f32);
    let mut view = buffer.slice_mut(s![.., .., ..;2, ..;2]);
    up.forward_into(&x, &mut view).unwrap();
    assert_close(
        &view,
        &up.forward(&x).unwrap(),
        0.0,
        "forward_into a strided view",
    );
    assert!(
        buffer
            .slice(s![.., .., 1..;2, ..])
            .iter()
            .all(|&v| v == -7.0)
    );
}

#[test]
fn results_do_not_depend_on_the_batch_they_come_in() {
    let (dilated, strided, up) = layers();
    let x = random_array((3, 6, 10, 12), 6);
    for n in 0..3 {
        let single = x.slice(s![n..n + 1, .., .., ..]);
        let batched = dilated.forward(&x).unwrap();
        assert_close(
            &dilated.forward(&single).unwrap().index_axis(Axis(0), 0),
            &batched.index_axis(Axis(0), n),
            0.0,
            "dilated",
        );
        let batched = strided.forward(&x).unwrap();
        assert_close(
            &strided.forward(&single).unwrap().index_axis(Axis(0), 0),
            &batched.index_axis(Axis(0), n),
            0.0,
            "strided",
        );
        let batched = up.forward(&x).unwrap();
        assert_close(
            &up.forward(&single).unwrap().index_axis(Axis(0), 0),
            &batched.index_axis(Axis(0), n),
            0.0,
            "up",
        );
    }
}

#[test]
fn non_finite_inputs_propagate_only_where_they_reach() {
    let (dilated, _, up) = layers();
    let mut x = Array4::<f32>::zeros((1, 6, 12, 12));
    x[[0, 2, 5, 5]] = f32::NAN;
    x[[0, 4, 0, 11]] = f32::INFINITY;
    let y = dilated.forward(&x).unwrap();
    let naive = reference::conv2d(&x, dilated.weight(), dilated.bias(), &Dilated::SPEC, 1).unwrap();
    assert_close(&y, &naive, 1e-5, "non-finite conv");
    // The NaN reaches the 3x3 dilated window around it and nothing else.
    assert!(y[[0, 0, 5, 5]].is_nan() && y[[0, 0, 3, 7]].is_nan());
    assert!(y[[0, 0, 4, 5]].is_finite());
    assert!(y[[0, 0, 9, 1]].is_finite());
    let z = up.forward(&x).unwrap();
    let naive =
        reference::conv_transpose2d(&x, up.weight(), up.bias(), &Up::SPEC, 1, None).unwrap();
    assert_close(&z, &naive, 1e-5, "non-finite transposed conv");
    assert!(z[[0, 1, 10, 10]].is_nan() && z[[0, 1, 0, 0]].is_finite());
}
