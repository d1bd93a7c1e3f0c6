use conv_runtime::prelude::*;

fn main() {
    let _ = conv!(k = 3, dilation = (2, 0));
}
