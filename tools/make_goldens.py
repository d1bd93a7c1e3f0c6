#!/usr/bin/env python3
"""Writes the PyTorch parity fixtures that `tests/parity.rs` checks the layers against.

Run from the repository root, with a Python that has torch (and numpy, which torch brings):

    ~/venv/bin/python tools/make_goldens.py

This is only needed when the fixtures change (a case is added, removed or edited below).
The fixtures are committed, so neither the tests nor CI ever need torch; do not install
torch into the repository.

Each case becomes `tests/fixtures/<case>.json`, and any other `*.json` file in that
directory is deleted, so the directory always holds exactly the cases listed in `CASES`.
Likewise each `nn.Upsample` case in `UPSAMPLE_CASES` becomes
`tests/fixtures/upsample/<case>.json`, checked by `tests/upsample.rs` (a subdirectory, so
that `tests/parity.rs`, which wants a test for every `*.json` beside it, does not see them).
The output is deterministic: every case seeds torch from its own name (so adding a case
does not change the others), uses float32 throughout and runs single-threaded with
deterministic algorithms.

A fixture holds, for one `nn.Conv2d` (op "conv") or `nn.ConvTranspose2d` (op "convT"):

* `case`, `op`, `in_channels`, `out_channels`, `groups`, `has_bias`, `seed`;
* the geometry: `kernel_size`, `stride`, `dilation`, `output_padding` as `[h, w]`,
  `padding` as `[h, w]` or the string `"same"` or `"causal"`, and `padding_mode` ("zeros", "reflect",
  "replicate" or "circular");
* `output_size`: `[h, w]`, the `output_size` argument of `ConvTranspose2d.forward`, or null;
* `input`, `weight`, `bias` (null without bias) and `output`, each `{"shape": [...],
  "data": [...]}` with `data` flat and row-major (NCHW for activations; weights in
  PyTorch's layout: Conv2d `[out, in / groups, kh, kw]`, ConvTranspose2d
  `[in, out / groups, kh, kw]`). The weights are the layer's own default initialisation;
  the input is standard normal;
* autograd results, for training: a standard normal `grad_output` of the output's shape
  and `grad_input`, `grad_weight`, `grad_bias` (null without bias) from
  `output.backward(grad_output)`.

The 1-D layers' fixtures, `CASES_1D`, are written alike to `tests/fixtures/conv1d/<case>.json`
(stale files there deleted too) and checked by `tests/parity_1d.rs`: one `nn.Conv1d` (op
"conv1d") or `nn.ConvTranspose1d` (op "convT1d") each, with the same fields but 1-D:
`kernel_size`, `stride`, `dilation`, `output_padding` and `padding` plain integers (or
`padding` "same" or "causal", causal being `F.pad(x, ((k - 1) * dilation, 0))` then padding
0), `output_size` an integer or null, activations `[N, C, L]` and weights Conv1d
`[out, in / groups, k]`, ConvTranspose1d `[in, out / groups, k]`.

`BATCH_NORM_CASES` become `tests/fixtures/batch_norm/<case>.json`, checked by
`tests/batch_norm.rs`: a convolution (its `weight`, `bias`, `groups`) followed by
`nn.BatchNorm2d` (or, after an `nn.Conv1d`, `nn.BatchNorm1d`) in eval mode (`bn_weight`, `bn_bias`, `running_mean`, `running_var`,
`eps`), with the `input`, the convolution's `conv_output` and the batch norm's `output`.

Floats are written in the shortest form that reads back (as an f64, then cast to f32) to
exactly the same f32; JSON has no NaN or infinity, so those are the strings "nan", "inf"
and "-inf".
"""

import json
import math
import pathlib
import warnings
import zlib

import numpy as np
import torch

FIXTURES = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures"


def case(name, op, in_channels, out_channels, input_hw, k, *, stride=1, padding=0,
         dilation=1, output_padding=0, groups=1, bias=True, batch=1, output_size=None,
         nonfinite=False, padding_mode="zeros"):
    return dict(name=name, op=op, in_channels=in_channels, out_channels=out_channels,
                input_hw=input_hw, kernel_size=k, stride=stride, padding=padding,
                padding_mode=padding_mode,
                dilation=dilation, output_padding=output_padding, groups=groups, bias=bias,
                batch=batch, output_size=output_size, nonfinite=nonfinite)


# Every case; `tests/parity.rs` must name each with the same geometry (it checks).
CASES = [
    # The seed example: nn.Conv2d(3, 16, kernel_size=3, dilation=2, padding=2) and
    # nn.ConvTranspose2d(16, 3, kernel_size=2, stride=2).
    case("seed_dilated_conv", "conv", 3, 16, (10, 10), 3, dilation=2, padding=2),
    case("seed_upconv", "convT", 16, 3, (6, 6), 2, stride=2),
    # Per-axis (asymmetric) geometry.
    case("conv_per_axis", "conv", 3, 4, (9, 12), (3, 5), stride=(2, 1), padding=(1, 2),
         dilation=(1, 2)),
    case("convt_per_axis", "convT", 3, 4, (5, 7), (3, 5), stride=(2, 1), padding=(1, 2),
         dilation=(1, 2)),
    # Width: output_padding 1 >= stride 1 but < dilation 2.
    case("convt_per_axis_output_padding", "convT", 3, 4, (5, 7), (3, 5), stride=(2, 1),
         padding=(1, 2), dilation=(1, 2), output_padding=(1, 1)),
    # Groups and depthwise.
    case("conv_groups2", "conv", 4, 6, (8, 9), 3, padding=1, groups=2),
    case("conv_groups3_multiplier", "conv", 6, 9, (9, 7), 3, stride=2, padding=1, groups=3,
         batch=2),
    case("conv_depthwise", "conv", 5, 5, (8, 8), 3, padding=1, groups=5),
    case("conv_depthwise_multiplier", "conv", 4, 8, (9, 10), 5, padding=2, groups=4),
    case("convt_groups2", "convT", 4, 6, (5, 6), 3, stride=2, padding=1, output_padding=1,
         groups=2),
    case("convt_groups3_multiplier", "convT", 6, 3, (5, 6), (2, 3), stride=(2, 1),
         padding=(0, 1), groups=3),
    case("convt_depthwise_multiplier", "convT", 4, 8, (5, 6), 4, stride=2, padding=1,
         groups=4),
    # Dilated and strided transposed convolutions with output padding.
    case("convt_dilated_strided_output_padding", "convT", 3, 4, (6, 7), 3, stride=2,
         dilation=2, padding=1, output_padding=1),
    # output_padding 2 >= stride 1, allowed because it is < dilation 3.
    case("convt_output_padding_ge_stride", "convT", 2, 3, (7, 8), 3, dilation=3, padding=2,
         output_padding=2),
    case("convt_output_padding_per_axis", "convT", 3, 2, (5, 6), (2, 3), stride=(3, 1),
         dilation=(2, 3), padding=(1, 0), output_padding=(2, 2)),
    # padding="same" with even kernels (an odd total pad puts the extra zero after).
    case("conv_same_k4", "conv", 3, 4, (9, 10), 4, padding="same"),
    case("conv_same_k4_dilated", "conv", 2, 3, (11, 12), 4, padding="same", dilation=3),
    case("conv_same_per_axis_dilated", "conv", 3, 2, (8, 9), (2, 3), padding="same",
         dilation=(3, 2)),
    # Stride larger than the kernel: some inputs are skipped (conv), some outputs get only
    # the bias (convT).
    case("conv_stride_gt_kernel", "conv", 3, 4, (13, 14), 2, stride=3),
    case("convt_stride_gt_kernel", "convT", 3, 2, (5, 6), 2, stride=3),
    case("convt_stride_gt_kernel_per_axis", "convT", 2, 3, (4, 7), (3, 1), stride=(4, 2),
         padding=(1, 0), output_padding=(1, 1)),
    # Padding wider than the kernel.
    case("conv_padding_gt_kernel", "conv", 2, 3, (6, 7), (3, 2), padding=(4, 5)),
    case("convt_padding_gt_kernel", "convT", 3, 2, (9, 10), 3, stride=2, padding=(4, 5)),
    # Batches.
    case("conv_batch3", "conv", 3, 5, (7, 8), 3, stride=(1, 2), padding=1, batch=3),
    case("convt_batch2", "convT", 4, 3, (5, 5), 3, stride=2, padding=1, batch=2),
    # No bias.
    case("conv_no_bias", "conv", 4, 3, (7, 7), (3, 2), padding=(1, 0), bias=False),
    case("convt_no_bias", "convT", 3, 4, (5, 6), 3, stride=2, bias=False),
    # ConvTranspose2d.forward's output_size argument (which overrides output_padding).
    case("convt_output_size", "convT", 3, 2, (5, 6), 3, stride=3, padding=1,
         output_size=(15, 17)),
    case("convt_output_size_overrides_output_padding", "convT", 2, 3, (6, 5), 4, stride=2,
         padding=1, output_padding=1, output_size=(12, 11)),
    # 1x1 kernels.
    case("conv_1x1_kernel", "conv", 6, 4, (7, 9), 1),
    case("convt_1x1_kernel_stride2", "convT", 4, 3, (6, 7), 1, stride=2, output_padding=1),
    # A large kernel.
    case("conv_7x7_stride2", "conv", 3, 8, (19, 17), 7, stride=2, padding=3),
    # 1x1 spatial input.
    case("conv_1x1_input", "conv", 4, 3, (1, 1), 3, padding=1),
    case("convt_1x1_input", "convT", 4, 3, (1, 1), 3, stride=2),
    # Padding modes (Conv2d only, as in PyTorch): each with dilation, with stride 2, and
    # with "same" padding split unevenly (an even kernel).
    case("conv_reflect_dilated", "conv", 3, 4, (9, 10), 3, dilation=2, padding=2,
         padding_mode="reflect"),
    case("conv_reflect_stride2", "conv", 2, 3, (9, 8), 3, stride=2, padding=(1, 2),
         padding_mode="reflect"),
    case("conv_reflect_same_k4", "conv", 3, 2, (7, 9), 4, padding="same",
         padding_mode="reflect", batch=2),
    case("conv_replicate_dilated", "conv", 3, 4, (9, 10), 3, dilation=2, padding=2,
         padding_mode="replicate"),
    case("conv_replicate_stride2", "conv", 2, 3, (9, 8), (3, 5), stride=2, padding=(1, 3),
         padding_mode="replicate"),
    case("conv_replicate_same_per_axis_dilated", "conv", 3, 2, (8, 9), (2, 3),
         padding="same", dilation=(3, 2), padding_mode="replicate"),
    case("conv_circular_dilated", "conv", 3, 4, (9, 10), 3, dilation=2, padding=2,
         padding_mode="circular"),
    case("conv_circular_stride2_depthwise", "conv", 4, 4, (9, 8), 3, stride=2, padding=1,
         padding_mode="circular", groups=4),
    case("conv_circular_same_k4_dilated", "conv", 2, 3, (11, 12), 4, padding="same",
         dilation=3, padding_mode="circular"),
    # Reflect padding one less than the input, and circular padding equal to it: the
    # largest each mode allows.
    case("conv_reflect_widest", "conv", 2, 2, (4, 5), 3, padding=(3, 4),
         padding_mode="reflect"),
    case("conv_circular_widest", "conv", 2, 2, (4, 5), 3, padding=(4, 5),
         padding_mode="circular"),
    # Causal padding (Keras'; in PyTorch an F.pad before the layer): a WaveNet-style dilated
    # 1-D layer on one-row input, and a 2-D one with stride 2.
    case("conv_causal_1d_dilated", "conv", 3, 4, (1, 21), (1, 2), dilation=(1, 4),
         padding="causal", batch=2),
    case("conv_causal_stride2", "conv", 2, 3, (9, 12), 3, stride=2, dilation=(1, 2),
         padding="causal"),
    # NaN, +inf and -inf in the input.
    case("conv_nonfinite", "conv", 2, 3, (9, 10), 3, padding=1, nonfinite=True),
    case("convt_nonfinite", "convT", 2, 3, (6, 7), 3, stride=2, padding=1, nonfinite=True),
]

# `nn.Upsample` cases, written to `tests/fixtures/upsample/<case>.json` and checked by
# `tests/upsample.rs`: (name, mode, align_corners, scale_factor, input shape NCHW).
UPSAMPLE_CASES = [
    ("nearest_x2", "nearest", None, 2, (1, 2, 5, 7)),
    ("nearest_x3_batch2", "nearest", None, 3, (2, 3, 4, 5)),
    ("nearest_per_axis", "nearest", None, (2, 3), (1, 2, 5, 6)),
    # 1 / 41 rounds down in float32, so PyTorch maps output row 41 to input row 0.
    ("nearest_x41_rounding", "nearest", None, (41, 1), (1, 1, 3, 2)),
    ("nearest_1x1_input", "nearest", None, 3, (2, 1, 1, 1)),
    ("bilinear_x2", "bilinear", False, 2, (1, 2, 5, 7)),
    ("bilinear_x3_batch2", "bilinear", False, 3, (2, 2, 7, 5)),
    ("bilinear_per_axis", "bilinear", False, (3, 2), (1, 3, 4, 7)),
    ("bilinear_1x1_input", "bilinear", False, 2, (1, 2, 1, 1)),
    ("bilinear_align_corners_x2", "bilinear", True, 2, (1, 2, 5, 7)),
    ("bilinear_align_corners_x3_batch3", "bilinear", True, 3, (3, 2, 4, 5)),
    ("bilinear_align_corners_per_axis", "bilinear", True, (1, 4), (1, 2, 6, 3)),
    # One output row: align_corners' scale (in - 1) / (out - 1) is 0 there.
    ("bilinear_align_corners_one_row", "bilinear", True, (1, 2), (1, 1, 1, 3)),
    ("bilinear_nonfinite", "bilinear", False, 2, (1, 2, 6, 7)),
    ("bicubic_x2", "bicubic", False, 2, (1, 2, 5, 7)),
    ("bicubic_x3_batch2", "bicubic", False, 3, (2, 2, 7, 5)),
    ("bicubic_per_axis", "bicubic", False, (3, 2), (1, 3, 4, 7)),
    # Every tap is the one pixel, so each output is it times weights that sum to 1, rounded.
    ("bicubic_1x1_input", "bicubic", False, 2, (1, 2, 1, 1)),
    ("bicubic_align_corners_x2", "bicubic", True, 2, (1, 2, 5, 7)),
    ("bicubic_align_corners_per_axis", "bicubic", True, (1, 4), (1, 2, 6, 3)),
    ("bicubic_nonfinite", "bicubic", False, 2, (1, 2, 6, 7)),
]

UPSAMPLE_FIXTURES = FIXTURES / "upsample"


def case_1d(name, op, in_channels, out_channels, length, k, **options):
    """A 1-D case: `length` is the input's, every geometry value a plain integer."""
    spec = case(name, op, in_channels, out_channels, length, k, **options)
    for key in ("kernel_size", "stride", "dilation", "output_padding", "padding"):
        assert isinstance(spec[key], int) or spec[key] in ("same", "causal"), (name, key)
    assert spec["output_size"] is None or isinstance(spec["output_size"], int), name
    return spec


# `nn.Conv1d` (op "conv1d") and `nn.ConvTranspose1d` (op "convT1d") cases, written to
# `tests/fixtures/conv1d/<case>.json` and checked by `tests/parity_1d.rs`, which must name
# each with the same geometry (it checks).
CASES_1D = [
    # Causal (Keras'; in PyTorch an F.pad before the layer): a WaveNet layer, and a wider
    # kernel.
    case_1d("conv1d_wavenet_causal", "conv1d", 4, 4, 23, 2, dilation=4, padding="causal",
            batch=2),
    case_1d("conv1d_causal_k3_d2", "conv1d", 3, 5, 17, 3, dilation=2, padding="causal"),
    # "same" with an even, dilated kernel (the odd zero goes after).
    case_1d("conv1d_same_k4_d3", "conv1d", 2, 3, 19, 4, dilation=3, padding="same"),
    case_1d("conv1d_strided", "conv1d", 3, 4, 21, 5, stride=2, padding=2),
    # Groups: depthwise, and two groups without bias.
    case_1d("conv1d_groups_depthwise", "conv1d", 6, 6, 18, 3, dilation=2, padding=2,
            groups=6),
    case_1d("conv1d_groups2_nobias", "conv1d", 4, 6, 11, 3, padding=1, groups=2, bias=False),
    # Padding modes.
    case_1d("conv1d_reflect", "conv1d", 3, 4, 13, 3, dilation=2, padding=2,
            padding_mode="reflect"),
    case_1d("conv1d_circular_same", "conv1d", 2, 3, 9, 4, padding="same",
            padding_mode="circular"),
    case_1d("conv1d_replicate_strided", "conv1d", 2, 2, 10, 3, stride=2, padding=2,
            padding_mode="replicate"),
    # Transposed: x2 upsampling, dilation with output padding, groups, output_size.
    case_1d("convT1d_upsample2", "convT1d", 4, 3, 12, 4, stride=2, padding=1),
    case_1d("convT1d_dilated_output_padding", "convT1d", 3, 2, 7, 3, stride=3, dilation=2,
            padding=1, output_padding=2),
    case_1d("convT1d_groups2", "convT1d", 4, 6, 9, 2, stride=2, groups=2, batch=2),
    case_1d("convT1d_output_size", "convT1d", 3, 3, 8, 3, stride=2, padding=1,
            output_size=16),
]

CONV1D_FIXTURES = FIXTURES / "conv1d"


def pair(value):
    return [value, value] if isinstance(value, int) else list(value)


def format_float(value):
    """The shortest decimal that reads back, through f64, as exactly this f32 (even if the
    reader's f64 parse is off by an ulp); or "nan", "inf", "-inf" as JSON strings."""
    value = np.float32(value)
    if math.isnan(value):
        return '"nan"'
    if math.isinf(value):
        return '"inf"' if value > 0 else '"-inf"'
    text = str(value)
    wide = float(text)
    readbacks = [wide, np.nextafter(wide, math.inf), np.nextafter(wide, -math.inf)]
    if all(np.float32(r) == value for r in readbacks):
        return text
    # Exact in f64, so any reasonable reader gets it back.
    return repr(float(value))


def tensor(t):
    if t is None:
        return "null"
    t = t.detach().contiguous()
    assert t.dtype == torch.float32
    data = ",".join(format_float(v) for v in t.reshape(-1).tolist())
    return '{"shape":%s,"data":[%s]}' % (json.dumps(list(t.shape)), data)


def seed_of(name):
    return zlib.crc32(name.encode()) & 0x7FFF_FFFF


def make(spec):
    name, op = spec["name"], spec["op"]
    seed = seed_of(name)
    torch.manual_seed(seed)
    # Keras' "causal" padding is PyTorch's F.pad of the whole field before, then padding 0.
    causal = spec["padding"] == "causal"
    common = dict(kernel_size=spec["kernel_size"], stride=spec["stride"],
                  padding=0 if causal else spec["padding"], dilation=spec["dilation"], groups=spec["groups"],
                  bias=spec["bias"], dtype=torch.float32)
    if op == "conv":
        assert spec["output_padding"] == 0 and spec["output_size"] is None
        layer = torch.nn.Conv2d(spec["in_channels"], spec["out_channels"],
                                padding_mode=spec["padding_mode"], **common)
    else:
        assert spec["padding_mode"] == "zeros", "nn.ConvTranspose2d pads with zeros only"
        layer = torch.nn.ConvTranspose2d(spec["in_channels"], spec["out_channels"],
                                         output_padding=spec["output_padding"], **common)
    h, w = spec["input_hw"]
    x = torch.randn(spec["batch"], spec["in_channels"], h, w, dtype=torch.float32)
    if spec["nonfinite"]:
        # A NaN in a corner, and a +inf and a -inf close enough that some outputs see both.
        x[0, 0, 0, 1] = math.nan
        x[0, 0, h // 2, w // 2] = math.inf
        x[0, 1, h // 2 + 1, w // 2 + 1] = -math.inf
    x.requires_grad_(True)
    if op == "conv" and causal:
        assert spec["padding_mode"] == "zeros"
        y = layer(torch.nn.functional.pad(x, causal_pad(spec)))
    elif op == "conv":
        y = layer(x)
    else:
        y = layer(x, output_size=spec["output_size"])
    grad_output = torch.randn(y.shape, dtype=torch.float32)
    y.backward(grad_output)
    check_against_float64(layer, x.detach(), y.detach(), spec)

    padding = spec["padding"] if spec["padding"] in ("same", "causal") else pair(spec["padding"])
    head = {
        "case": name,
        "op": op,
        "in_channels": spec["in_channels"],
        "out_channels": spec["out_channels"],
        "kernel_size": pair(spec["kernel_size"]),
        "stride": pair(spec["stride"]),
        "padding": padding,
        "padding_mode": spec["padding_mode"],
        "dilation": pair(spec["dilation"]),
        "output_padding": pair(spec["output_padding"]),
        "groups": spec["groups"],
        "has_bias": spec["bias"],
        "output_size": None if spec["output_size"] is None else list(spec["output_size"]),
        "seed": seed,
        "generator": "tools/make_goldens.py, torch %s" % torch.__version__.split("+")[0],
    }
    lines = ["  %s: %s" % (json.dumps(k), json.dumps(v)) for k, v in head.items()]
    arrays = {
        "input": x,
        "weight": layer.weight,
        "bias": layer.bias,
        "output": y,
        "grad_output": grad_output,
        "grad_input": x.grad,
        "grad_weight": layer.weight.grad,
        "grad_bias": None if layer.bias is None else layer.bias.grad,
    }
    lines += ["  %s: %s" % (json.dumps(k), tensor(v)) for k, v in arrays.items()]
    return "{\n" + ",\n".join(lines) + "\n}\n"


def make_1d(spec):
    """One `nn.Conv1d` or `nn.ConvTranspose1d` fixture: `make`'s fields, 1-D."""
    name, op = spec["name"], spec["op"]
    seed = seed_of(name)
    torch.manual_seed(seed)
    causal = spec["padding"] == "causal"
    common = dict(kernel_size=spec["kernel_size"], stride=spec["stride"],
                  padding=0 if causal else spec["padding"], dilation=spec["dilation"],
                  groups=spec["groups"], bias=spec["bias"], dtype=torch.float32)
    if op == "conv1d":
        assert spec["output_padding"] == 0 and spec["output_size"] is None
        layer = torch.nn.Conv1d(spec["in_channels"], spec["out_channels"],
                                padding_mode=spec["padding_mode"], **common)
    else:
        assert op == "convT1d", op
        assert spec["padding_mode"] == "zeros", "nn.ConvTranspose1d pads with zeros only"
        assert not causal, "causal padding is a convolution's"
        layer = torch.nn.ConvTranspose1d(spec["in_channels"], spec["out_channels"],
                                         output_padding=spec["output_padding"], **common)
    assert not spec["nonfinite"], "no non-finite 1-D case"
    x = torch.randn(spec["batch"], spec["in_channels"], spec["input_hw"],
                    dtype=torch.float32)
    x.requires_grad_(True)
    if op == "conv1d" and causal:
        assert spec["padding_mode"] == "zeros"
        y = layer(torch.nn.functional.pad(x, causal_pad_1d(spec)))
    elif op == "conv1d":
        y = layer(x)
    else:
        output_size = None if spec["output_size"] is None else [spec["output_size"]]
        y = layer(x, output_size=output_size)
        if output_size is not None:
            assert list(y.shape[2:]) == output_size, (name, y.shape)
    grad_output = torch.randn(y.shape, dtype=torch.float32)
    y.backward(grad_output)
    check_against_float64(layer, x.detach(), y.detach(), spec)

    head = {
        "case": name,
        "op": op,
        "in_channels": spec["in_channels"],
        "out_channels": spec["out_channels"],
        "kernel_size": spec["kernel_size"],
        "stride": spec["stride"],
        "padding": spec["padding"],
        "padding_mode": spec["padding_mode"],
        "dilation": spec["dilation"],
        "output_padding": spec["output_padding"],
        "groups": spec["groups"],
        "has_bias": spec["bias"],
        "output_size": spec["output_size"],
        "seed": seed,
        "generator": "tools/make_goldens.py, torch %s" % torch.__version__.split("+")[0],
    }
    lines = ["  %s: %s" % (json.dumps(k), json.dumps(v)) for k, v in head.items()]
    arrays = {
        "input": x,
        "weight": layer.weight,
        "bias": layer.bias,
        "output": y,
        "grad_output": grad_output,
        "grad_input": x.grad,
        "grad_weight": layer.weight.grad,
        "grad_bias": None if layer.bias is None else layer.bias.grad,
    }
    lines += ["  %s: %s" % (json.dumps(k), tensor(v)) for k, v in arrays.items()]
    return "{\n" + ",\n".join(lines) + "\n}\n"


def make_upsample(name, mode, align_corners, scale_factor, shape):
    """One `nn.Upsample` fixture: the case, `op` "upsample", `mode`, `align_corners`
    (null for nearest), `scale_factor` as `[h, w]`, `seed`, and the standard normal
    `input` and its `output`."""
    seed = seed_of("upsample_" + name)
    torch.manual_seed(seed)
    layer = torch.nn.Upsample(scale_factor=scale_factor, mode=mode,
                              align_corners=align_corners)
    x = torch.randn(*shape, dtype=torch.float32)
    if name.endswith("nonfinite"):
        h, w = shape[2], shape[3]
        x[0, 0, 0, 1] = math.nan
        x[0, 0, h // 2, w // 2] = math.inf
        x[0, 1, h - 1, w - 1] = -math.inf
    y = layer(x)
    # The float32 output agrees with float64, NaN and infinities in the same places. For
    # bicubic this also pins down where an infinity becomes NaN: the weights have negative
    # lobes, so an infinity spreads as both signs, and next to the border, where the edge
    # pixel is repeated with weights of both signs, as inf - inf = NaN, in float64 alike.
    with torch.no_grad():
        y64 = layer(x.double())
    assert torch.equal(torch.isnan(y), torch.isnan(y64)), name
    finite = torch.isfinite(y64)
    assert torch.equal(y[~finite & ~torch.isnan(y64)].double(), y64[~finite & ~torch.isnan(y64)])
    difference = (y.double()[finite] - y64[finite]).abs() / y64[finite].abs().clamp(min=1)
    assert difference.numel() == 0 or difference.max() < 1e-5, (name, difference.max())
    if name.endswith("nonfinite"):
        assert torch.isnan(y).any() and torch.isposinf(y).any() and torch.isneginf(y).any(), name
    head = {
        "case": name,
        "op": "upsample",
        "mode": mode,
        "align_corners": align_corners,
        "scale_factor": pair(scale_factor),
        "seed": seed,
        "generator": "tools/make_goldens.py, torch %s" % torch.__version__.split("+")[0],
    }
    lines = ["  %s: %s" % (json.dumps(k), json.dumps(v)) for k, v in head.items()]
    lines += ["  %s: %s" % (json.dumps(k), tensor(v)) for k, v in
              {"input": x, "output": y}.items()]
    return "{\n" + ",\n".join(lines) + "\n}\n"


BATCH_NORM_FIXTURES = FIXTURES / "batch_norm"

# (name, op, in_channels, out_channels, input_hw, conv keyword arguments): a convolution
# followed by nn.BatchNorm2d in eval mode, with running statistics made by a few training
# steps on random batches (so they are not the defaults), then a non-trivial affine.
BATCH_NORM_CASES = [
    ("conv_bn", "conv", 3, 4, (7, 9), dict(kernel_size=3, padding=1, bias=False)),
    ("conv_bias_bn_dilated", "conv", 4, 5, (9, 8),
     dict(kernel_size=3, padding=2, dilation=2, bias=True)),
    ("convT_bn_groups", "convT", 4, 6, (5, 6),
     dict(kernel_size=4, stride=2, padding=1, groups=2, bias=True)),
    # nn.Conv1d then nn.BatchNorm1d: `input_hw` is the length.
    ("conv1d_bn_dilated", "conv1d", 3, 5, 19,
     dict(kernel_size=3, padding=2, dilation=2, bias=True)),
]


def make_batch_norm(name, op, in_channels, out_channels, input_hw, conv_args):
    """One conv + BatchNorm2d fixture: the conv's weight and bias, the batch norm's weight,
    bias, running_mean, running_var and eps, the input, the conv's output and the batch
    norm's output (eval mode)."""
    torch.manual_seed(seed_of(name))
    cls = {"conv": torch.nn.Conv2d, "convT": torch.nn.ConvTranspose2d,
           "conv1d": torch.nn.Conv1d}[op]
    layer = cls(in_channels, out_channels, **conv_args)
    norm = torch.nn.BatchNorm1d if op == "conv1d" else torch.nn.BatchNorm2d
    bn = norm(out_channels, eps=1e-3)
    size = (input_hw,) if op == "conv1d" else input_hw
    bn.train()
    with torch.no_grad():
        for _ in range(3):
            bn(layer(torch.randn(2, in_channels, *size)) * 3.0 + 1.0)
        bn.weight.copy_(torch.rand(out_channels) + 0.5)
        bn.bias.copy_(torch.randn(out_channels))
    bn.eval()
    x = torch.randn(2, in_channels, *size)
    with torch.no_grad():
        y = layer(x)
        z = bn(y)
    fields = {
        "case": json.dumps(name),
        "op": json.dumps(op),
        "groups": json.dumps(conv_args.get("groups", 1)),
        "eps": json.dumps(bn.eps),
        "input": tensor(x),
        "weight": tensor(layer.weight),
        "bias": tensor(layer.bias),
        "bn_weight": tensor(bn.weight),
        "bn_bias": tensor(bn.bias),
        "running_mean": tensor(bn.running_mean),
        "running_var": tensor(bn.running_var),
        "conv_output": tensor(y),
        "output": tensor(z),
    }
    return "{" + ",".join('"%s":%s' % item for item in fields.items()) + "}\n"


def write_all(directory, texts):
    """Writes `texts` (file stem -> JSON text) to `directory`, deleting any other `*.json`
    there; returns the total size in bytes."""
    directory.mkdir(parents=True, exist_ok=True)
    for stem, text in texts.items():
        (directory / (stem + ".json")).write_text(text)
    for stale in sorted(directory.glob("*.json")):
        if stale.stem not in texts:
            print("removing stale fixture", stale.name)
            stale.unlink()
    return sum(f.stat().st_size for f in directory.glob("*.json"))


def causal_pad(spec):
    """F.pad's (left, right, top, bottom) for causal padding: the whole receptive field but
    the output's own position, before."""
    (kh, kw), (dh, dw) = pair(spec["kernel_size"]), pair(spec["dilation"])
    return (dw * (kw - 1), 0, dh * (kh - 1), 0)


def causal_pad_1d(spec):
    """F.pad's (left, right) for 1-D causal padding."""
    return (spec["dilation"] * (spec["kernel_size"] - 1), 0)


def check_against_float64(layer, x, y, spec):
    """The float32 output agrees with a float64 evaluation, NaN and infinities included, so
    the fixture holds the mathematical result and not an artefact of one float32 path."""
    one_d = spec["op"] in ("conv1d", "convT1d")
    conv = torch.nn.functional.conv1d if one_d else torch.nn.functional.conv2d
    conv_transpose = (torch.nn.functional.conv_transpose1d if one_d
                      else torch.nn.functional.conv_transpose2d)
    is_conv = spec["op"] in ("conv", "conv1d")
    with torch.no_grad():
        x64 = x.double()
        w64, b64 = layer.weight.double(), None if layer.bias is None else layer.bias.double()
        if is_conv and spec["padding"] == "causal":
            pad = causal_pad_1d(spec) if one_d else causal_pad(spec)
            y64 = conv(torch.nn.functional.pad(x64, pad), w64, b64, layer.stride, 0,
                       layer.dilation, layer.groups)
        elif is_conv and spec["padding_mode"] != "zeros":
            # The module pads with its mode (`F.pad`) and then convolves without padding.
            y64 = layer._conv_forward(x64, w64, b64)
        elif is_conv:
            y64 = conv(x64, w64, b64, layer.stride, layer.padding, layer.dilation, layer.groups)
        else:
            output_size = spec["output_size"]
            if one_d and output_size is not None:
                output_size = [output_size]
            output_padding = layer._output_padding(x64, output_size, layer.stride,
                                                   layer.padding, layer.kernel_size,
                                                   1 if one_d else 2, layer.dilation)
            y64 = conv_transpose(x64, w64, b64, layer.stride, layer.padding, output_padding,
                                 layer.groups, layer.dilation)
    assert y64.shape == y.shape, (spec["name"], y64.shape, y.shape)
    y = y.double()
    assert torch.equal(torch.isnan(y), torch.isnan(y64)), spec["name"]
    finite = torch.isfinite(y64)
    assert torch.equal(y[~finite & ~torch.isnan(y64)], y64[~finite & ~torch.isnan(y64)])
    difference = (y[finite] - y64[finite]).abs() / y64[finite].abs().clamp(min=1)
    assert difference.numel() == 0 or difference.max() < 1e-5, (spec["name"], difference.max())
    if spec["nonfinite"]:
        assert torch.isnan(y).any() and torch.isposinf(y).any() and torch.isneginf(y).any()


def main():
    # PyTorch warns that an even "same" kernel pads a copy of the input; that is expected.
    warnings.filterwarnings("ignore", message="Using padding='same'")
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    names = [spec["name"] for spec in CASES]
    assert len(set(names)) == len(names), "duplicate case names"
    total = write_all(FIXTURES, {spec["name"]: make(spec) for spec in CASES})
    print("wrote %d fixtures to %s, %.1f kB" % (len(CASES), FIXTURES, total / 1000))
    names_1d = [spec["name"] for spec in CASES_1D]
    assert len(set(names_1d)) == len(names_1d), "duplicate 1-D case names"
    total = write_all(CONV1D_FIXTURES, {spec["name"]: make_1d(spec) for spec in CASES_1D})
    print("wrote %d fixtures to %s, %.1f kB" % (len(CASES_1D), CONV1D_FIXTURES, total / 1000))
    total = write_all(BATCH_NORM_FIXTURES,
                      {case[0]: make_batch_norm(*case) for case in BATCH_NORM_CASES})
    print("wrote %d fixtures to %s, %.1f kB" % (len(BATCH_NORM_CASES), BATCH_NORM_FIXTURES,
                                                 total / 1000))
    upsample_names = [case[0] for case in UPSAMPLE_CASES]
    assert len(set(upsample_names)) == len(upsample_names), "duplicate upsample case names"
    total = write_all(UPSAMPLE_FIXTURES, {case[0]: make_upsample(*case) for case in UPSAMPLE_CASES})
    print("wrote %d fixtures to %s, %.1f kB" % (len(UPSAMPLE_CASES), UPSAMPLE_FIXTURES,
                                                 total / 1000))


if __name__ == "__main__":
    main()
