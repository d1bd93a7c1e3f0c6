use conv_runtime::prelude::*;

// After a syntax error the type is still defined, so the code using it gives no second error.
conv!(pub struct MissingEq; k = 3, stride 2);
conv!(pub struct MissingSemicolon k = 3);

struct Model {
    first: Conv2d<MissingEq>,
    second: ConvTranspose2d<MissingSemicolon>,
}

fn main() {
    let model = Model {
        first: Conv2d::new(MissingEq, 3, 16),
        second: ConvTranspose2d::new(MissingSemicolon, 16, 3),
    };
    let _ = (model.first, model.second, MissingEq::RECEPTIVE_FIELD);
    // In an expression, too; and the mistakes before the syntax error are reported with it.
    let layer = Conv2d::new(conv!(k = 0, padding = (1, 2, 3)), 3, 16);
    let x = conv_runtime::ndarray::Array4::<f32>::zeros((1, 3, 8, 8));
    let _ = layer.forward(&x);
}
