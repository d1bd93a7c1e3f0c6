//! The geometry of a convolution as values: what `conv!` fixes at compile time, and all the
//! shape arithmetic that follows from it. Shape arithmetic lives here and nowhere else.

use std::fmt;

use super::contract::Kernels;

/// How a convolution pads its input, as PyTorch's `padding` argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Padding {
    /// `(h, w)` zeros on both sides of each axis (`padding = valid` is `Explicit(0, 0)`).
    Explicit(usize, usize),
    /// As many zeros as keep the output the size of the input at stride 1; an odd total puts
    /// the extra row or column at the bottom or right, as PyTorch does.
    Same,
    /// All of the `same` amount before, none after: `receptive_field - 1` rows on top and
    /// columns on the left, so output `i` sees inputs up to `i` and none after it (Keras'
    /// `padding='causal'`; PyTorch users pad by hand). On an input one row high and a
    /// `k = (1, k)` kernel, that is a causal 1-D convolution.
    Causal,
}

/// What a convolution's padding holds, as PyTorch's `padding_mode` argument of
/// `nn.Conv2d`. Only [`Conv2d`](crate::Conv2d) pads with anything but zeros (as in
/// PyTorch, where `nn.ConvTranspose2d` takes `zeros` alone).
///
/// ```
/// use conv_runtime::PaddingMode;
///
/// // A row of 4 padded by 2 on each side, as each mode reads it.
/// let read = |mode: PaddingMode| -> Vec<Option<usize>> {
///     (-2..6).map(|i| mode.source(i, 4)).collect()
/// };
/// let (a, b, c, d) = (Some(0), Some(1), Some(2), Some(3));
/// assert_eq!(read(PaddingMode::Zeros), [None, None, a, b, c, d, None, None]);
/// assert_eq!(read(PaddingMode::Reflect), [c, b, a, b, c, d, c, b]);
/// assert_eq!(read(PaddingMode::Replicate), [a, a, a, b, c, d, d, d]);
/// assert_eq!(read(PaddingMode::Circular), [c, d, a, b, c, d, a, b]);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum PaddingMode {
    /// Zeros (PyTorch's default).
    #[default]
    Zeros,
    /// The input mirrored about its edge, the edge itself not repeated: `c b | a b c d | c b`.
    /// Each pad must be smaller than the input along its axis.
    Reflect,
    /// The edge value repeated: `a a | a b c d | d d`.
    Replicate,
    /// The input wrapped around: `c d | a b c d | a b`. Each pad may be at most the input
    /// along its axis.
    Circular,
}

impl PaddingMode {
    /// The index of the input element that position `index` of an axis of `len` elements
    /// reads, where positions below 0 and from `len` on are the padding; `None` where the
    /// padding is a zero, or where the mode cannot reach that far (see
    /// [`min_input`](Self::min_input)).
    pub const fn source(self, index: isize, len: usize) -> Option<usize> {
        let n = len as isize;
        if len == 0 {
            return None;
        }
        let source = match self {
            PaddingMode::Zeros => index,
            PaddingMode::Reflect if index < 0 => -index,
            PaddingMode::Reflect if index >= n => 2 * (n - 1) - index,
            PaddingMode::Reflect => index,
            PaddingMode::Replicate if index < 0 => 0,
            PaddingMode::Replicate if index >= n => n - 1,
            PaddingMode::Replicate => index,
            PaddingMode::Circular => index.rem_euclid(n),
        };
        if 0 <= source && source < n {
            Some(source as usize)
        } else {
            None
        }
    }

    /// The shortest axis this mode can pad by `pad` on a side (PyTorch's rules): longer than
    /// the pad to reflect, at least the pad to wrap around once, one element to replicate.
    pub const fn min_input(self, pad: usize) -> usize {
        match self {
            PaddingMode::Zeros => 0,
            PaddingMode::Reflect => pad + 1,
            PaddingMode::Replicate => (pad > 0) as usize,
            PaddingMode::Circular => pad,
        }
    }

    /// The name `conv!` and PyTorch give the mode.
    pub const fn name(self) -> &'static str {
        match self {
            PaddingMode::Zeros => "zeros",
            PaddingMode::Reflect => "reflect",
            PaddingMode::Replicate => "replicate",
            PaddingMode::Circular => "circular",
        }
    }
}

impl fmt::Display for PaddingMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Every parameter of a convolution geometry, `(h, w)` per axis, with the shape arithmetic
/// that follows from them as `const fn`s.
///
/// Each `conv!` type carries one as `SPEC`:
///
/// ```
/// use conv_runtime::prelude::*;
///
/// conv! { struct Atrous; k = 3, dilation = 2, padding = 2 }
/// const OUT: Option<(usize, usize)> = Atrous::SPEC.output_size((64, 64));
/// assert_eq!(OUT, Some((64, 64)));
/// assert_eq!(Atrous::SPEC.receptive_field(), (5, 5));
/// assert_eq!(Atrous::SPEC.to_string(), "conv!(k = 3, padding = 2, dilation = 2)");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GeometrySpec {
    /// `(kh, kw)`.
    pub kernel_size: (usize, usize),
    /// `(sh, sw)`.
    pub stride: (usize, usize),
    /// How much padding goes around the input.
    pub padding: Padding,
    /// What the padding holds.
    pub padding_mode: PaddingMode,
    /// `(dh, dw)`: the spacing between taps.
    pub dilation: (usize, usize),
    /// Extra rows and columns at the bottom and right of the transposed convolution's output.
    pub output_padding: (usize, usize),
}

impl GeometrySpec {
    /// The input window one output element of the convolution sees:
    /// `dilation * (kernel_size - 1) + 1` per axis.
    pub const fn receptive_field(&self) -> (usize, usize) {
        (
            self.dilation.0 * (self.kernel_size.0 - 1) + 1,
            self.dilation.1 * (self.kernel_size.1 - 1) + 1,
        )
    }

    /// The input window one output of a stack of convolutions sees, `stack[0]` first:
    /// each layer widens the field by its own field minus one, in units of the input
    /// steps its input's elements stand for (the product of the strides below it).
    ///
    /// ```
    /// use conv_runtime::prelude::*;
    ///
    /// // WaveNet's dilations 1, 2, 4, ..., 512 with k = 2 see 1024 samples.
    /// conv1d! { struct D1; k = 2, dilation = 1, padding = causal }
    /// conv1d! { struct D512; k = 2, dilation = 512, padding = causal }
    /// const FIELD: usize = GeometrySpec::stack_receptive_field(&[D1::SPEC, D512::SPEC]).1;
    /// assert_eq!(FIELD, 1 + 1 + 512);
    /// // Stride 2 first doubles the step of what follows.
    /// conv! { struct Down; k = 3, stride = 2, padding = 1 }
    /// conv! { struct K3; k = 3, padding = 1 }
    /// assert_eq!(GeometrySpec::stack_receptive_field(&[Down::SPEC, K3::SPEC]), (7, 7));
    /// ```
    pub const fn stack_receptive_field(stack: &[GeometrySpec]) -> (usize, usize) {
        let (mut field, mut step) = ((1, 1), (1, 1));
        let mut i = 0;
        while i < stack.len() {
            let layer = stack[i].receptive_field();
            field.0 += (layer.0 - 1) * step.0;
            field.1 += (layer.1 - 1) * step.1;
            step.0 *= stack[i].stride.0;
            step.1 *= stack[i].stride.1;
            i += 1;
        }
        field
    }

    /// Whether this is the geometry of a `conv1d!`: one row of taps, no padding or step
    /// across rows, so that it maps an input one row high to an output one row high.
    pub const fn is_one_dimensional(&self) -> bool {
        let rows_padded = match self.padding {
            Padding::Explicit(h, _) => h != 0,
            Padding::Same | Padding::Causal => false,
        };
        self.kernel_size.0 == 1
            && self.stride.0 == 1
            && self.dilation.0 == 1
            && self.output_padding.0 == 0
            && !rows_padded
    }

    /// The geometry the kernels compute. With zero padding, this one. With another mode the
    /// layer lays the padding out in a copy of the input, and the kernels convolve that copy
    /// without padding: the border costs one pass over the input and never a test in the
    /// kernels' inner loops.
    pub const fn kernel_spec(&self) -> GeometrySpec {
        match self.padding_mode {
            PaddingMode::Zeros => *self,
            _ => GeometrySpec {
                padding: Padding::Explicit(0, 0),
                padding_mode: PaddingMode::Zeros,
                ..*self
            },
        }
    }

    /// Whether the input is padded with anything but zeros, so that the layer copies it into
    /// a padded input first (see [`kernel_spec`](Self::kernel_spec)).
    pub const fn pads_by_copy(&self) -> bool {
        let (h, w) = self.pad_sums();
        !matches!(self.padding_mode, PaddingMode::Zeros) && h + w > 0
    }

    /// The smallest input `(h, w)` the padding mode can pad (PyTorch's rules, see
    /// [`PaddingMode::min_input`]); `(0, 0)` for zeros.
    pub const fn padding_min_input(&self) -> (usize, usize) {
        let (before, after) = (self.pad_before(), self.pad_after());
        (
            self.padding_mode.min_input(max(before.0, after.0)),
            self.padding_mode.min_input(max(before.1, after.1)),
        )
    }

    /// The input `(h, w)` with its padding, saturating at `usize::MAX`.
    pub const fn padded_size(&self, input: (usize, usize)) -> (usize, usize) {
        let (pad_h, pad_w) = self.pad_sums();
        (input.0.saturating_add(pad_h), input.1.saturating_add(pad_w))
    }

    /// Rows or columns added at the top and at the left.
    pub const fn pad_before(&self) -> (usize, usize) {
        match self.padding {
            Padding::Explicit(h, w) => (h, w),
            Padding::Same => {
                let (h, w) = self.same_total();
                (h / 2, w / 2)
            }
            Padding::Causal => self.same_total(),
        }
    }

    /// Rows or columns added at the bottom and at the right.
    pub const fn pad_after(&self) -> (usize, usize) {
        match self.padding {
            Padding::Explicit(h, w) => (h, w),
            Padding::Same => {
                let (h, w) = self.same_total();
                (h - h / 2, w - w / 2)
            }
            Padding::Causal => (0, 0),
        }
    }

    const fn same_total(&self) -> (usize, usize) {
        let (h, w) = self.receptive_field();
        (h - 1, w - 1)
    }

    /// The convolution's output `(h, w)` for an input `(h, w)`, as PyTorch computes it:
    /// `(input + pad_before + pad_after - receptive_field) / stride + 1`. `None` when the padded
    /// input is smaller than the receptive field, or an axis is empty.
    pub const fn output_size(&self, input: (usize, usize)) -> Option<(usize, usize)> {
        let (pad_h, pad_w) = self.pad_sums();
        let (field_h, field_w) = self.receptive_field();
        match (
            conv_axis(input.0, pad_h, field_h, self.stride.0),
            conv_axis(input.1, pad_w, field_w, self.stride.1),
        ) {
            (Some(h), Some(w)) => Some((h, w)),
            _ => None,
        }
    }

    /// The transposed convolution's output `(h, w)` for an input `(h, w)`, as PyTorch computes
    /// it: `(input - 1) * stride - pad_before - pad_after + receptive_field + output_padding`.
    /// `None` when the padding crops everything away, or an axis is empty.
    pub const fn transposed_output_size(&self, input: (usize, usize)) -> Option<(usize, usize)> {
        let (pad_h, pad_w) = self.pad_sums();
        let (field_h, field_w) = self.receptive_field();
        match (
            transposed_axis(
                input.0,
                pad_h,
                field_h,
                self.stride.0,
                self.output_padding.0,
            ),
            transposed_axis(
                input.1,
                pad_w,
                field_w,
                self.stride.1,
                self.output_padding.1,
            ),
        ) {
            (Some(h), Some(w)) => Some((h, w)),
            _ => None,
        }
    }

    /// The output sizes `(min, max)` a transposed convolution of an input `(h, w)` can
    /// produce through PyTorch's `output_size` argument: from the size without output padding
    /// (but at least 1) to `stride - 1` more, per axis. Empty (`min > max` on an axis) when
    /// the padding crops even the largest away, which a geometry whose output padding reaches
    /// the stride can still run at its own output padding; `None` for an empty input or a
    /// size that overflows `usize`.
    ///
    /// ```
    /// use conv_runtime::prelude::*;
    ///
    /// conv! { struct Up; k = 3, stride = 2, padding = 1 }
    /// assert_eq!(Up::SPEC.transposed_output_range((8, 8)), Some(((15, 15), (16, 16))));
    /// ```
    pub const fn transposed_output_range(
        &self,
        input: (usize, usize),
    ) -> Option<((usize, usize), (usize, usize))> {
        let (pad_h, pad_w) = self.pad_sums();
        let (field_h, field_w) = self.receptive_field();
        match (
            transposed_axis_range(input.0, pad_h, field_h, self.stride.0),
            transposed_axis_range(input.1, pad_w, field_w, self.stride.1),
        ) {
            (Some((min_h, max_h)), Some((min_w, max_w))) => Some(((min_h, min_w), (max_h, max_w))),
            _ => None,
        }
    }

    /// The smallest input `(h, w)` the convolution accepts.
    pub const fn min_input_size(&self) -> (usize, usize) {
        let (pad_h, pad_w) = self.pad_sums();
        let (field_h, field_w) = self.receptive_field();
        (
            max(1, field_h.saturating_sub(pad_h)),
            max(1, field_w.saturating_sub(pad_w)),
        )
    }

    /// The smallest input `(h, w)` the transposed convolution accepts (its output must keep
    /// at least one row and column after the padding is cropped).
    pub const fn transposed_min_input_size(&self) -> (usize, usize) {
        let (pad_h, pad_w) = self.pad_sums();
        let (field_h, field_w) = self.receptive_field();
        (
            1 + (pad_h + 1)
                .saturating_sub(field_h + self.output_padding.0)
                .div_ceil(self.stride.0),
            1 + (pad_w + 1)
                .saturating_sub(field_w + self.output_padding.1)
                .div_ceil(self.stride.1),
        )
    }

    const fn pad_sums(&self) -> (usize, usize) {
        let (before_h, before_w) = self.pad_before();
        let (after_h, after_w) = self.pad_after();
        (before_h + after_h, before_w + after_w)
    }
}

const fn max(a: usize, b: usize) -> usize {
    if a > b { a } else { b }
}

const fn conv_axis(input: usize, pads: usize, field: usize, stride: usize) -> Option<usize> {
    if input == 0 {
        return None;
    }
    match input.checked_add(pads) {
        Some(padded) if padded >= field => Some((padded - field) / stride + 1),
        _ => None,
    }
}

const fn transposed_axis(
    input: usize,
    pads: usize,
    field: usize,
    stride: usize,
    output_padding: usize,
) -> Option<usize> {
    if input == 0 {
        return None;
    }
    let Some(spread) = (input - 1).checked_mul(stride) else {
        return None;
    };
    let Some(full) = spread.checked_add(field + output_padding) else {
        return None;
    };
    if full > pads { Some(full - pads) } else { None }
}

const fn transposed_axis_range(
    input: usize,
    pads: usize,
    field: usize,
    stride: usize,
) -> Option<(usize, usize)> {
    if input == 0 {
        return None;
    }
    // The largest size: the output at `output_padding = stride - 1`, cropped.
    let Some(spread) = (input - 1).checked_mul(stride) else {
        return None;
    };
    let Some(full) = spread.checked_add(field + stride - 1) else {
        return None;
    };
    let max = full.saturating_sub(pads);
    // The smallest: `stride - 1` less, but at least 1 (so the range is empty when even the
    // largest is cropped away).
    let min = max.saturating_sub(stride - 1);
    Some((if min > 1 { min } else { 1 }, max))
}

/// Prints the geometry as the `conv!` invocation that makes it, leaving out defaults.
impl fmt::Display for GeometrySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn dim(value: (usize, usize)) -> String {
            if value.0 == value.1 {
                value.0.to_string()
            } else {
                format!("({}, {})", value.0, value.1)
            }
        }
        write!(f, "conv!(k = {}", dim(self.kernel_size))?;
        if self.stride != (1, 1) {
            write!(f, ", stride = {}", dim(self.stride))?;
        }
        match self.padding {
            Padding::Same => write!(f, ", padding = same")?,
            Padding::Causal => write!(f, ", padding = causal")?,
            Padding::Explicit(0, 0) => {}
            Padding::Explicit(h, w) => write!(f, ", padding = {}", dim((h, w)))?,
        }
        if self.padding_mode != PaddingMode::Zeros {
            write!(f, ", padding_mode = {}", self.padding_mode)?;
        }
        if self.dilation != (1, 1) {
            write!(f, ", dilation = {}", dim(self.dilation))?;
        }
        if self.output_padding != (0, 0) {
            write!(f, ", output_padding = {}", dim(self.output_padding))?;
        }
        write!(f, ")")
    }
}

impl GeometrySpec {
    /// Writes a one-dimensional geometry as the `conv1d!` invocation that made it (the
    /// `Debug` of a `conv1d!` type): `conv1d!(k = 2, padding = causal, dilation = 4)`.
    #[doc(hidden)]
    pub fn fmt_conv1d(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conv1d!(k = {}", self.kernel_size.1)?;
        if self.stride.1 != 1 {
            write!(f, ", stride = {}", self.stride.1)?;
        }
        match self.padding {
            Padding::Same => write!(f, ", padding = same")?,
            Padding::Causal => write!(f, ", padding = causal")?,
            Padding::Explicit(_, 0) => {}
            Padding::Explicit(_, w) => write!(f, ", padding = {w}")?,
        }
        if self.padding_mode != PaddingMode::Zeros {
            write!(f, ", padding_mode = {}", self.padding_mode)?;
        }
        if self.dilation.1 != 1 {
            write!(f, ", dilation = {}", self.dilation.1)?;
        }
        if self.output_padding.1 != 0 {
            write!(f, ", output_padding = {}", self.output_padding.1)?;
        }
        write!(f, ")")
    }
}

/// A convolution geometry fixed at compile time: the type `conv!` defines.
///
/// Do not implement this trait by hand; `conv!` implements it, together with the kernels the
/// layers run.
///
/// ```
/// use conv_runtime::prelude::*;
///
/// let geometry = conv!(k = (3, 5), stride = 2, padding = (1, 2));
/// let spec = geometry.spec();
/// assert_eq!(spec.kernel_size, (3, 5));
/// assert_eq!(spec.output_size((32, 32)), Some((16, 16)));
/// ```
pub trait Geometry: Kernels + Copy + Default + fmt::Debug + Send + Sync + 'static {
    /// Every parameter of the geometry.
    const SPEC: GeometrySpec;

    /// [`Self::SPEC`], reachable from a value of an anonymous `conv!` type.
    fn spec(&self) -> GeometrySpec {
        Self::SPEC
    }
}

/// A geometry whose padding is zeros: `conv!` and `conv1d!` implement this for every
/// geometry without another `padding_mode`. [`ConvTranspose2d`](crate::ConvTranspose2d) and
/// [`ConvTranspose1d`](crate::ConvTranspose1d) take only these, as PyTorch's transposed
/// convolutions do, so code generic over geometries that builds one names this bound:
///
/// ```
/// use conv_runtime::prelude::*;
///
/// fn upsampler<G: ZeroPadded>(geometry: G, channels: usize) -> ConvTranspose2d<G> {
///     ConvTranspose2d::new(geometry, channels, channels)
/// }
/// let up = upsampler(conv!(k = 2, stride = 2), 4);
/// assert_eq!(up.out_channels(), 4);
/// ```
///
/// A geometry with another mode has no transposed layer:
///
/// ```compile_fail
/// use conv_runtime::prelude::*;
///
/// let up = ConvTranspose2d::new(conv!(k = 3, padding = 1, padding_mode = reflect), 4, 4);
/// ```
#[diagnostic::on_unimplemented(
    message = "a transposed convolution pads with zeros only (as PyTorch's \
               `nn.ConvTranspose2d` and `nn.ConvTranspose1d`), and this geometry has another \
               `padding_mode` or is not known to pad with zeros",
    label = "not a geometry padding with zeros",
    note = "padding modes belong to `Conv2d` and `Conv1d`: remove `padding_mode` from the \
            geometry of a transposed convolution; code generic over geometries bounds them by \
            `ZeroPadded`"
)]
pub trait ZeroPadded: Geometry {}

/// A geometry written with `conv1d!`, which [`Conv1d`](crate::Conv1d) and
/// [`ConvTranspose1d`](crate::ConvTranspose1d) take: a 2-D geometry of one row of taps
/// (`k = (1, k)`, no padding or stride across rows), so that the 1-D layers run the 2-D
/// kernels on an input one row high. `conv1d!` implements it; a `conv!` geometry does not
/// have it, even with `k = (1, k)`, so a 2-D geometry cannot be given to a 1-D layer by
/// mistake:
///
/// ```compile_fail
/// use conv_runtime::prelude::*;
///
/// let layer = Conv1d::new(conv!(k = 3), 4, 4);
/// ```
#[diagnostic::on_unimplemented(
    message = "`Conv1d` and `ConvTranspose1d` take a geometry made by `conv1d!`, and this \
               one was not",
    label = "not a `conv1d!` geometry",
    note = "write the geometry as `conv1d!(k = 3, ...)`: one integer per parameter, as in \
            `nn.Conv1d`"
)]
pub trait Geometry1d: Geometry {}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(k: usize, stride: usize, padding: Padding, dilation: usize) -> GeometrySpec {
        GeometrySpec {
            kernel_size: (k, k),
            stride: (stride, stride),
            padding,
            padding_mode: PaddingMode::Zeros,
            dilation: (dilation, dilation),
            output_padding: (0, 0),
        }
    }

    #[test]
    fn seed_geometries_have_pytorch_output_sizes() {
        let dilated = spec(3, 1, Padding::Explicit(2, 2), 2);
        assert_eq!(dilated.output_size((64, 64)), Some((64, 64)));
        assert_eq!(dilated.receptive_field(), (5, 5));
        let up = spec(2, 2, Padding::Explicit(0, 0), 1);
        assert_eq!(up.transposed_output_size((64, 64)), Some((128, 128)));
    }

    #[test]
    fn same_padding_puts_the_odd_zero_after() {
        let even = spec(4, 1, Padding::Same, 1);
        assert_eq!(even.pad_before(), (1, 1));
        assert_eq!(even.pad_after(), (2, 2));
        assert_eq!(even.output_size((7, 9)), Some((7, 9)));
    }

    #[test]
    fn causal_padding_puts_the_whole_field_before() {
        let causal = spec(2, 1, Padding::Causal, 4);
        assert_eq!(causal.pad_before(), (4, 4));
        assert_eq!(causal.pad_after(), (0, 0));
        assert_eq!(causal.output_size((7, 9)), Some((7, 9)));
        assert_eq!(
            causal.to_string(),
            "conv!(k = 2, padding = causal, dilation = 4)"
        );
    }

    #[test]
    fn too_small_inputs_have_no_output() {
        let geometry = spec(5, 1, Padding::Explicit(0, 0), 1);
        assert_eq!(geometry.output_size((4, 9)), None);
        assert_eq!(geometry.output_size((0, 9)), None);
        assert_eq!(geometry.min_input_size(), (5, 5));
        assert_eq!(geometry.output_size((5, 5)), Some((1, 1)));
    }

    #[test]
    fn transposed_minimum_input_is_the_first_with_output() {
        for (k, stride, pad, dilation) in [(3, 2, 4, 1), (2, 3, 5, 2), (1, 1, 0, 1), (4, 2, 1, 1)] {
            let geometry = spec(k, stride, Padding::Explicit(pad, pad), dilation);
            let min = geometry.transposed_min_input_size();
            assert!(geometry.transposed_output_size(min).is_some());
            if min.0 > 1 {
                assert_eq!(geometry.transposed_output_size((min.0 - 1, min.1)), None);
            }
        }
    }

    #[test]
    fn huge_inputs_do_not_overflow() {
        let geometry = spec(3, 4, Padding::Explicit(1, 1), 1);
        assert_eq!(geometry.transposed_output_size((usize::MAX, 1)), None);
        assert_eq!(geometry.output_size((usize::MAX, 1)), None);
    }
}
