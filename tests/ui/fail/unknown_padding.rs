use conv_runtime::prelude::*;

fn main() {
    let _ = conv!(k = 3, padding = full);
}
