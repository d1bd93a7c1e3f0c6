// The generated constants and `const fn`s evaluate at compile time.
use conv_runtime::prelude::*;

conv!(pub struct Dilated; k = 3, dilation = 2, padding = 2);
conv!(pub struct Up; kernel_size = (4, 3), stride = (2, 1), padding = (1, 1), output_padding = (1, 0));
conv!(pub struct Same; k = 4, padding = same);

const R: (usize, usize) = Dilated::RECEPTIVE_FIELD;
const O: Option<(usize, usize)> = Dilated::output_size((64, 64));
const T: Option<(usize, usize)> = Up::transposed_output_size((16, 16));
const SPEC: GeometrySpec = Dilated::SPEC;
const TOO_SMALL: Option<(usize, usize)> = Up::output_size((1, 1));

// Checked by the compiler itself: these fail to build if the arithmetic is wrong.
const _: () = assert!(R.0 == 5 && R.1 == 5);
const _: () = assert!(matches!(O, Some((64, 64))));
const _: () = assert!(matches!(T, Some((33, 16))));
const _: () = assert!(TOO_SMALL.is_none());
const _: () = assert!(SPEC.receptive_field().0 == 5);
const _: () = assert!(Up::KERNEL_SIZE.0 == 4 && Up::KERNEL_SIZE.1 == 3);
const _: () = assert!(Up::STRIDE.0 == 2 && Up::STRIDE.1 == 1);
const _: () = assert!(Up::PADDING.0 == 1 && Up::PADDING_AFTER.1 == 1);
const _: () = assert!(Up::DILATION.0 == 1);
const _: () = assert!(Up::OUTPUT_PADDING.0 == 1 && Up::OUTPUT_PADDING.1 == 0);
// `same` with an even kernel: the odd extra zero goes at the bottom/right.
const _: () = assert!(Same::PADDING.0 == 1 && Same::PADDING_AFTER.0 == 2);
const _: () = assert!(matches!(Same::output_size((7, 9)), Some((7, 9))));

// Constants size arrays.
const BUFFER: [f32; Dilated::RECEPTIVE_FIELD.0 * Dilated::RECEPTIVE_FIELD.1] = [0.0; 25];

// Through the trait, generically.
const fn taps<G: Geometry>() -> usize {
    G::SPEC.kernel_size.0 * G::SPEC.kernel_size.1
}
const _: () = assert!(taps::<Up>() == 12);

fn main() {
    assert_eq!(BUFFER.len(), 25);
    assert_eq!(R, (5, 5));
    assert_eq!(O, Some((64, 64)));
    assert_eq!(T, Some((33, 16)));
}
