use conv_runtime::prelude::*;

fn main() {
    // nn.Conv1d takes one integer per parameter; so does conv1d!.
    let _ = conv1d!(k = (1, 3), dilation = 2);
    let _ = conv1d!(k = 3, stride = (2, 2), padding = same);
}
