//! Every `ConvError` variant: bad input is refused with a typed error that says what was
//! expected and what came, never a panic or a wrong-shaped result.

use conv_runtime::ndarray::{Array1, Array4};
use conv_runtime::prelude::*;
use conv_runtime::{Isa, Operation, PaddingMode, reference};

conv! { struct K3; k = 3 }
conv! { struct Up; k = 3, stride = 2, padding = 1 }
conv! { struct Cropping; k = 2, stride = 1, padding = 4 }

#[test]
fn wrong_input_channels() {
    let layer = Conv2d::new(K3, 3, 8);
    let error = layer
        .forward(&Array4::<f32>::zeros((1, 5, 8, 8)))
        .unwrap_err();
    assert_eq!(
        error,
        ConvError::InputChannels {
            expected: 3,
            got: 5
        }
    );
    assert_eq!(
        error.to_string(),
        "input has 5 channels, but the layer expects 3 (its in_channels)"
    );
    let up = ConvTranspose2d::new(Up, 4, 2);
    assert_eq!(
        up.forward(&Array4::<f32>::zeros((1, 2, 8, 8))).unwrap_err(),
        ConvError::InputChannels {
            expected: 4,
            got: 2
        }
    );
}

#[test]
fn input_smaller_than_the_receptive_field() {
    let layer = Conv2d::new(K3, 1, 1);
    let error = layer
        .forward(&Array4::<f32>::zeros((1, 1, 2, 9)))
        .unwrap_err();
    assert_eq!(
        error,
        ConvError::InputTooSmall {
            operation: Operation::Convolution,
            min: (3, 3),
            got: (2, 9)
        }
    );
    assert_eq!(
        error.to_string(),
        "input of 2x9 is too small: this convolution needs at least 3x3 (h x w)"
    );
    // Zero-sized spatial axes are too small whatever the padding.
    let padded = Conv2d::new(conv!(k = 1, padding = 2), 1, 1);
    assert!(matches!(
        padded.forward(&Array4::<f32>::zeros((1, 1, 0, 4))),
        Err(ConvError::InputTooSmall { got: (0, 4), .. })
    ));
}

#[test]
fn transposed_input_whose_output_is_cropped_away() {
    // (in - 1) * 1 - 8 + 2 must be at least 1: the input needs 8 rows.
    let layer = ConvTranspose2d::new(Cropping, 1, 1);
    let error = layer
        .forward(&Array4::<f32>::zeros((1, 1, 7, 8)))
        .unwrap_err();
    assert_eq!(
        error,
        ConvError::InputTooSmall {
            operation: Operation::TransposedConvolution,
            min: (8, 8),
            got: (7, 8)
        }
    );
    assert!(
        error
            .to_string()
            .contains("transposed convolution needs at least 8x8")
    );
    assert_eq!(
        layer
            .forward(&Array4::<f32>::zeros((1, 1, 8, 8)))
            .unwrap()
            .shape(),
        &[1, 1, 1, 1]
    );
}

#[test]
fn inputs_too_small_for_the_padding_mode() {
    // PyTorch: "Padding size should be less than the corresponding input dimension".
    let reflect = Conv2d::new(conv!(k = 3, padding = (1, 3), padding_mode = reflect), 1, 1);
    let error = reflect
        .forward(&Array4::<f32>::zeros((1, 1, 5, 3)))
        .unwrap_err();
    assert_eq!(
        error,
        ConvError::PaddingTooLarge {
            mode: PaddingMode::Reflect,
            padding: (1, 3),
            min: (2, 4),
            got: (5, 3)
        }
    );
    assert_eq!(
        error.to_string(),
        "input of 5x3 is too small for reflect padding of 1x3: it needs at least 2x4 (h x w; \
         reflect padding must be smaller than the input, circular padding at most the input)"
    );
    assert!(reflect.forward(&Array4::<f32>::zeros((1, 1, 2, 4))).is_ok());
    // The same refusal from backward and output_shape, and from the reference.
    let grad_output = Array4::<f32>::zeros((1, 1, 5, 7));
    assert_eq!(
        reflect.backward(&Array4::<f32>::zeros((1, 1, 5, 3)), &grad_output),
        Err(error.clone())
    );
    assert_eq!(reflect.output_shape([1, 1, 5, 3]), Err(error.clone()));
    let spec = reflect.geometry().spec();
    let naive = reference::conv2d(
        &Array4::zeros((1, 1, 5, 3)),
        reflect.weight(),
        None,
        &spec,
        1,
    );
    assert_eq!(naive, Err(error));

    // Circular padding may wrap around once: as large as the input, not larger.
    let circular = Conv2d::new(conv!(k = 2, padding = same, padding_mode = circular), 1, 1);
    assert!(
        circular
            .forward(&Array4::<f32>::zeros((1, 1, 1, 1)))
            .is_ok()
    );
    let wide = Conv2d::new(
        conv!(k = 1, padding = (0, 3), padding_mode = circular),
        1,
        1,
    );
    assert!(matches!(
        wide.forward(&Array4::<f32>::zeros((1, 1, 4, 2))),
        Err(ConvError::PaddingTooLarge {
            mode: PaddingMode::Circular,
            min: (0, 3),
            got: (4, 2),
            ..
        })
    ));
    // Replicate pads any non-empty input, however wide the pad.
    let replicate = Conv2d::new(conv!(k = 1, padding = 5, padding_mode = replicate), 1, 1);
    let y = replicate
        .forward(&Array4::<f32>::ones((1, 1, 1, 1)))
        .unwrap();
    assert_eq!(y.dim(), (1, 1, 11, 11));
}

#[test]
fn kernel_size_of_the_weight_must_match_the_geometry() {
    let error = Conv2d::from_weights(K3, Array4::zeros((4, 2, 3, 5)), None, 1).unwrap_err();
    assert_eq!(
        error,
        ConvError::KernelSize {
            expected: (3, 3),
            got: [4, 2, 3, 5]
        }
    );
    assert_eq!(
        error.to_string(),
        "weight has a 3x5 kernel (shape [4, 2, 3, 5]), but the geometry's kernel is 3x3"
    );
    assert!(matches!(
        ConvTranspose2d::from_weights(Up, Array4::zeros((4, 2, 2, 3)), None, 1),
        Err(ConvError::KernelSize { .. })
    ));
}

#[test]
fn bias_must_have_one_value_per_output_channel() {
    let error = Conv2d::from_weights(K3, Array4::zeros((4, 2, 3, 3)), Some(Array1::zeros(3)), 1)
        .unwrap_err();
    assert_eq!(
        error,
        ConvError::BiasShape {
            expected: 4,
            got: 3
        }
    );
    assert_eq!(
        error.to_string(),
        "bias has 3 values, but the layer has 4 output channels"
    );
    // The transposed layer has out_channels = weight.shape[1] * groups.
    let error =
        ConvTranspose2d::from_weights(Up, Array4::zeros((4, 3, 3, 3)), Some(Array1::zeros(3)), 2)
            .unwrap_err();
    assert_eq!(
        error,
        ConvError::BiasShape {
            expected: 6,
            got: 3
        }
    );
}

#[test]
fn groups_must_divide_both_channel_counts() {
    let error = Conv2d::builder(K3, 6, 4).groups(3).build().unwrap_err();
    assert_eq!(
        error,
        ConvError::Groups {
            groups: 3,
            in_channels: 6,
            out_channels: 4
        }
    );
    assert_eq!(
        error.to_string(),
        "groups = 3 must be at least 1 and divide both in_channels (6) and out_channels (4)"
    );
    assert!(matches!(
        Conv2d::builder(K3, 6, 6).groups(0).build(),
        Err(ConvError::Groups { groups: 0, .. })
    ));
    assert!(matches!(
        ConvTranspose2d::builder(Up, 4, 6).groups(4).build(),
        Err(ConvError::Groups { .. })
    ));
    // A Conv2d weight [out, in / groups, ..] with out not divisible by groups.
    assert_eq!(
        Conv2d::from_weights(K3, Array4::zeros((5, 2, 3, 3)), None, 2).unwrap_err(),
        ConvError::Groups {
            groups: 2,
            in_channels: 4,
            out_channels: 5
        }
    );
    // Zero groups, as PyTorch refuses them, naming the counts of one group: from the weight,
    // a zero count would otherwise come out, and the error blame the channels.
    assert_eq!(
        Conv2d::from_weights(K3, Array4::zeros((1, 1, 3, 3)), None, 0).unwrap_err(),
        ConvError::Groups {
            groups: 0,
            in_channels: 1,
            out_channels: 1
        }
    );
    assert_eq!(
        ConvTranspose2d::from_weights(Up, Array4::zeros((4, 2, 3, 3)), None, 0).unwrap_err(),
        ConvError::Groups {
            groups: 0,
            in_channels: 4,
            out_channels: 2
        }
    );
    // A ConvTranspose2d weight [in, out / groups, ..] with in not divisible by groups.
    assert_eq!(
        ConvTranspose2d::from_weights(Up, Array4::zeros((5, 2, 3, 3)), None, 2).unwrap_err(),
        ConvError::Groups {
            groups: 2,
            in_channels: 5,
            out_channels: 4
        }
    );
}

#[test]
fn zero_channels_are_refused_by_the_builder_and_from_weights() {
    let error = Conv2d::builder(K3, 0, 4).build().unwrap_err();
    assert_eq!(
        error,
        ConvError::ZeroChannels {
            in_channels: 0,
            out_channels: 4
        }
    );
    assert!(error.to_string().contains("at least 1"));
    assert!(matches!(
        ConvTranspose2d::builder(Up, 3, 0).build(),
        Err(ConvError::ZeroChannels { .. })
    ));
    assert!(matches!(
        Conv2d::from_weights(K3, Array4::zeros((0, 2, 3, 3)), None, 1),
        Err(ConvError::ZeroChannels { .. })
    ));
}

#[test]
#[should_panic(expected = "Conv2d::new: channel counts must be at least 1")]
fn new_panics_on_zero_channels_as_documented() {
    let _ = Conv2d::new(K3, 3, 0);
}

#[test]
fn requested_output_size_out_of_range() {
    let layer = ConvTranspose2d::new(Up, 2, 2);
    let x = Array4::<f32>::zeros((1, 2, 8, 8));
    let error = layer.forward_with_output_size(&x, (17, 15)).unwrap_err();
    assert_eq!(
        error,
        ConvError::OutputSize {
            requested: (17, 15),
            min: (15, 15),
            max: (16, 16)
        }
    );
    assert_eq!(
        error.to_string(),
        "requested output size 17x15 is out of range: for this input it must be between 15x15 and 16x16"
    );
    assert!(layer.forward_with_output_size(&x, (14, 15)).is_err());
    assert!(layer.forward_with_output_size(&x, (16, 16)).is_ok());
}

#[test]
fn forward_into_an_array_of_the_wrong_shape() {
    let layer = Conv2d::new(K3, 2, 4);
    let x = Array4::<f32>::zeros((1, 2, 8, 8));
    let mut out = Array4::<f32>::from_elem((1, 4, 8, 8), 1.5);
    let error = layer.forward_into(&x, &mut out).unwrap_err();
    assert_eq!(
        error,
        ConvError::OutputShape {
            expected: vec![1, 4, 6, 6],
            got: vec![1, 4, 8, 8]
        }
    );
    assert!(
        out.iter().all(|&v| v == 1.5),
        "a refused call leaves the output untouched"
    );
    let up = ConvTranspose2d::new(Up, 2, 4);
    assert!(matches!(
        up.forward_into(&x, &mut out),
        Err(ConvError::OutputShape { .. })
    ));
}

#[test]
fn input_too_large_for_usize_arithmetic() {
    // An empty batch lets an array claim an absurd height without holding any data.
    let layer = ConvTranspose2d::new(conv!(k = 3, stride = 4), 1, 1);
    let x = Array4::<f32>::zeros((0, 1, usize::MAX / 2, 1));
    assert_eq!(
        layer.forward(&x).unwrap_err(),
        ConvError::TooLarge {
            got: (usize::MAX / 2, 1)
        }
    );
}

/// An output whose size fits in `usize` but which no array can hold (more than `isize::MAX`
/// elements over its non-empty axes) is refused, not a panic in the allocation.
#[test]
fn output_too_large_for_an_array() {
    let layer = ConvTranspose2d::new(conv!(k = 2, stride = 2), 1, 1);
    let rows = isize::MAX as usize;
    let x = Array4::<f32>::zeros((0, 1, rows, 1));
    let too_large = ConvError::TooLarge { got: (rows, 1) };
    assert_eq!(layer.forward(&x).unwrap_err(), too_large);
    assert_eq!(layer.output_shape([0, 1, rows, 1]).unwrap_err(), too_large);
    assert!(layer.forward_with_output_size(&x, (1, 1)).is_err());
}

/// A geometry whose output padding reaches the stride (allowed when the dilation is larger)
/// runs an input whose largest `output_size` is cropped away: its own output padding still
/// leaves a row. `backward` takes that output's gradient; `forward_with_output_size` has no
/// size to offer and says so with an empty range.
#[test]
fn output_padding_beyond_the_stride_on_a_cropped_input() {
    let geometry = conv!(k = 2, dilation = 2, padding = 2, output_padding = 1);
    let layer = ConvTranspose2d::builder(geometry, 1, 1)
        .seed(3)
        .build()
        .unwrap();
    let x = Array4::from_elem((1, 1, 2, 2), 0.5);
    let y = layer.forward(&x).unwrap();
    assert_eq!(y.shape(), &[1, 1, 1, 1]);
    let grads = layer.backward(&x, &Array4::ones(y.dim())).unwrap();
    let spec = geometry.spec();
    let expected = reference::conv_transpose2d_backward(
        &x,
        layer.weight(),
        true,
        &Array4::ones(y.dim()),
        &spec,
        1,
    )
    .unwrap();
    let close = |a: &Array4<f32>, b: &Array4<f32>| {
        a.shape() == b.shape() && a.iter().zip(b).all(|(a, b)| (a - b).abs() <= 1e-6)
    };
    assert!(close(&grads.input, &expected.input), "{grads:?}");
    assert!(close(&grads.weight, &expected.weight), "{grads:?}");
    assert_eq!(
        layer.forward_with_output_size(&x, (1, 1)).unwrap_err(),
        ConvError::OutputSize {
            requested: (1, 1),
            min: (1, 1),
            max: (0, 0)
        }
    );
}

#[test]
fn output_shape_reports_the_same_errors_as_forward() {
    let layer = Conv2d::new(K3, 3, 8);
    assert_eq!(layer.output_shape([2, 3, 10, 12]), Ok([2, 8, 8, 10]));
    assert_eq!(
        layer.output_shape([2, 4, 10, 12]),
        Err(ConvError::InputChannels {
            expected: 3,
            got: 4
        })
    );
    let up = ConvTranspose2d::new(Up, 8, 3);
    assert_eq!(up.output_shape([1, 8, 5, 6]), Ok([1, 3, 9, 11]));
}

#[test]
fn the_reference_checks_its_arguments_like_the_layers() {
    let x = Array4::<f32>::zeros((1, 3, 8, 8));
    let weight = Array4::<f32>::zeros((4, 3, 3, 3));
    assert!(matches!(
        reference::conv2d(&x, &weight, Some(&Array1::zeros(2)), &K3::SPEC, 1),
        Err(ConvError::BiasShape { .. })
    ));
    assert!(matches!(
        reference::conv2d(&x, &weight, None, &Up::SPEC, 3),
        Err(ConvError::Groups { .. })
    ));
    assert!(matches!(
        reference::conv_transpose2d(&x, &weight, None, &K3::SPEC, 1, None),
        Err(ConvError::InputChannels { .. })
    ));
}

#[test]
fn backward_refuses_a_grad_output_of_the_wrong_shape() {
    let layer = Conv2d::new(K3, 2, 4);
    let x = Array4::<f32>::zeros((2, 2, 8, 9));
    let error = layer
        .backward(&x, &Array4::<f32>::zeros((2, 4, 6, 6)))
        .unwrap_err();
    assert_eq!(
        error,
        ConvError::GradOutputShape {
            expected: vec![2, 4, 6, 7],
            got: vec![2, 4, 6, 6]
        }
    );
    assert_eq!(
        error.to_string(),
        "grad_output has shape [2, 4, 6, 6], but the layer's output for this input has shape \
         [2, 4, 6, 7]"
    );
    // Wrong channels, wrong batch.
    for shape in [(2, 3, 6, 7), (1, 4, 6, 7)] {
        assert!(matches!(
            layer.backward(&x, &Array4::<f32>::zeros(shape)),
            Err(ConvError::GradOutputShape { .. })
        ));
    }

    // A transposed convolution accepts every output size `output_size` can choose, 15 or 16
    // here, and names the size it was given when only the channels are wrong.
    let up = ConvTranspose2d::new(Up, 2, 3);
    let x = Array4::<f32>::zeros((1, 2, 8, 8));
    for size in [(15, 15), (16, 15), (16, 16)] {
        let grads = up
            .backward(&x, &Array4::<f32>::zeros((1, 3, size.0, size.1)))
            .unwrap();
        assert_eq!(grads.input.shape(), &[1, 2, 8, 8]);
    }
    assert_eq!(
        up.backward(&x, &Array4::<f32>::zeros((1, 3, 17, 15)))
            .unwrap_err(),
        ConvError::GradOutputShape {
            expected: vec![1, 3, 15, 15],
            got: vec![1, 3, 17, 15]
        }
    );
    assert_eq!(
        up.backward(&x, &Array4::<f32>::zeros((1, 2, 16, 15)))
            .unwrap_err(),
        ConvError::GradOutputShape {
            expected: vec![1, 3, 16, 15],
            got: vec![1, 2, 16, 15]
        }
    );
}

#[test]
fn backward_refuses_an_input_the_layer_does_not_take() {
    let layer = Conv2d::new(K3, 2, 4);
    let gy = Array4::<f32>::zeros((1, 4, 6, 6));
    assert_eq!(
        layer
            .backward(&Array4::<f32>::zeros((1, 3, 8, 8)), &gy)
            .unwrap_err(),
        ConvError::InputChannels {
            expected: 2,
            got: 3
        }
    );
    assert!(matches!(
        layer.backward(&Array4::<f32>::zeros((1, 2, 2, 8)), &gy),
        Err(ConvError::InputTooSmall {
            operation: Operation::Convolution,
            ..
        })
    ));
    let up = ConvTranspose2d::new(Cropping, 1, 1);
    assert!(matches!(
        up.backward(
            &Array4::<f32>::zeros((1, 1, 2, 8)),
            &Array4::<f32>::zeros((1, 1, 1, 1))
        ),
        Err(ConvError::InputTooSmall {
            operation: Operation::TransposedConvolution,
            ..
        })
    ));
    assert!(matches!(
        up.backward(
            &Array4::<f32>::zeros((1, 2, 8, 8)),
            &Array4::<f32>::zeros((1, 1, 1, 1))
        ),
        Err(ConvError::InputChannels { .. })
    ));
}

#[test]
fn the_backward_reference_checks_its_arguments_like_the_layers() {
    let x = Array4::<f32>::zeros((1, 3, 8, 8));
    let weight = Array4::<f32>::zeros((4, 3, 3, 3));
    assert!(matches!(
        reference::conv2d_backward(
            &x,
            &weight,
            true,
            &Array4::<f32>::zeros((1, 4, 5, 6)),
            &K3::SPEC,
            1
        ),
        Err(ConvError::GradOutputShape { .. })
    ));
    assert!(matches!(
        reference::conv_transpose2d_backward(
            &x,
            &weight,
            true,
            &Array4::<f32>::zeros((1, 3, 17, 17)),
            &Up::SPEC,
            1
        ),
        Err(ConvError::InputChannels { .. })
    ));
    let weight = Array4::<f32>::zeros((3, 4, 3, 3));
    assert!(matches!(
        reference::conv_transpose2d_backward(
            &x,
            &weight,
            false,
            &Array4::<f32>::zeros((1, 4, 17, 17)),
            &Up::SPEC,
            1
        ),
        Err(ConvError::GradOutputShape { .. })
    ));
}

/// A layer asked to run on an instruction set this build or CPU lacks is refused, naming the
/// sets it could use; every available one is accepted and kept.
#[test]
fn unavailable_instruction_sets_are_refused() {
    let missing = Isa::ALL
        .into_iter()
        .find(|isa| !isa.is_available())
        .expect("no machine has both x86_64 and aarch64 sets");
    let expected = ConvError::IsaUnavailable {
        requested: missing,
        available: Isa::available(),
    };
    let built = Conv2d::builder(K3, 2, 4).isa(missing).build();
    assert_eq!(built.unwrap_err(), expected);
    let layer = ConvTranspose2d::new(Up, 2, 4);
    assert_eq!(layer.clone().with_isa(missing).unwrap_err(), expected);
    assert!(expected.to_string().contains(missing.name()));
    for isa in Isa::available() {
        let layer = layer.clone().with_isa(isa).unwrap();
        assert_eq!(layer.isa(), isa);
        let built = Conv2d::builder(K3, 2, 4).isa(isa).build().unwrap();
        assert_eq!(built.isa(), isa);
    }
}

#[test]
fn errors_are_std_errors() {
    fn takes_error(_: &dyn std::error::Error) {}
    takes_error(&ConvError::BiasShape {
        expected: 1,
        got: 2,
    });
}
