use conv_runtime::prelude::*;

const SIZE: usize = 3;

fn main() {
    let _ = SIZE;
    let _ = conv!(k = SIZE);
    let _ = conv!(k = "3");
    let _ = conv!(k = 3, stride = true);
}
