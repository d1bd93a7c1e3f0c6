use conv_runtime::prelude::*;

fn main() {
    let _ = conv!(k = 3, kernel_size = (3, 3));
}
