use conv_runtime::prelude::*;
use conv_runtime::reference;
use convgen::{assert_close, random_array};

#[test]
fn smoke() {
    let layer = Conv2d::builder(conv!(k = 3, dilation = 2, padding = 2), 3, 16)
        .seed(1)
        .build()
        .unwrap();
    let x = random_array((2, 3, 13, 11), 5);
    let y = layer.forward(&x).unwrap();
    let r = reference::conv2d(
        &x,
        layer.weight(),
        layer.bias(),
        &layer.geometry().spec(),
        1,
    )
    .unwrap();
    for n in 0..2 {
        let (d, i) = convgen::max_difference(
            &y.index_axis(conv_runtime::ndarray::Axis(0), n),
            &r.index_axis(conv_runtime::ndarray::Axis(0), n),
        );
        eprintln!("n={n} d={d} at {i:?}");
    }
    assert_close(&y, &r, 1e-5, "conv");
    let up = ConvTranspose2d::builder(conv!(k = 4, stride = 2, padding = 1), 16, 5)
        .seed(2)
        .build()
        .unwrap();
    let z = up.forward(&y).unwrap();
    let rz =
        reference::conv_transpose2d(&y, up.weight(), up.bias(), &up.geometry().spec(), 1, None)
            .unwrap();
    assert_close(&z, &rz, 1e-5, "convT");
    let s = Conv2d::builder(conv!(k = 3, stride = (2, 3), padding = (1, 2)), 3, 5)
        .seed(1)
        .build()
        .unwrap();
    let y = s.forward(&x).unwrap();
    let r = reference::conv2d(&x, s.weight(), s.bias(), &s.geometry().spec(), 1).unwrap();
    assert_close(&y, &r, 1e-5, "strided conv");
}
