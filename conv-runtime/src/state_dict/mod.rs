//! PyTorch `state_dict`s in safetensors files: read by key name (memory-mapped, through the
//! `safetensors` crate), every floating-point dtype PyTorch saves converted to `f32`, and
//! written back under the same names. The layers' `load` and `state_dict` methods are in
//! `layers.rs`.

mod layers;

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::path::Path;

use memmap2::Mmap;
use ndarray::{ArrayD, ArrayViewD, IxDyn};
use safetensors::tensor::{Dtype, Metadata, SafeTensors, View};

use crate::shape::error::ConvError;

/// A `state_dict` read from a `.safetensors` file, what
/// `safetensors.torch.save_file(model.state_dict(), path)` writes. The file is
/// memory-mapped: a tensor is read (and converted to `f32`) only when asked for by name.
///
/// ```no_run
/// use conv_runtime::prelude::*;
/// use conv_runtime::{BatchNorm2d, StateDict};
///
/// let weights = StateDict::open("unet.safetensors")?;
/// let conv = Conv2d::load(&weights, "encoder.conv1", conv!(k = 3, padding = 1))?;
/// let bn = BatchNorm2d::load(&weights, "encoder.bn1", 1e-5)?;
/// let conv = conv.fold_batch_norm(&bn)?;
/// # Ok::<(), conv_runtime::LoadError>(())
/// ```
pub struct StateDict {
    bytes: Bytes,
    /// Bytes before the tensors' data: the length field and the JSON header.
    data_start: usize,
    metadata: Metadata,
}

/// Where the file's bytes are.
enum Bytes {
    Mapped(Mmap),
    Owned(Vec<u8>),
}

impl Bytes {
    fn as_slice(&self) -> &[u8] {
        match self {
            Bytes::Mapped(map) => map,
            Bytes::Owned(bytes) => bytes,
        }
    }
}

/// Why a `state_dict` or a layer in it could not be read.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
#[allow(missing_docs)] // The fields say what they hold; `key` is a tensor's full name.
pub enum LoadError {
    /// The file could not be opened or mapped.
    #[error("cannot read {path}: {message}")]
    Io { path: String, message: String },

    /// The bytes are not a safetensors file (a truncated file, a broken header).
    #[error("not a valid safetensors file: {0}")]
    Format(String),

    /// No tensor has this name. `nearest` lists the closest names present.
    #[error("no tensor named `{key}` in the state_dict; nearest: {nearest:?}")]
    MissingKey { key: String, nearest: Vec<String> },

    /// The tensor has another number of axes than the layer's parameter.
    #[error("`{key}` has {got} axes (shape {shape:?}), but the layer wants {expected}")]
    Rank {
        key: String,
        expected: usize,
        got: usize,
        shape: Vec<usize>,
    },

    /// The tensor has the right number of axes but another shape than the caller needs
    /// (a per-channel parameter of another length, say).
    #[error("`{key}` has shape {got:?}, but {expected:?} was expected")]
    Shape {
        key: String,
        expected: Vec<usize>,
        got: Vec<usize>,
    },

    /// The tensor's element type cannot be read as `f32`.
    #[error(
        "`{key}` holds {dtype} values; only floating-point tensors (F32, F16, BF16, F64) \
         are read"
    )]
    Dtype { key: String, dtype: String },

    /// The tensors were read, and the layer refused them (a kernel of another size than
    /// the geometry, groups that do not divide the channels, a bias of another length...).
    #[error("the tensors under `{prefix}` do not make this layer: {source}")]
    Layer {
        prefix: String,
        #[source]
        source: ConvError,
    },

    /// A layer operation on loaded layers refused its input (folding a batch norm of
    /// another width, say), so that `?` works on both in one function.
    #[error(transparent)]
    Conv(#[from] ConvError),
}

impl StateDict {
    /// Maps and reads the header of the safetensors file at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<StateDict, LoadError> {
        let path = path.as_ref();
        let io = |error: std::io::Error| LoadError::Io {
            path: path.display().to_string(),
            message: error.to_string(),
        };
        let file = File::open(path).map_err(io)?;
        // SAFETY: the map is only read, through `&[u8]`, while `StateDict` owns it. Another
        // process truncating or rewriting the file meanwhile would change (or fault) what
        // the slice reads; every reader of a memory-mapped file accepts that, as the
        // safetensors Python library does.
        let map = unsafe { Mmap::map(&file) }.map_err(io)?;
        Self::from_bytes_in(Bytes::Mapped(map))
    }

    /// Reads a safetensors file already in memory.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<StateDict, LoadError> {
        Self::from_bytes_in(Bytes::Owned(bytes))
    }

    fn from_bytes_in(bytes: Bytes) -> Result<StateDict, LoadError> {
        let (header_len, metadata) = SafeTensors::read_metadata(bytes.as_slice())
            .map_err(|error| LoadError::Format(error.to_string()))?;
        Ok(StateDict {
            bytes,
            data_start: 8 + header_len,
            metadata,
        })
    }

    /// Every tensor name, sorted.
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.metadata.tensors().into_keys().collect();
        keys.sort();
        keys
    }

    /// Whether a tensor is named `key`.
    pub fn contains(&self, key: &str) -> bool {
        self.metadata.info(key).is_some()
    }

    /// The tensor named `key`, as `f32` (F16, BF16 and F64 are converted).
    pub fn tensor(&self, key: &str) -> Result<ArrayD<f32>, LoadError> {
        let info = self
            .metadata
            .info(key)
            .ok_or_else(|| LoadError::MissingKey {
                key: key.to_owned(),
                nearest: nearest(key, &self.keys()),
            })?;
        let (start, end) = info.data_offsets;
        // `read_metadata` checked that the offsets lie within the buffer.
        let data = &self.bytes.as_slice()[self.data_start + start..self.data_start + end];
        let values: Vec<f32> = match info.dtype {
            Dtype::F32 => data
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Dtype::F16 => data
                .chunks_exact(2)
                .map(|b| f16_to_f32(u16::from_le_bytes([b[0], b[1]])))
                .collect(),
            Dtype::BF16 => data
                .chunks_exact(2)
                .map(|b| f32::from_bits(u32::from(u16::from_le_bytes([b[0], b[1]])) << 16))
                .collect(),
            Dtype::F64 => data
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")) as f32)
                .collect(),
            other => {
                return Err(LoadError::Dtype {
                    key: key.to_owned(),
                    dtype: format!("{other:?}"),
                });
            }
        };
        ArrayD::from_shape_vec(IxDyn(&info.shape), values)
            .map_err(|error| LoadError::Format(format!("`{key}`: {error}")))
    }

    /// Writes `tensors` (name, values) as a safetensors file of F32 tensors, which
    /// `safetensors.torch.load_file` reads back into a `state_dict` with the same names.
    pub fn save<'a>(
        path: impl AsRef<Path>,
        tensors: impl IntoIterator<Item = (String, ArrayViewD<'a, f32>)>,
    ) -> Result<(), LoadError> {
        let path = path.as_ref();
        std::fs::write(path, Self::to_bytes(tensors)?).map_err(|error| LoadError::Io {
            path: path.display().to_string(),
            message: error.to_string(),
        })
    }

    /// `tensors` as the bytes of a safetensors file (see [`save`](Self::save)).
    pub fn to_bytes<'a>(
        tensors: impl IntoIterator<Item = (String, ArrayViewD<'a, f32>)>,
    ) -> Result<Vec<u8>, LoadError> {
        let tensors: HashMap<String, F32Tensor> = tensors
            .into_iter()
            .map(|(name, values)| {
                let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
                let shape = values.shape().to_vec();
                (name, F32Tensor { shape, bytes })
            })
            .collect();
        safetensors::serialize(tensors, None).map_err(|error| LoadError::Format(error.to_string()))
    }
}

impl fmt::Debug for StateDict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StateDict")
            .field("keys", &self.keys())
            .finish()
    }
}

/// One tensor to write, in the file's byte order.
struct F32Tensor {
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl View for F32Tensor {
    fn dtype(&self) -> Dtype {
        Dtype::F32
    }

    fn shape(&self) -> &[usize] {
        &self.shape
    }

    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        std::borrow::Cow::Borrowed(&self.bytes)
    }

    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

/// IEEE half precision to single, exactly (every half is a single).
fn f16_to_f32(half: u16) -> f32 {
    let sign = u32::from(half >> 15) << 31;
    let exponent = u32::from((half >> 10) & 0x1f);
    let fraction = u32::from(half & 0x3ff);
    match exponent {
        // Zero and subnormals: fraction * 2^-24.
        0 => {
            let magnitude = fraction as f32 * (1.0 / 16_777_216.0);
            f32::from_bits(sign | magnitude.to_bits())
        }
        // Infinities and NaNs.
        31 => f32::from_bits(sign | 0x7f80_0000 | (fraction << 13)),
        // Rebias the exponent from 15 to 127.
        _ => f32::from_bits(sign | ((exponent + 112) << 23) | (fraction << 13)),
    }
}

/// Up to three of `keys` closest to `key` by edit distance, for a missing-key error.
fn nearest(key: &str, keys: &[String]) -> Vec<String> {
    let mut scored: Vec<(usize, &String)> = keys.iter().map(|k| (edits(key, k), k)).collect();
    scored.sort();
    scored.into_iter().take(3).map(|(_, k)| k.clone()).collect()
}

/// Levenshtein distance over characters.
fn edits(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halves_convert_exactly() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x8000).to_bits(), (-0.0f32).to_bits());
        assert_eq!(f16_to_f32(0x7c00), f32::INFINITY);
        assert!(f16_to_f32(0x7e00).is_nan());
        assert_eq!(f16_to_f32(0x3555), 0.333_251_95);
    }

    #[test]
    fn nearest_keys_by_edit_distance() {
        let keys: Vec<String> = [
            "encoder.conv1.weight",
            "encoder.conv2.weight",
            "decoder.up.bias",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(edits("kitten", "sitting"), 3);
        assert_eq!(
            nearest("encoder.conv3.weight", &keys)[..2],
            ["encoder.conv1.weight", "encoder.conv2.weight"]
        );
    }
}
