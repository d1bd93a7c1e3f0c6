use conv_runtime::prelude::*;

fn main() {
    // Five mistakes, five errors, each at its own token.
    let _ = conv!(k = 0, stride = -1, padding = full, dilation = 1.5, groups = 2);
}
