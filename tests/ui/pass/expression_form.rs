// The expression form with every parameter, every way of writing a value, and a trailing comma.
use conv_runtime::prelude::*;

fn main() {
    let _ = Conv2d::new(conv!(k = 3), 3, 16);
    let _ = Conv2d::new(conv!(kernel_size = 3), 3, 16);
    let _ = Conv2d::new(conv!(kernel_size = (3, 5), padding = (1, 2)), 3, 16);
    let _ = Conv2d::new(conv!(k = 3, dilation = 2, padding = 2), 3, 16);
    let _ = Conv2d::new(conv!(k = 3, padding = same), 3, 16);
    let _ = Conv2d::new(conv!(k = 4, padding = same, dilation = (1, 2)), 3, 16);
    let _ = Conv2d::new(conv!(k = 3, padding = valid, stride = (2, 1)), 3, 16);
    let _ = Conv2d::new(conv!(k = 3, stride = 2, padding = 1,), 3, 16);
    let _ = Conv2d::new(
        conv!(
            k = (3, 1),
            stride = (1, 2),
            padding = (1, 0),
            dilation = (2, 1),
            output_padding = (1, 1),
        ),
        3,
        16,
    );
    let _ = ConvTranspose2d::new(conv!(k = 2, stride = 2), 16, 3);
    let _ = ConvTranspose2d::new(
        conv!(k = 4, stride = 2, padding = 1, dilation = 1, output_padding = 1),
        16,
        3,
    );
    let _ = ConvTranspose2d::new(
        conv!(kernel_size = (3, 3), stride = (2, 3), output_padding = (1, 2)),
        16,
        3,
    );
    // output_padding may reach up to the dilation when that is the larger.
    let _ = ConvTranspose2d::new(conv!(k = 3, dilation = 3, output_padding = 2), 8, 8);
    // The largest kernel the macro unrolls.
    let _ = Conv2d::new(conv!(k = 16), 1, 1);
    let _ = Conv2d::new(conv!(k = (1, 256)), 1, 1);
}
