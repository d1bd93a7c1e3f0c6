//! The two ported networks of `examples/fsrcnn` and `examples/unet` (their `network.rs`,
//! the very code the examples run) against PyTorch: weights and cases written by
//! `tools/make_networks.py` into `tests/fixtures/networks/`, each case an input cut from the
//! demo's picture and PyTorch's eval-mode output for it.

#[path = "../examples/fsrcnn/network.rs"]
#[allow(dead_code)] // `upscale_channels` and `parameter_count` serve the example only.
mod fsrcnn;
#[path = "../examples/unet/network.rs"]
mod unet;

use std::path::PathBuf;

use conv_runtime::ndarray::{ArrayD, Ix4, s};
use conv_runtime::{ConvError, LoadError, StateDict};
use convgen::{assert_close, max_difference};
use fsrcnn::Fsrcnn;
use unet::{DilatedUNet, UNetError};

/// Both networks' outputs are within this of PyTorch's, relative to the larger of 1 and
/// the value (`convgen::max_difference`). Measured on 2026-12-04: FSRCNN 8.9e-7 and the
/// U-Net 1.4e-7, where PyTorch's own float32 output differs from its float64 one by 6.9e-7
/// and 4.1e-8 (`make_networks.py` prints those): different roundings of the same sums (the
/// U-Net folds each batch norm into its convolution, PyTorch applies it after).
const TOLERANCE: f32 = 1e-5;

fn fixture(name: &str) -> StateDict {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/networks")
        .join(format!("{name}.safetensors"));
    StateDict::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A copy of `weights` with `edit` applied to the list of its tensors.
fn edited(weights: &StateDict, edit: impl FnOnce(&mut Vec<(String, ArrayD<f32>)>)) -> StateDict {
    let mut tensors: Vec<(String, ArrayD<f32>)> = weights
        .keys()
        .into_iter()
        .filter(|key| !key.ends_with("num_batches_tracked"))
        .map(|key| {
            let tensor = weights.tensor(&key).unwrap();
            (key, tensor)
        })
        .collect();
    edit(&mut tensors);
    let bytes = StateDict::to_bytes(tensors.iter().map(|(k, v)| (k.clone(), v.view()))).unwrap();
    StateDict::from_bytes(bytes).unwrap()
}

#[test]
fn fsrcnn_matches_pytorch() {
    let network = Fsrcnn::load(&fixture("fsrcnn")).unwrap();
    let case = fixture("fsrcnn_case");
    let x = case.array::<Ix4>("input").unwrap();
    let expected = case.array::<Ix4>("output").unwrap();
    let (_, _, h, w) = x.dim();
    assert_eq!(expected.dim(), (1, 1, 3 * h, 3 * w), "FSRCNN upscales by 3");
    let y = network.forward(&x).unwrap();
    assert_close(&y, &expected, TOLERANCE, "FSRCNN against PyTorch");
}

#[test]
fn unet_with_float16_weights_matches_pytorch() {
    let weights = fixture("unet");
    let network = DilatedUNet::load(&weights).unwrap();
    let case = fixture("unet_case");
    let x = case.array::<Ix4>("input").unwrap();
    let expected = case.array::<Ix4>("output").unwrap();
    let y = network.forward(&x).unwrap();
    assert_eq!(y.dim(), (1, 2, x.dim().2, x.dim().3));
    assert_close(&y, &expected, TOLERANCE, "U-Net against PyTorch");
}

#[test]
fn networks_accept_inputs_of_any_layout() {
    let case = fixture("unet_case");
    let x = case.array::<Ix4>("input").unwrap();
    // The transposed picture, as a view with swapped strides, against a copy of it.
    let view = x.view().permuted_axes([0, 1, 3, 2]);
    let network = DilatedUNet::load(&fixture("unet")).unwrap();
    assert_eq!(
        network.forward(&view).unwrap(),
        network.forward(&view.to_owned()).unwrap()
    );
    let fsrcnn = Fsrcnn::load(&fixture("fsrcnn")).unwrap();
    let every_other = x.slice(s![.., 1..2, ..;2, 1..;3]);
    assert_eq!(
        fsrcnn.forward(&every_other).unwrap(),
        fsrcnn.forward(&every_other.to_owned()).unwrap()
    );
}

#[test]
fn a_reused_workspace_gives_what_a_fresh_one_gives() {
    let case = fixture("unet_case");
    let x = case.array::<Ix4>("input").unwrap();
    let network = DilatedUNet::load(&fixture("unet")).unwrap();
    let mut workspace = unet::Workspace::default();
    // Another image, then another size (the buffers are remade), then the first again.
    let flipped = x.slice(s![.., .., ..;-1, ..]);
    let smaller = x.slice(s![.., .., 8..40, 4..60]);
    for input in [x.view(), flipped, smaller, x.view()] {
        let reused = network
            .forward_in(&input, &mut workspace)
            .unwrap()
            .to_owned();
        assert_eq!(reused, network.forward(&input).unwrap());
    }

    let network = Fsrcnn::load(&fixture("fsrcnn")).unwrap();
    let x = fixture("fsrcnn_case").array::<Ix4>("input").unwrap();
    let mut workspace = fsrcnn::Workspace::default();
    for input in [x.view(), x.slice(s![.., .., 1.., ..;2]), x.view()] {
        let reused = network
            .forward_in(&input, &mut workspace)
            .unwrap()
            .to_owned();
        assert_eq!(reused, network.forward(&input).unwrap());
    }
}

#[test]
fn unet_refuses_sides_that_are_not_multiples_of_four() {
    let network = DilatedUNet::load(&fixture("unet")).unwrap();
    let x = conv_runtime::ndarray::Array4::<f32>::zeros((1, 3, 64, 62));
    assert_eq!(
        network.forward(&x).unwrap_err(),
        UNetError::Size { got: (64, 62) }
    );
    let gray = conv_runtime::ndarray::Array4::<f32>::zeros((1, 1, 64, 64));
    assert_eq!(
        network.forward(&gray).unwrap_err(),
        UNetError::Layer(ConvError::InputChannels {
            expected: 3,
            got: 1
        })
    );
}

#[test]
fn a_missing_tensor_is_named_with_the_nearest_present() {
    let weights = edited(&fixture("fsrcnn"), |tensors| {
        tensors.retain(|(key, _)| key != "mapping_prelu.2.weight")
    });
    match Fsrcnn::load(&weights) {
        Err(LoadError::MissingKey { key, nearest }) => {
            assert_eq!(key, "mapping_prelu.2.weight");
            assert!(
                nearest.iter().any(|k| k.starts_with("mapping_prelu.")),
                "{nearest:?}"
            );
        }
        other => panic!("expected a missing key, got {:?}", other.err()),
    }
    // The U-Net's keys are not FSRCNN's.
    assert!(matches!(
        DilatedUNet::load(&fixture("fsrcnn")),
        Err(LoadError::MissingKey { key, .. }) if key == "enc1.conv.weight"
    ));
}

#[test]
fn a_prelu_of_another_width_is_refused_with_both_shapes() {
    let weights = edited(&fixture("fsrcnn"), |tensors| {
        for (key, tensor) in tensors.iter_mut() {
            if key == "shrink_prelu.weight" {
                *tensor = ArrayD::zeros(vec![5]);
            }
        }
    });
    let error = Fsrcnn::load(&weights)
        .err()
        .expect("a PReLU of 5 slopes after 12 channels");
    let channels = fixture("fsrcnn").tensor("shrink.weight").unwrap().shape()[0];
    assert_eq!(
        error,
        LoadError::Shape {
            key: "shrink_prelu.weight".to_owned(),
            expected: vec![channels],
            got: vec![5],
        }
    );
}

#[test]
fn a_batch_norm_of_another_width_is_refused_naming_its_tensor() {
    let weights = edited(&fixture("unet"), |tensors| {
        for (key, tensor) in tensors.iter_mut() {
            if key == "dec1.bn.running_var" {
                *tensor = ArrayD::ones(vec![3]);
            }
        }
    });
    match DilatedUNet::load(&weights) {
        Err(LoadError::Layer { prefix, source }) => {
            assert_eq!(prefix, "dec1.bn");
            assert!(
                matches!(source, ConvError::BatchNormShape { got: 3, .. }),
                "{source:?}"
            );
        }
        other => panic!("expected the batch norm refused, got {:?}", other.err()),
    }
}

#[test]
fn the_fixtures_are_a_real_case() {
    // Guards against a fixture regenerated as something trivial: the FSRCNN output is a
    // picture (values spread over [0, 1]), and the U-Net's logits are not all alike.
    let case = fixture("fsrcnn_case");
    let output = case.array::<Ix4>("output").unwrap();
    let (low, high) = output
        .iter()
        .fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    assert!(low < 0.3 && high > 0.6, "FSRCNN output spans {low}..{high}");
    let logits = fixture("unet_case").array::<Ix4>("output").unwrap();
    let first = logits.slice(s![.., 0..1, .., ..]).to_owned();
    let second = logits.slice(s![.., 1..2, .., ..]).to_owned();
    assert!(max_difference(&first, &second).0 > 0.1);
}
