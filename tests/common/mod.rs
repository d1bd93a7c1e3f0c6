//! What the PyTorch-fixture tests (`parity.rs`, `upsample.rs`) share: reading a fixture
//! file the generating script wrote, and checking that fixtures and tests pair up.

// Each test crate that includes this module uses only part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use conv_runtime::PaddingMode;
use conv_runtime::ndarray::{Array, Array1, Array3, Array4, ArrayD, Dimension};
use serde_json::Value;

/// The fixtures below `tests/fixtures`, in `subdirectory` (empty for the top level).
pub fn fixtures_dir(subdirectory: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(subdirectory)
}

/// Every `.json` file in `dir` has a case in `cases`, every case its file, and no case is
/// listed twice.
pub fn assert_every_fixture_tested(dir: &Path, cases: &[&str]) {
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|error| panic!("{} is not readable: {error}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .map(|path| path.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let untested: Vec<_> = files
        .iter()
        .filter(|f| !cases.contains(&f.as_str()))
        .collect();
    let missing: Vec<_> = cases
        .iter()
        .filter(|c| !files.iter().any(|f| f == *c))
        .collect();
    assert!(
        untested.is_empty() && missing.is_empty(),
        "fixtures without a test: {untested:?}; tests without a fixture: {missing:?}"
    );
    let unique: std::collections::BTreeSet<_> = cases.iter().collect();
    assert_eq!(unique.len(), cases.len(), "a case is listed twice");
}

/// One fixture file, read as a `serde_json::Value` with small typed accessors that panic,
/// naming the case and the key, on anything unexpected.
pub struct Fixture {
    pub case: String,
    value: Value,
}

impl Fixture {
    /// Case `case`, from `dir/{case}.json`.
    pub fn load(dir: &Path, case: &str) -> Self {
        let path = dir.join(format!("{case}.json"));
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|error| panic!("{case}: cannot read {}: {error}", path.display()));
        let value: Value = serde_json::from_str(&text)
            .unwrap_or_else(|error| panic!("{case}: {} is not JSON: {error}", path.display()));
        let fixture = Fixture {
            case: case.to_string(),
            value,
        };
        assert_eq!(
            fixture.str("case"),
            case,
            "{case}: the fixture names another case"
        );
        fixture
    }

    pub fn get(&self, key: &str) -> &Value {
        self.value
            .get(key)
            .unwrap_or_else(|| panic!("{}: the fixture has no {key:?}", self.case))
    }

    pub fn str(&self, key: &str) -> &str {
        self.get(key)
            .as_str()
            .unwrap_or_else(|| panic!("{}: {key:?} is not a string", self.case))
    }

    pub fn usize(&self, key: &str) -> usize {
        self.as_usize(self.get(key), key)
    }

    pub fn as_usize(&self, value: &Value, what: &str) -> usize {
        value
            .as_u64()
            .and_then(|v| usize::try_from(v).ok())
            .unwrap_or_else(|| panic!("{}: {what} is not a count: {value}", self.case))
    }

    pub fn pair_of(&self, value: &Value, what: &str) -> (usize, usize) {
        match value.as_array().map(Vec::as_slice) {
            Some([h, w]) => (self.as_usize(h, what), self.as_usize(w, what)),
            _ => panic!("{}: {what} is not an [h, w] pair: {value}", self.case),
        }
    }

    pub fn pair(&self, key: &str) -> (usize, usize) {
        self.pair_of(self.get(key), key)
    }

    /// The 1-D tensor `key`.
    pub fn vector(&self, key: &str) -> Array1<f32> {
        let (shape, data) = self.tensor(key);
        assert_eq!(shape.len(), 1, "{}: {key} is not 1-D", self.case);
        Array1::from(data)
    }

    /// A layer fixture's bias, checked against `has_bias`.
    pub fn bias(&self) -> Option<Array1<f32>> {
        let has_bias = self
            .get("has_bias")
            .as_bool()
            .unwrap_or_else(|| panic!("{}: has_bias is not a bool", self.case));
        let bias = match self.get("bias") {
            Value::Null => None,
            _ => Some(self.vector("bias")),
        };
        assert_eq!(
            bias.is_some(),
            has_bias,
            "{}: has_bias disagrees with bias",
            self.case
        );
        bias
    }

    /// The fixture is for PyTorch layer `op` ("conv", "convT", "conv1d", "convT1d").
    pub fn expect_op(&self, op: &str) {
        assert_eq!(
            self.str("op"),
            op,
            "{}: the fixture is for another layer",
            self.case
        );
    }

    /// `padding_mode`, PyTorch's name for what the padding holds.
    pub fn padding_mode(&self) -> PaddingMode {
        match self.get("padding_mode") {
            Value::String(mode) => match mode.as_str() {
                "zeros" => PaddingMode::Zeros,
                "reflect" => PaddingMode::Reflect,
                "replicate" => PaddingMode::Replicate,
                "circular" => PaddingMode::Circular,
                other => panic!("{}: unknown padding_mode {other:?}", self.case),
            },
            other => panic!("{}: padding_mode is {other}, not a string", self.case),
        }
    }

    /// An `[N, C, L]` activation or a 1-D layer's weight.
    pub fn tensor3(&self, key: &str) -> Array3<f32> {
        self.array(key)
    }

    /// An `[N, C, H, W]` activation or a 2-D layer's weight.
    pub fn tensor4(&self, key: &str) -> Array4<f32> {
        self.array(key)
    }

    /// The tensor `key` with `D`'s number of axes; panics, naming the case and key, if it
    /// has another.
    fn array<D: Dimension>(&self, key: &str) -> Array<f32, D> {
        let (shape, data) = self.tensor(key);
        let axes = shape.len();
        ArrayD::from_shape_vec(shape, data)
            .unwrap_or_else(|error| panic!("{}: {key}: {error}", self.case))
            .into_dimensionality::<D>()
            .unwrap_or_else(|_| panic!("{}: {key} has {axes} axes, not {:?}", self.case, D::NDIM))
    }

    /// `{"shape": [...], "data": [...]}`: the shape and the flat, row-major data, checked
    /// to agree.
    pub fn tensor(&self, key: &str) -> (Vec<usize>, Vec<f32>) {
        let tensor = self.get(key);
        let list = |field: &str| {
            tensor
                .get(field)
                .and_then(Value::as_array)
                .unwrap_or_else(|| panic!("{}: {key} has no {field} list", self.case))
        };
        let shape: Vec<usize> = list("shape")
            .iter()
            .map(|n| self.as_usize(n, key))
            .collect();
        let data: Vec<f32> = list("data").iter().map(|v| self.float(v, key)).collect();
        assert_eq!(
            shape.iter().product::<usize>(),
            data.len(),
            "{}: {key} has shape {shape:?} but {} values",
            self.case,
            data.len()
        );
        (shape, data)
    }

    /// A JSON number, or one of the strings "nan", "inf", "-inf" (JSON has no non-finite
    /// numbers). Every number was written so that its f64 reading casts to the exact f32.
    pub fn float(&self, value: &Value, what: &str) -> f32 {
        match value {
            Value::Number(number) => number.as_f64().map(|v| v as f32),
            Value::String(text) => match text.as_str() {
                "nan" => Some(f32::NAN),
                "inf" => Some(f32::INFINITY),
                "-inf" => Some(f32::NEG_INFINITY),
                _ => None,
            },
            _ => None,
        }
        .unwrap_or_else(|| panic!("{}: {what} holds {value}, not a float", self.case))
    }
}
