//! Every generated kernel against the naive reference, on a sampled grid of geometries
//! (the kernel families' own cases are in `generated_kernels.rs`).
//!
//! Each geometry below is a real `conv!` invocation, so each test runs kernels unrolled for
//! that geometry. The grid samples kernel sizes 1 to 7 (and 10 and 11, past what the
//! kernels unroll), strides 1 to 3, dilations 1 to 3, paddings 0 to 3 and `same`, output
//! paddings where legal and per-axis pairs, without taking every cross product (each
//! geometry costs compile time). For each, proptest draws channel counts, groups, batch and
//! odd spatial sizes down to the smallest legal input (1x1 where the geometry allows it),
//! and checks:
//!
//! * `Conv2d::forward` against `reference::conv2d`;
//! * `ConvTranspose2d::forward` and every `forward_with_output_size` against
//!   `reference::conv_transpose2d`;
//! * the adjoint identity `<conv(x), y> = <x, conv_transpose(y)>` with shared weights;
//!
//! on every instruction set the machine supports (`Isa::available`).

mod kernel_checks;

use kernel_checks::*;
use proptest::test_runner::Config;

macro_rules! grid {
    ($($name:ident: $geometry:expr;)*) => {$(
        #[test]
        fn $name() {
            let config = Config { cases: 12, failure_persistence: None, ..Config::default() };
            proptest!(config, |(case in cases())| {
                for isa in Isa::available() {
                    check_geometry($geometry, &case, isa)
                        .map_err(|error| TestCaseError::fail(format!("{isa}: {error}")))?;
                }
            });
        }
    )*};
}

grid! {
    k1: conv!(k = 1);
    k1_stride2: conv!(k = 1, stride = 2);
    k1_stride3_output_padding2: conv!(k = 1, stride = 3, output_padding = 2);
    k1_padding2: conv!(k = 1, padding = 2);
    k2: conv!(k = 2);
    k2_stride2: conv!(k = 2, stride = 2);
    k2_same: conv!(k = 2, padding = same);
    k2_padding3_wider_than_kernel: conv!(k = 2, padding = 3);
    k2_stride3_larger_than_kernel: conv!(k = 2, stride = 3, output_padding = 1);
    k3: conv!(k = 3);
    k3_valid: conv!(k = 3, padding = valid);
    k3_padding1: conv!(k = 3, padding = 1);
    k3_same: conv!(k = 3, padding = same);
    k3_stride2_padding1_output_padding1: conv!(k = 3, stride = 2, padding = 1, output_padding = 1);
    k3_stride3: conv!(k = 3, stride = 3);
    k3_dilation2_padding2: conv!(k = 3, dilation = 2, padding = 2);
    k3_dilation3_padding3: conv!(k = 3, dilation = 3, padding = 3);
    k3_stride3_dilation2_output_padding2: conv!(k = 3, stride = 3, dilation = 2, output_padding = 2);
    k3_stride2_dilation3_output_padding2: conv!(k = 3, stride = 2, dilation = 3, padding = 2, output_padding = 2);
    k4_stride2_padding1: conv!(k = 4, stride = 2, padding = 1);
    k4_same_dilation2: conv!(k = 4, padding = same, dilation = 2);
    k4_stride3_padding2_output_padding1: conv!(k = 4, stride = 3, padding = 2, output_padding = 1);
    k5_padding2: conv!(k = 5, padding = 2);
    k5_stride2_padding2_output_padding1: conv!(k = 5, stride = 2, padding = 2, output_padding = 1);
    k5_same_dilation2: conv!(k = 5, padding = same, dilation = 2);
    k6_stride3_padding1: conv!(k = 6, stride = 3, padding = 1);
    k7_padding3: conv!(k = 7, padding = 3);
    k7_stride2_padding3_output_padding1: conv!(k = 7, stride = 2, padding = 3, output_padding = 1);
    k7_same_dilation3: conv!(k = 7, padding = same, dilation = 3);
    // More taps than the specialised kernels unroll (81): the kernel with run-time taps, on
    // every set; stride 2 leaves the transposed phases 25 taps each, unrolled.
    k11_padding5_taps_at_run_time: conv!(k = 11, padding = 5);
    k10_stride2_padding4_taps_at_run_time: conv!(k = 10, stride = 2, padding = 4);
    k1x3_padding0x1: conv!(k = (1, 3), padding = (0, 1));
    k3x1_stride2x1: conv!(k = (3, 1), stride = (2, 1), padding = (1, 0));
    k2x5_asymmetric: conv!(k = (2, 5), stride = (1, 3), dilation = (2, 1), padding = (1, 2), output_padding = (1, 2));
    k5x2_asymmetric: conv!(k = (5, 2), stride = (3, 2), dilation = (1, 3), padding = (3, 0), output_padding = (2, 1));
    k3x4_same_dilation3x1: conv!(k = (3, 4), padding = same, dilation = (3, 1));
    k7x1_stride1x2: conv!(k = (7, 1), stride = (1, 2), padding = (3, 0));
    k6x3_stride2x3_dilation1x2: conv!(k = (6, 3), stride = (2, 3), padding = (2, 1), dilation = (1, 2));
}
