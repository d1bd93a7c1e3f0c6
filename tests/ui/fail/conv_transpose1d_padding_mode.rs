use conv_runtime::prelude::*;

fn main() {
    // nn.ConvTranspose1d takes padding_mode = 'zeros' only, and so does ConvTranspose1d.
    let _ = ConvTranspose1d::new(conv1d!(k = 3, padding = 1, padding_mode = circular), 4, 4);
}
