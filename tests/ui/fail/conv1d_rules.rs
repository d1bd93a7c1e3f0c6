use conv_runtime::prelude::*;

fn main() {
    // PyTorch's rules, said in lengths.
    let _ = conv1d!(k = 3, stride = 2, output_padding = 2);
    let _ = conv1d!(k = 300);
    let _ = conv1d!(k = 0, dilation = -1);
}
