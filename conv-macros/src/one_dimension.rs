//! Stage 2, for `conv1d!`: its parameters as those of a `conv!` of one row of taps.
//!
//! A 1-D convolution over a length is the 2-D convolution of kernel `(1, k)` over an input
//! one row high, with stride, dilation, padding and output padding `(1, s)`, `(1, d)`,
//! `(0, p)` and `(0, o)`. Rewriting each integer as that pair lets every rule of `conv!`
//! check it, with errors still at the token the user typed (the new pair carries its span),
//! and lets the same kernels run it. Words (`same`, `valid`, `causal`, the padding modes)
//! mean the same in one dimension and pass through unchanged.

use syn::LitInt;
use syn::spanned::Spanned;

use crate::parse::{Param, Scalar, Value};

/// `params` with each single integer made the pair of one row. A pair `(h, w)` is an error
/// (reported through `error`, at the pair): it is kept as its second value, so that the
/// rules still check that value and the user sees one error for the mistake.
pub fn as_one_row(params: &[Param], mut error: impl FnMut(&Param, syn::Error)) -> Vec<Param> {
    params
        .iter()
        .map(|param| {
            let Some(row_value) = row_value(&param.key.to_string()) else {
                return param.clone();
            };
            let length = match &param.value {
                Value::Scalar(scalar) => scalar.clone(),
                Value::Pair { span, w, .. } => {
                    let message = format!(
                        "`conv1d!` takes one integer per parameter, as `nn.Conv1d` does: write \
                         `{} = {}`; `(h, w)` pairs are for `conv!`",
                        param.key,
                        w.written()
                    );
                    error(param, syn::Error::new(*span, message));
                    w.clone()
                }
                Value::Word(_) => return param.clone(),
            };
            let span = length.span();
            Param {
                position: param.position,
                key: param.key.clone(),
                value: Value::Pair {
                    span,
                    h: Scalar::Int(LitInt::new(row_value, span)),
                    w: length,
                },
            }
        })
        .collect()
}

/// The value a parameter takes across rows in a 1-D geometry, or `None` for a parameter
/// that is not a dimension (`padding_mode`, or an unknown key, which the rules report).
fn row_value(key: &str) -> Option<&'static str> {
    match key {
        "k" | "kernel_size" | "stride" | "dilation" => Some("1"),
        "padding" | "output_padding" => Some("0"),
        _ => None,
    }
}
