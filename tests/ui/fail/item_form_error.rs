use conv_runtime::prelude::*;

conv!(
    /// The struct is still defined, so the code below gives no second error.
    pub struct Bad; k = 3, stride = 0
);

struct Model {
    layer: Conv2d<Bad>,
}

const FIELD: (usize, usize) = Bad::RECEPTIVE_FIELD;

fn main() {
    let model = Model {
        layer: Conv2d::new(Bad, 3, 16),
    };
    let _ = (model.layer, FIELD);
}
