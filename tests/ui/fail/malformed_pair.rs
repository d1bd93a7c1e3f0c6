use conv_runtime::prelude::*;

fn main() {
    let _ = conv!(k = (1, 2, 3));
    let _ = conv!(k = 3, padding = (1, 2, 3, 4));
    let _ = conv!(k = (3));
    let _ = conv!(k = (3, 3,));
    let _ = conv!(k = (3 3));
    let _ = conv!(k = ());
    let _ = conv!(k = (a, 2));
}
