use conv_runtime::prelude::*;

fn main() {
    // One mistake, one error: no type error from `Conv2d::new` or `forward` follows it.
    let layer = Conv2d::new(conv!(k = 0), 3, 16);
    let x = conv_runtime::ndarray::Array4::<f32>::zeros((1, 3, 8, 8));
    let _ = layer.forward(&x);
}
