use conv_runtime::prelude::*;

fn main() {
    // nn.ConvTranspose2d takes padding_mode = 'zeros' only, and so does ConvTranspose2d.
    let geometry = conv!(k = 3, stride = 2, padding = 1, padding_mode = reflect);
    let _ = ConvTranspose2d::new(geometry, 8, 4);
    // Conv2d takes it.
    let _ = Conv2d::new(geometry, 8, 4);
}
