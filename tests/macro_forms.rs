//! Valid uses of `conv!` in every form it accepts: the expression form with every parameter
//! and every way of writing a value, the item form with attributes and visibilities, and the
//! constants a geometry type offers to `const` code.
//!
//! These were trybuild *pass* cases; as an ordinary test they compile with the rest of the
//! tests instead of making trybuild build a second copy of every dev-dependency, and they
//! check the parsed values instead of only that the code compiles. The compile errors stay in
//! `tests/ui/fail` (see `tests/ui.rs`).

use conv_runtime::prelude::*;
use conv_runtime::{GeometrySpec, Padding, PaddingMode};

/// The specification a `conv!` expression stands for.
fn spec<G: Geometry>(_: G) -> GeometrySpec {
    G::SPEC
}

/// A specification written out by hand, to compare the macro's against.
fn expected(
    kernel_size: (usize, usize),
    stride: (usize, usize),
    padding: Padding,
    dilation: (usize, usize),
    output_padding: (usize, usize),
) -> GeometrySpec {
    GeometrySpec {
        kernel_size,
        stride,
        padding,
        padding_mode: PaddingMode::Zeros,
        dilation,
        output_padding,
    }
}

mod expression_form {
    use super::*;

    #[test]
    fn every_key_and_every_way_of_writing_a_value_parses_to_its_spec() {
        let e = Padding::Explicit;
        let cases = [
            (
                spec(conv!(k = 3)),
                expected((3, 3), (1, 1), e(0, 0), (1, 1), (0, 0)),
            ),
            (
                spec(conv!(kernel_size = 3)),
                expected((3, 3), (1, 1), e(0, 0), (1, 1), (0, 0)),
            ),
            (
                spec(conv!(kernel_size = (3, 5), padding = (1, 2))),
                expected((3, 5), (1, 1), e(1, 2), (1, 1), (0, 0)),
            ),
            (
                spec(conv!(k = 3, dilation = 2, padding = 2)),
                expected((3, 3), (1, 1), e(2, 2), (2, 2), (0, 0)),
            ),
            (
                spec(conv!(k = 3, padding = same)),
                expected((3, 3), (1, 1), Padding::Same, (1, 1), (0, 0)),
            ),
            (
                spec(conv!(k = 4, padding = same, dilation = (1, 2))),
                expected((4, 4), (1, 1), Padding::Same, (1, 2), (0, 0)),
            ),
            (
                spec(conv!(k = 3, padding = valid, stride = (2, 1))),
                expected((3, 3), (2, 1), e(0, 0), (1, 1), (0, 0)),
            ),
            // A trailing comma.
            (
                spec(conv!(k = 3, stride = 2, padding = 1,)),
                expected((3, 3), (2, 2), e(1, 1), (1, 1), (0, 0)),
            ),
            (
                spec(conv!(
                    k = (3, 1),
                    stride = (1, 2),
                    padding = (1, 0),
                    dilation = (2, 1),
                    output_padding = (1, 1),
                )),
                expected((3, 1), (1, 2), e(1, 0), (2, 1), (1, 1)),
            ),
            (
                spec(conv!(
                    k = 4,
                    stride = 2,
                    padding = 1,
                    dilation = 1,
                    output_padding = 1
                )),
                expected((4, 4), (2, 2), e(1, 1), (1, 1), (1, 1)),
            ),
            (
                spec(conv!(
                    kernel_size = (3, 3),
                    stride = (2, 3),
                    output_padding = (1, 2)
                )),
                expected((3, 3), (2, 3), e(0, 0), (1, 1), (1, 2)),
            ),
            // output_padding may reach up to the dilation when that is the larger.
            (
                spec(conv!(k = 3, dilation = 3, output_padding = 2)),
                expected((3, 3), (1, 1), e(0, 0), (3, 3), (2, 2)),
            ),
        ];
        for (index, (parsed, expected)) in cases.into_iter().enumerate() {
            assert_eq!(parsed, expected, "case {index}");
        }
    }

    #[test]
    fn padding_modes_parse_to_their_spec_and_print_back() {
        let modes = [
            (spec(conv!(k = 3, padding = 1)), PaddingMode::Zeros),
            (
                spec(conv!(k = 3, padding = 1, padding_mode = zeros)),
                PaddingMode::Zeros,
            ),
            (
                spec(conv!(k = 3, padding = 1, padding_mode = reflect)),
                PaddingMode::Reflect,
            ),
            (
                spec(conv!(padding_mode = replicate, k = 3, padding = 1)),
                PaddingMode::Replicate,
            ),
            (
                spec(conv!(k = 3, padding = 1, padding_mode = circular,)),
                PaddingMode::Circular,
            ),
        ];
        for (spec, mode) in modes {
            assert_eq!(spec.padding_mode, mode);
            assert_eq!(spec.padding, Padding::Explicit(1, 1));
        }
        conv! { struct Mirrored; k = 4, padding = same, padding_mode = reflect }
        const MODE: PaddingMode = Mirrored::PADDING_MODE;
        assert_eq!(MODE, PaddingMode::Reflect);
        assert_eq!(
            Mirrored::SPEC.to_string(),
            "conv!(k = 4, padding = same, padding_mode = reflect)"
        );
        // Causal: the whole field but the output's own position before, nothing after.
        conv! { struct Causal; k = (1, 2), dilation = (1, 8), padding = causal }
        assert_eq!(Causal::SPEC.padding, Padding::Causal);
        assert_eq!((Causal::PADDING, Causal::PADDING_AFTER), ((0, 8), (0, 0)));
        assert_eq!(Causal::output_size((1, 100)), Some((1, 100)));
        // The kernels run the geometry without padding, on the padded copy.
        assert_eq!(
            Mirrored::SPEC.kernel_spec().padding,
            Padding::Explicit(0, 0)
        );
    }

    #[test]
    fn geometries_build_layers_in_both_directions() {
        let conv = Conv2d::new(conv!(k = 3, dilation = 2, padding = 2), 3, 16);
        let x = convgen::random_array((1, 3, 9, 7), 1);
        assert_eq!(conv.forward(&x).unwrap().dim(), (1, 16, 9, 7));
        let up = ConvTranspose2d::new(conv!(k = 2, stride = 2), 16, 3);
        let y = convgen::random_array((1, 16, 5, 4), 2);
        assert_eq!(up.forward(&y).unwrap().dim(), (1, 3, 10, 8));
    }

    /// A layer of `geometry`, 3 channels into 9, on every instruction set the machine
    /// has, against the reference on an input of `size`.
    fn matches_reference<G: Geometry>(geometry: G, size: (usize, usize)) {
        let (kh, kw) = G::SPEC.kernel_size;
        let weight = convgen::random_array((9, 3, kh, kw), 5);
        let bias = convgen::random_array(9, 6);
        let x = convgen::random_array((2, 3, size.0, size.1), 7);
        let expected =
            conv_runtime::reference::conv2d(&x, &weight, Some(&bias), &G::SPEC, 1).unwrap();
        for isa in conv_runtime::Isa::available() {
            let layer = Conv2d::from_weights(geometry, weight.clone(), Some(bias.clone()), 1)
                .and_then(|layer| layer.with_isa(isa))
                .unwrap();
            let y = layer.forward(&x).unwrap();
            convgen::assert_close(&y, &expected, 1e-4, &format!("{}, {isa}", G::SPEC));
        }
    }

    /// Filters of more than 81 taps run the kernel that takes its taps at run time, not
    /// unrolled ones; the largest the macro accepts compute what the reference does.
    #[test]
    fn the_largest_kernels_the_macro_accepts_build_and_run() {
        matches_reference(conv!(k = 16, padding = 3), (21, 40));
        matches_reference(conv!(k = (1, 256), padding = (0, 7)), (2, 260));
    }
}

// rustfmt would format the parenthesised item form as function arguments.
#[rustfmt::skip]
mod item_form {
    use super::*;

    conv!(
        /// A public geometry with a doc comment.
        pub struct Public; k = 3, padding = 1
    );

    conv!(struct Private; k = 2, stride = 2);

    conv!(
        /// Visible in the crate only.
        pub(crate) struct CrateVisible; kernel_size = (3, 5), padding = same,
    );

    // Braces work too (and rustfmt leaves a brace-delimited macro alone).
    conv! {
        pub struct Braced; k = 5, padding = 2
    }

    mod inner {
        use conv_runtime::prelude::*;

        conv!(pub struct Nested; k = 1);
    }

    /// The geometry types as the types of a model's fields.
    struct Model {
        public: Conv2d<Public>,
        private: ConvTranspose2d<Private>,
        crate_visible: Conv2d<CrateVisible>,
        nested: Conv2d<inner::Nested>,
        braced: Conv2d<Braced>,
    }

    #[test]
    fn named_geometries_serve_as_field_types() {
        let model = Model {
            public: Conv2d::new(Public, 3, 16),
            private: ConvTranspose2d::new(Private, 16, 3),
            crate_visible: Conv2d::new(CrateVisible, 3, 8),
            nested: Conv2d::new(inner::Nested, 3, 4),
            braced: Conv2d::new(Braced, 3, 2),
        };
        assert_eq!(model.public.out_channels(), 16);
        assert_eq!(model.private.out_channels(), 3);
        assert_eq!(model.crate_visible.out_channels(), 8);
        assert_eq!(model.nested.out_channels(), 4);
        assert_eq!(model.braced.out_channels(), 2);
        assert_eq!(
            spec(model.braced.geometry()).padding,
            Padding::Explicit(2, 2)
        );
        assert_eq!(CrateVisible::PADDING_AFTER, (1, 2));
    }

    #[test]
    fn a_geometry_is_a_zero_sized_value_that_prints_its_spec() {
        let copy = Public;
        // `Default` is derived so that generic code can make a geometry value.
        assert_eq!(copy, <Public as Default>::default());
        assert_eq!(core::mem::size_of::<Public>(), 0);
        // Debug shows the geometry, not the type's name.
        assert_eq!(format!("{Private:?}"), Private::SPEC.to_string());
    }
}

#[rustfmt::skip]
mod const_eval {
    use super::*;

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

    #[test]
    fn constants_agree_at_run_time() {
        assert_eq!(BUFFER.len(), 25);
        assert_eq!(R, (5, 5));
        assert_eq!(O, Some((64, 64)));
        assert_eq!(T, Some((33, 16)));
        assert_eq!(Up::output_size((1, 1)), None);
    }
}
