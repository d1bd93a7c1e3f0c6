//! Loading a PyTorch `state_dict` saved as safetensors by key name, in float32, float16 and
//! bfloat16, running the model it describes against PyTorch's output, saving it back, and
//! every way a file can be wrong. The fixtures are written by `tools/make_state_dict.py`.

use conv_runtime::ndarray::Array4;
use conv_runtime::prelude::*;
use conv_runtime::{BatchNorm1d, BatchNorm2d, LoadError, StateDict};
use convgen::assert_close;

mod common;
use common::Fixture;

conv! { struct Dilated; k = 3, dilation = 2, padding = 2 }
conv! { struct Depthwise; k = 3, padding = 1 }
conv! { struct Up; k = 2, stride = 2 }

fn path(file: &str) -> std::path::PathBuf {
    common::fixtures_dir("state_dict").join(file)
}

/// The fixture model, loaded by name: conv -> batch norm (folded) -> depthwise -> upconv.
struct Model {
    conv: Conv2d<Dilated>,
    depthwise: Conv2d<Depthwise>,
    up: ConvTranspose2d<Up>,
}

impl Model {
    fn load(weights: &StateDict) -> Result<Model, LoadError> {
        let bn = BatchNorm2d::load(weights, "encoder.bn", 1e-5)?;
        let conv = Conv2d::load(weights, "encoder.conv", Dilated)?;
        Ok(Model {
            conv: conv
                .fold_batch_norm(&bn)
                .map_err(|source| LoadError::Layer {
                    prefix: "encoder.bn".into(),
                    source,
                })?,
            depthwise: Conv2d::load_groups(weights, "encoder.depthwise", Depthwise, 4)?,
            up: ConvTranspose2d::load(weights, "decoder.up", Up)?,
        })
    }

    fn forward(&self, x: &Array4<f32>) -> Array4<f32> {
        let h = self.conv.forward(x).unwrap();
        let h = self.depthwise.forward(&h).unwrap();
        self.up.forward(&h).unwrap()
    }
}

#[test]
fn a_state_dict_loads_by_name_in_every_float_dtype() {
    for dtype in ["f32", "f16", "bf16"] {
        let weights = StateDict::open(path(&format!("model_{dtype}.safetensors"))).unwrap();
        assert!(weights.contains("encoder.bn.num_batches_tracked"));
        let model = Model::load(&weights).unwrap();
        assert_eq!(
            model.conv.bias().map(|b| b.len()),
            Some(4),
            "the fold adds a bias"
        );
        let fixture = Fixture::load(
            &common::fixtures_dir("state_dict"),
            &format!("model_{dtype}"),
        );
        let x = fixture.tensor4("input");
        // PyTorch ran the model with the weights rounded to `dtype` and converted back; the
        // folded batch norm rounds differently from a separate one.
        assert_close(
            &model.forward(&x),
            &fixture.tensor4("output"),
            1e-4,
            &format!("model in {dtype}"),
        );
    }
}

#[test]
fn saved_weights_load_back_unchanged() {
    let weights = StateDict::open(path("model_f32.safetensors")).unwrap();
    let model = Model::load(&weights).unwrap();
    let bn = BatchNorm2d::load(&weights, "encoder.bn", 1e-5).unwrap();
    let mut tensors = model.depthwise.state_dict("encoder.depthwise");
    tensors.extend(model.up.state_dict("decoder.up"));
    tensors.extend(bn.state_dict("encoder.bn"));
    let bytes = StateDict::to_bytes(tensors).unwrap();
    let reread = StateDict::from_bytes(bytes).unwrap();
    assert_eq!(
        reread.keys(),
        [
            "decoder.up.bias",
            "decoder.up.weight",
            "encoder.bn.bias",
            "encoder.bn.running_mean",
            "encoder.bn.running_var",
            "encoder.bn.weight",
            "encoder.depthwise.bias",
            "encoder.depthwise.weight"
        ]
    );
    assert_eq!(
        BatchNorm2d::load(&reread, "encoder.bn", 1e-5).unwrap(),
        bn,
        "the batch norm loads back"
    );
    // A `BatchNorm1d` reads and writes the same names.
    let bn1d = BatchNorm1d::load(&reread, "encoder.bn", 1e-5).unwrap();
    assert_eq!(bn1d.as_2d(), &bn);
    assert_eq!(bn1d.state_dict("encoder.bn").len(), 4);
    for key in reread.keys() {
        assert_eq!(
            reread.tensor(&key).unwrap(),
            weights.tensor(&key).unwrap(),
            "{key}"
        );
    }

    // Through a file, and into a layer again.
    let file = std::env::temp_dir().join(format!("convgen-{}.safetensors", std::process::id()));
    StateDict::save(&file, model.up.state_dict("up")).unwrap();
    let up = ConvTranspose2d::load(&StateDict::open(&file).unwrap(), "up", Up).unwrap();
    std::fs::remove_file(&file).unwrap();
    assert_eq!(up.weight(), model.up.weight());
    assert_eq!(up.bias(), model.up.bias());
}

#[test]
fn bad_files_and_names_are_typed_errors() {
    let bytes = std::fs::read(path("model_f32.safetensors")).unwrap();
    let weights = StateDict::from_bytes(bytes.clone()).unwrap();

    // A truncated file.
    for len in [0, 5, 100, bytes.len() - 1] {
        assert!(
            matches!(
                StateDict::from_bytes(bytes[..len].to_vec()),
                Err(LoadError::Format(_))
            ),
            "{len} bytes"
        );
    }
    assert!(matches!(
        StateDict::open(path("no_such_file.safetensors")),
        Err(LoadError::Io { .. })
    ));

    // A missing key, with the names it could have meant.
    let error = Conv2d::load(&weights, "encoder.conv1", Dilated).unwrap_err();
    let LoadError::MissingKey { key, nearest } = &error else {
        panic!("{error}");
    };
    assert_eq!(key, "encoder.conv1.weight");
    assert_eq!(nearest[0], "encoder.conv.weight");

    // A kernel of another size than the geometry's.
    let error = Conv2d::load(&weights, "encoder.conv", conv!(k = 5, padding = 2)).unwrap_err();
    assert!(
        matches!(&error, LoadError::Layer { prefix, source: ConvError::KernelSize { .. } }
            if prefix == "encoder.conv"),
        "{error}"
    );

    // A 4-D weight for a 1-D layer.
    let error = Conv1d::load(&weights, "encoder.conv", conv1d!(k = 3)).unwrap_err();
    assert_eq!(
        error,
        LoadError::Rank {
            key: "encoder.conv.weight".into(),
            expected: 3,
            got: 4,
            shape: vec![4, 3, 3, 3]
        }
    );

    // Groups that do not divide the channels.
    let error = Conv2d::load_groups(&weights, "encoder.depthwise", Depthwise, 3).unwrap_err();
    assert!(
        matches!(
            error,
            LoadError::Layer {
                source: ConvError::Groups { groups: 3, .. },
                ..
            }
        ),
        "{error}"
    );

    // An integer tensor is not read as weights.
    assert_eq!(
        weights
            .tensor("encoder.bn.num_batches_tracked")
            .unwrap_err(),
        LoadError::Dtype {
            key: "encoder.bn.num_batches_tracked".into(),
            dtype: "I64".into()
        }
    );
}
