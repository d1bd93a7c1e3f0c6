use conv_runtime::prelude::*;

fn main() {
    // k = 17 is 289 taps.
    let _ = conv!(k = 17);
    // Each value is small, the product is not.
    let _ = conv!(k = (1, 300));
}
