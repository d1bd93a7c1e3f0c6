use conv_runtime::prelude::*;

fn main() {
    let _ = conv!(stride = 2, padding = 1);
}
