use conv_runtime::prelude::*;

fn main() {
    let _ = conv!(k = 3, padding = 1, padding_mode = mirror);
    let _ = conv!(k = 3, padding = 1, padding_mode = wrap);
    let _ = conv!(k = 3, padding = 1, padding_mode = 2);
}
