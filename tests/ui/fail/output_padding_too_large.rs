use conv_runtime::prelude::*;

fn main() {
    let _ = conv!(k = 3, stride = 2, output_padding = 2);
    // Fine on the height axis (stride 2), too large on the width axis (stride 1).
    let _ = conv!(k = 3, stride = (2, 1), output_padding = (1, 1));
}
