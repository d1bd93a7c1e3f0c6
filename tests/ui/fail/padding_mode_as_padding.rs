use conv_runtime::prelude::*;

fn main() {
    // PyTorch's `F.pad` takes the mode and the amount together; `conv!` takes them apart.
    let _ = conv!(k = 3, padding = reflect);
}
