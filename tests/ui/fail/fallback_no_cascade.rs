use conv_runtime::prelude::*;

fn main() {
    // The bad stride is the one mistake: output_padding = 1 is not also judged against the
    // default stride 1 that stands in for it.
    let _ = conv!(k = 3, stride = 0, output_padding = 1);
    let _ = conv!(k = 3, dilation = -2, output_padding = (1, 1));
}
