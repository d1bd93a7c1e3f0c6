//! Stage 2: check every rule of the `conv!` grammar and resolve the parameters to numbers.
//!
//! Every rule is one small function. Errors are collected, not returned at the first one,
//! so a user with three mistakes learns all three from one build; each error points at the
//! token the user typed. Whatever the errors, a usable geometry comes back too (a bad value
//! falls back to its default), so the caller can still emit code of the right shape and the
//! user sees one error per mistake rather than a cascade.

use proc_macro2::Span;
use syn::Ident;

use crate::one_dimension;
use crate::parse::{Invocation, Param, Scalar, Value};

/// Which macro was invoked: `conv!` (2-D) or `conv1d!`, whose parameters are single
/// integers, checked as the `(1, k)`-style pairs of one row (see `one_dimension`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rank {
    Two,
    One,
}

impl Rank {
    /// The macro, as its messages name it.
    pub fn macro_name(self) -> &'static str {
        match self {
            Rank::Two => "conv!",
            Rank::One => "conv1d!",
        }
    }
}

/// The geometry a `conv!` invocation describes, every value resolved; `[h, w]` per axis.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    /// Zeros added before (top/left) each axis.
    pub pad_before: [usize; 2],
    /// Zeros added after (bottom/right) each axis.
    pub pad_after: [usize; 2],
    pub dilation: [usize; 2],
    pub output_padding: [usize; 2],
    /// `padding = same` was written (the pads above are already resolved from it).
    pub same: bool,
    /// `padding = causal` was written (the pads above are already resolved from it).
    pub causal: bool,
    /// What the padding holds.
    pub padding_mode: BorderMode,
    /// Written with `conv1d!`: one row of taps.
    pub rank: Rank,
}

/// PyTorch's `padding_mode`: what the padding holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BorderMode {
    #[default]
    Zeros,
    Reflect,
    Replicate,
    Circular,
}

impl BorderMode {
    fn from_word(word: &str) -> Option<BorderMode> {
        Some(match word {
            "zeros" => BorderMode::Zeros,
            "reflect" => BorderMode::Reflect,
            "replicate" => BorderMode::Replicate,
            "circular" => BorderMode::Circular,
            _ => return None,
        })
    }
}

/// The largest number of taps (`kh * kw`) one invocation lists.
///
/// 16 x 16 = 256 taps covers every kernel in common use (the largest in torchvision's
/// models is 11 x 11). The runtime unrolls kernels of up to 81 taps a phase and walks longer
/// tap lists in a loop, so that a large filter stays quick to compile.
pub const MAX_TAPS: usize = 256;

/// The largest value any parameter may take. It keeps all shape arithmetic far from
/// overflow and is well beyond any real layer.
pub const MAX_VALUE: usize = 1 << 16;

const KEYS: &str =
    "`k`, `kernel_size`, `stride`, `padding`, `padding_mode`, `dilation`, `output_padding`";

/// The parameters a user can name. `k` and `kernel_size` are one parameter.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Key {
    KernelSize,
    Stride,
    Padding,
    PaddingMode,
    Dilation,
    OutputPadding,
}

impl Key {
    fn from_ident(ident: &Ident) -> Option<Key> {
        Some(match ident.to_string().as_str() {
            "k" | "kernel_size" => Key::KernelSize,
            "stride" => Key::Stride,
            "padding" => Key::Padding,
            "padding_mode" => Key::PaddingMode,
            "dilation" => Key::Dilation,
            "output_padding" => Key::OutputPadding,
            _ => return None,
        })
    }

    /// The smallest value the parameter accepts.
    fn minimum(self) -> usize {
        match self {
            Key::KernelSize | Key::Stride | Key::Dilation => 1,
            Key::Padding | Key::PaddingMode | Key::OutputPadding => 0,
        }
    }
}

/// How `padding` was given.
#[derive(Clone, Copy)]
enum PaddingMode {
    Explicit([usize; 2]),
    Same,
    Causal,
}

/// The accepted parameters with their spans, before cross-parameter rules.
struct Collected<'a> {
    kernel: Option<&'a Param>,
    stride: Option<&'a Param>,
    padding: Option<&'a Param>,
    padding_mode: Option<&'a Param>,
    dilation: Option<&'a Param>,
    output_padding: Option<&'a Param>,
}

/// Collects errors so that every problem in one invocation is reported together, in the
/// order of the parameters they point at (rules run per concept, not left to right).
#[derive(Default)]
pub struct Errors(Vec<(Order, syn::Error)>);

/// Where an error is listed: about the whole invocation first, then by parameter, then a
/// syntax error (which ends the parameters that were read).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Order {
    Invocation,
    Param(usize),
    Syntax,
}

impl Errors {
    /// An error about `param` (its key or its value).
    fn at(&mut self, param: &Param, error: syn::Error) {
        self.0.push((Order::Param(param.position), error));
    }

    fn push(&mut self, order: Order, error: syn::Error) {
        self.0.push((order, error));
    }

    /// All errors as one `syn::Error` (which renders as several `compile_error!`s), if any.
    pub fn into_combined(mut self) -> Option<syn::Error> {
        self.0.sort_by_key(|(order, _)| *order);
        self.0
            .into_iter()
            .map(|(_, error)| error)
            .reduce(|mut all, next| {
                all.combine(next);
                all
            })
    }
}

/// Checks an invocation. Returns the geometry to emit (with defaults standing in for any
/// value that was wrong) and the errors found.
pub fn validate(invocation: &Invocation, rank: Rank) -> (Geometry, Errors) {
    let mut errors = Errors::default();
    if let Some(error) = &invocation.syntax_error {
        errors.push(Order::Syntax, error.clone());
    }
    let params = match rank {
        Rank::Two => invocation.params.clone(),
        Rank::One => {
            one_dimension::as_one_row(&invocation.params, |param, error| errors.at(param, error))
        }
    };
    let collected = collect_keys(&params, rank, &mut errors);

    let kernel = match collected.kernel {
        Some(param) => dim(param, Key::KernelSize, rank, &mut errors).unwrap_or([1, 1]),
        None => {
            check_kernel_given(invocation, rank, &mut errors);
            [1, 1]
        }
    };
    // `None` when the value given is wrong: the rules that combine parameters skip it, as
    // its default would stand in for what the user meant and could raise a false error.
    let given_stride = optional_dim(collected.stride, Key::Stride, [1, 1], rank, &mut errors);
    let given_dilation = optional_dim(collected.dilation, Key::Dilation, [1, 1], rank, &mut errors);
    let output_padding = optional_dim(
        collected.output_padding,
        Key::OutputPadding,
        [0, 0],
        rank,
        &mut errors,
    )
    .unwrap_or([0, 0]);
    let stride = given_stride.unwrap_or([1, 1]);
    let dilation = given_dilation.unwrap_or([1, 1]);
    let padding = match collected.padding {
        Some(param) => padding_mode(param, rank, &mut errors),
        None => PaddingMode::Explicit([0, 0]),
    };

    let padding_mode = match collected.padding_mode {
        Some(param) => border_mode(param, &mut errors),
        None => BorderMode::Zeros,
    };

    let kernel = check_tap_limit(collected.kernel, kernel, rank, &mut errors);
    let padding =
        check_same_needs_stride_one(collected.padding, padding, stride, rank, &mut errors);
    let output_padding = match (given_stride, given_dilation) {
        (Some(stride), Some(dilation)) => check_output_padding(
            collected.output_padding,
            output_padding,
            stride,
            dilation,
            rank,
            &mut errors,
        ),
        _ => output_padding,
    };

    let causal = matches!(padding, PaddingMode::Causal);
    let (pad_before, pad_after, same) = match padding {
        PaddingMode::Explicit(pad) => (pad, pad, false),
        PaddingMode::Causal => {
            // All of the field before each output: it sees no input after its own position.
            let total = [dilation[0] * (kernel[0] - 1), dilation[1] * (kernel[1] - 1)];
            (total, [0, 0], false)
        }
        PaddingMode::Same => {
            let total = [dilation[0] * (kernel[0] - 1), dilation[1] * (kernel[1] - 1)];
            // PyTorch puts the odd extra row/column of `same` padding on the bottom/right.
            let before = [total[0] / 2, total[1] / 2];
            (before, [total[0] - before[0], total[1] - before[1]], true)
        }
    };

    let geometry = Geometry {
        kernel,
        stride,
        pad_before,
        pad_after,
        dilation,
        output_padding,
        same,
        causal,
        padding_mode,
        rank,
    };
    (geometry, errors)
}

/// Rule: the kernel size is given. After a syntax error the parameters that follow it were
/// not read, so a missing kernel size there is no mistake of its own.
fn check_kernel_given(invocation: &Invocation, rank: Rank, errors: &mut Errors) {
    let full_form = match rank {
        Rank::Two => "kernel_size = (3, 3)",
        Rank::One => "kernel_size = 3",
    };
    if invocation.syntax_error.is_none() {
        errors.push(
            Order::Invocation,
            syn::Error::new(
                Span::call_site(),
                format!(
                    "missing kernel size: add `k = 3` (or `{full_form}`); it is the only \
                     required parameter"
                ),
            ),
        );
    }
}

/// Rule: every key is known, and given at most once (`k` and `kernel_size` are the same key).
fn collect_keys<'a>(params: &'a [Param], rank: Rank, errors: &mut Errors) -> Collected<'a> {
    let mut collected = Collected {
        kernel: None,
        stride: None,
        padding: None,
        padding_mode: None,
        dilation: None,
        output_padding: None,
    };
    for param in params {
        let Some(key) = Key::from_ident(&param.key) else {
            errors.at(param, unknown_key(&param.key, rank));
            continue;
        };
        let slot = match key {
            Key::KernelSize => &mut collected.kernel,
            Key::Stride => &mut collected.stride,
            Key::Padding => &mut collected.padding,
            Key::PaddingMode => &mut collected.padding_mode,
            Key::Dilation => &mut collected.dilation,
            Key::OutputPadding => &mut collected.output_padding,
        };
        match slot {
            Some(first) => errors.at(param, duplicate_key(first, param)),
            None => *slot = Some(param),
        }
    }
    collected
}

/// The error for a key given a second time, at the second.
fn duplicate_key(first: &Param, again: &Param) -> syn::Error {
    let message = if first.key == again.key {
        format!(
            "`{}` is given twice; each parameter may appear once",
            again.key
        )
    } else {
        format!(
            "`{}` is given twice (first as `{}`, the same parameter); each parameter may \
             appear once",
            again.key, first.key
        )
    };
    syn::Error::new(again.key.span(), message)
}

/// The error for a key that is not a parameter, with the likely intended one if any.
fn unknown_key(key: &Ident, rank: Rank) -> syn::Error {
    let name = key.to_string();
    let hint = match name.as_str() {
        "kernel" | "ksize" | "kernel_shape" | "size" => " (did you mean `kernel_size`?)",
        "strides" => " (did you mean `stride`?)",
        "pad" | "pads" => " (did you mean `padding`?)",
        "dilations" | "dilation_rate" | "rate" => " (did you mean `dilation`?)",
        "output_pad" | "out_padding" | "outpadding" => " (did you mean `output_padding`?)",
        "groups" | "in_channels" | "out_channels" | "bias" => {
            let layer = match rank {
                Rank::Two => "Conv2d",
                Rank::One => "Conv1d",
            };
            return syn::Error::new(
                key.span(),
                format!(
                    "`{name}` is not a geometry parameter: channels, groups and bias belong \
                     to the layer, as in `{layer}::builder(geometry, in_channels, \
                     out_channels).groups(n).bias(false)`; the geometry takes {KEYS}"
                ),
            );
        }
        _ => "",
    };
    syn::Error::new(
        key.span(),
        format!("unknown parameter `{name}`{hint}; expected one of {KEYS}"),
    )
}

/// How a dimension is written: `conv!` takes a pair `(h, w)` too, `conv1d!` a length.
fn integer_or_pair(rank: Rank) -> &'static str {
    match rank {
        Rank::Two => "an integer or a pair `(h, w)`",
        Rank::One => "an integer",
    }
}

/// Rule: a dimension is an integer or an `(h, w)` pair of integers, each within
/// `[minimum, MAX_VALUE]`.
fn dim(param: &Param, key: Key, rank: Rank, errors: &mut Errors) -> Option<[usize; 2]> {
    let expected = integer_or_pair(rank);
    match &param.value {
        Value::Scalar(scalar) => {
            let value = scalar_value(scalar, param, key, errors)?;
            Some([value, value])
        }
        Value::Pair { h, w, .. } => {
            let h = scalar_value(h, param, key, errors);
            let w = scalar_value(w, param, key, errors);
            Some([h?, w?])
        }
        Value::Word(word) => {
            let message = if matches!(word.to_string().as_str(), "same" | "valid" | "causal") {
                format!(
                    "`{word}` is a value of `padding`; `{}` takes {expected}",
                    param.key
                )
            } else {
                // Most often a constant: the macro sees its name, never its value.
                format!(
                    "expected {expected} for `{}`, found `{word}` ({} reads literal numbers; \
                     it cannot see the value of a constant)",
                    param.key,
                    rank.macro_name()
                )
            };
            errors.at(param, syn::Error::new(word.span(), message));
            None
        }
    }
}

/// A dimension that may be left out: `default` when absent, `None` when given but wrong.
fn optional_dim(
    param: Option<&Param>,
    key: Key,
    default: [usize; 2],
    rank: Rank,
    errors: &mut Errors,
) -> Option<[usize; 2]> {
    match param {
        Some(param) => dim(param, key, rank, errors),
        None => Some(default),
    }
}

/// Rule: integers only, in `[minimum, MAX_VALUE]`.
fn scalar_value(scalar: &Scalar, param: &Param, key: Key, errors: &mut Errors) -> Option<usize> {
    let name = &param.key;
    let minimum = key.minimum();
    let error = match scalar {
        Scalar::Int(lit) if !lit.suffix().is_empty() => scalar.error(format!(
            "`{name}` takes a plain integer; remove the suffix `{}`",
            lit.suffix()
        )),
        Scalar::Int(lit) => match lit.base10_parse::<usize>() {
            Ok(value) if value < minimum => scalar.error(format!(
                "`{name}` must be at least {minimum}, found {value}"
            )),
            Ok(value) if value <= MAX_VALUE => return Some(value),
            _ => scalar.error(format!(
                "`{name}` = {} is too large: conv! accepts values up to {MAX_VALUE}",
                lit.base10_digits()
            )),
        },
        Scalar::Negative { .. } => scalar.error(format!(
            "`{name}` must be at least {minimum}, found {}",
            scalar.written()
        )),
        Scalar::Float(lit) => scalar.error(format!(
            "`{name}` takes integers only, found `{}`",
            lit.base10_digits()
        )),
    };
    errors.at(param, error);
    None
}

/// Rule: `padding` is a dimension, `same`, `valid` (no padding) or `causal` (all of `same`'s
/// amount before).
fn padding_mode(param: &Param, rank: Rank, errors: &mut Errors) -> PaddingMode {
    let numbers = match rank {
        Rank::Two => "an integer, a pair `(h, w)`",
        Rank::One => "an integer",
    };
    match &param.value {
        Value::Word(word) if word == "same" => PaddingMode::Same,
        Value::Word(word) if word == "causal" => PaddingMode::Causal,
        Value::Word(word) if word == "valid" => PaddingMode::Explicit([0, 0]),
        Value::Word(word) => {
            let message = if BorderMode::from_word(&word.to_string()).is_some() {
                format!(
                    "`{word}` is a `padding_mode`: write `padding_mode = {word}` beside \
                     `padding = 1` (or {}`same`)",
                    match rank {
                        Rank::Two => "a pair `(h, w)`, or ",
                        Rank::One => "",
                    }
                )
            } else {
                format!(
                    "unknown padding `{word}`; expected {numbers}, `same`, `valid` or \
                     `causal`"
                )
            };
            errors.at(param, syn::Error::new(word.span(), message));
            PaddingMode::Explicit([0, 0])
        }
        _ => PaddingMode::Explicit(dim(param, Key::Padding, rank, errors).unwrap_or([0, 0])),
    }
}

/// Rule: `padding_mode` is one of PyTorch's four: `zeros`, `reflect`, `replicate`,
/// `circular`.
fn border_mode(param: &Param, errors: &mut Errors) -> BorderMode {
    const EXPECTED: &str = "`zeros`, `reflect`, `replicate` or `circular`";
    let error = match &param.value {
        Value::Word(word) => match BorderMode::from_word(&word.to_string()) {
            Some(mode) => return mode,
            None => {
                let hint = match word.to_string().as_str() {
                    "zero" | "constant" => " (did you mean `zeros`?)",
                    "reflection" | "mirror" | "symmetric" => " (did you mean `reflect`?)",
                    "replication" | "edge" | "clamp" => " (did you mean `replicate`?)",
                    "wrap" | "periodic" => " (did you mean `circular`?)",
                    _ => "",
                };
                syn::Error::new(
                    word.span(),
                    format!("unknown padding mode `{word}`; expected {EXPECTED}{hint}"),
                )
            }
        },
        _ => param
            .value
            .error(format!("`padding_mode` takes a mode: {EXPECTED}")),
    };
    errors.at(param, error);
    BorderMode::Zeros
}

/// Rule: the kernel has at most `MAX_TAPS` taps, since every tap is listed in the code the
/// macro emits.
fn check_tap_limit(
    param: Option<&Param>,
    kernel: [usize; 2],
    rank: Rank,
    errors: &mut Errors,
) -> [usize; 2] {
    let taps = kernel[0] * kernel[1];
    match param {
        Some(param) if taps > MAX_TAPS => {
            let message = match rank {
                Rank::Two => format!(
                    "a {}x{} kernel has {taps} taps; conv! lists every tap at compile time \
                     and accepts at most {MAX_TAPS} (for example 16x16)",
                    kernel[0], kernel[1]
                ),
                Rank::One => format!(
                    "a kernel of {taps} taps is too long; conv1d! lists every tap at compile \
                     time and accepts at most {MAX_TAPS}"
                ),
            };
            errors.at(param, param.value.error(message));
            [1, 1]
        }
        _ => kernel,
    }
}

/// Rule (PyTorch's): `padding = same` only with stride 1 on both axes.
fn check_same_needs_stride_one(
    param: Option<&Param>,
    padding: PaddingMode,
    stride: [usize; 2],
    rank: Rank,
    errors: &mut Errors,
) -> PaddingMode {
    match (param, padding) {
        (Some(param), PaddingMode::Same) if stride != [1, 1] => {
            let stride = match rank {
                Rank::Two => format!("({}, {})", stride[0], stride[1]),
                Rank::One => stride[1].to_string(),
            };
            errors.at(
                param,
                param.value.error(format!(
                    "`padding = same` needs stride 1 (as in PyTorch), but the stride is \
                     {stride}"
                )),
            );
            PaddingMode::Explicit([0, 0])
        }
        _ => padding,
    }
}

/// Rule (PyTorch's): `output_padding` is smaller than the stride or the dilation on each
/// axis; otherwise it would add rows and columns no input can reach.
fn check_output_padding(
    param: Option<&Param>,
    output_padding: [usize; 2],
    stride: [usize; 2],
    dilation: [usize; 2],
    rank: Rank,
    errors: &mut Errors,
) -> [usize; 2] {
    let Some(param) = param else {
        return output_padding;
    };
    let mut valid = true;
    for (axis, name) in ["height", "width"].into_iter().enumerate() {
        let limit = stride[axis].max(dilation[axis]);
        if output_padding[axis] < limit {
            continue;
        }
        let place = match rank {
            Rank::Two => format!("on the {name} axis "),
            Rank::One => String::new(),
        };
        let message = format!(
            "`output_padding` must be smaller than the stride or the dilation: {place}it is \
             {}, with stride {} and dilation {}",
            output_padding[axis], stride[axis], dilation[axis]
        );
        // At the offending element of a pair; a single value is one mistake, told once.
        match &param.value {
            Value::Pair { h, w, .. } => errors.at(param, [h, w][axis].error(message)),
            value if valid => errors.at(param, value.error(message)),
            _ => {}
        }
        valid = false;
    }
    if valid { output_padding } else { [0, 0] }
}
