use conv_runtime::prelude::*;

const K: usize = 3;

fn main() {
    // conv1d!'s messages speak of lengths and `Conv1d`, never of `(h, w)` pairs or `Conv2d`.
    let _ = conv1d!(stride = 2);
    let _ = conv1d!(k = 3, groups = 4);
    let _ = conv1d!(k = K);
    let _ = conv1d!(k = 3, padding = full);
    let _ = conv1d!(k = 3, padding = reflect);
    let _ = conv1d!(k = 3, stride = same);
}
