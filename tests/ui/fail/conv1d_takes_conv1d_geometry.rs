use conv_runtime::prelude::*;

fn main() {
    // A 2-D geometry, even of one row, is not a 1-D one.
    let _ = Conv1d::new(conv!(k = (1, 3)), 4, 4);
}
