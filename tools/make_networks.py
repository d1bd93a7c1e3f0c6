#!/usr/bin/env python3
"""Writes the weights and fixtures of the two ported networks (`tools/networks.py`) into
`tests/fixtures/networks/`, for `examples/fsrcnn`, `examples/unet` and `tests/networks.rs`.

Run from the repository root with a Python that has torch and safetensors (never in CI; the
files are committed):

    ~/venv/bin/python tools/make_networks.py

- `fsrcnn.safetensors`: FSRCNN x3 trained for a few minutes on the demo's built-in picture
  (drawn by `cargo run --release --example scene`), each colour channel a separate
  one-channel image: low resolution by 3x3 box averaging (as the demo halves by 2x2),
  patches from the left three quarters only, so that the right quarter stays unseen for
  the example's PSNR. float32.
- `unet.safetensors`: the dilated U-Net with random weights and batch-norm statistics
  gathered in training mode on random batches, then randomised scales and shifts, so that
  folding does real work. Saved as float16 (half the size; the Rust loader converts to f32).
- `fsrcnn_case.safetensors`, `unet_case.safetensors`: an `input` cut from the picture and
  PyTorch's eval-mode `output` for it (computed with the weights as saved, f16 included),
  which `tests/networks.rs` must reproduce.
"""

import math
import pathlib
import subprocess
import tempfile
import time

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from networks import DilatedUNet, Fsrcnn

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "networks"
SCALE = 3


def scene():
    """The demo's picture, `[3, h, w]` in [0, 1], exactly as the Rust side draws it."""
    with tempfile.TemporaryDirectory() as directory:
        path = pathlib.Path(directory) / "scene.safetensors"
        subprocess.run(["cargo", "run", "--quiet", "--release", "--example", "scene", "--",
                        str(path)], cwd=ROOT, check=True)
        return load_file(path)["picture"]


def degrade(high):
    """Crops `[..., h, w]` to multiples of 3 and averages 3x3 blocks: (high, low)."""
    h, w = high.shape[-2] // SCALE * SCALE, high.shape[-1] // SCALE * SCALE
    high = high[..., :h, :w]
    return high, F.avg_pool2d(high.unsqueeze(0), SCALE).squeeze(0)


def psnr(estimate, truth):
    mse = ((estimate.clamp(0, 1) - truth) ** 2).mean().item()
    return 10 * math.log10(1 / max(mse, 1e-12))


def train_fsrcnn(high, low, steps=6000, batch=32, patch=16):
    """Adam on random patches of the left three quarters of `low` (one channel each)."""
    torch.manual_seed(20261204)
    model = Fsrcnn()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, steps)
    channels, lh, lw = low.shape
    train_w = lw * 3 // 4
    start = time.time()
    for step in range(steps):
        c = torch.randint(channels, (batch,))
        y = torch.randint(lh - patch + 1, (batch,))
        x = torch.randint(train_w - patch + 1, (batch,))
        inputs = torch.stack([low[c[i], y[i]:y[i] + patch, x[i]:x[i] + patch]
                              for i in range(batch)]).unsqueeze(1)
        targets = torch.stack([
            high[c[i], SCALE * y[i]:SCALE * (y[i] + patch), SCALE * x[i]:SCALE * (x[i] + patch)]
            for i in range(batch)]).unsqueeze(1)
        loss = F.mse_loss(model(inputs), targets)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        if step % 200 == 0 or step == steps - 1:
            print(f"  step {step:5d}  loss {loss.item():.5f}  {time.time() - start:.0f} s")
    return model.eval()


def held_out_scores(model, high, low):
    """PSNR of bicubic and of `model` on the right quarter of the picture."""
    with torch.no_grad():
        learned = model(low.unsqueeze(1)).squeeze(1)
        bicubic = F.interpolate(low.unsqueeze(0), scale_factor=SCALE, mode="bicubic",
                                align_corners=False).squeeze(0)
    left = high.shape[-1] * 3 // 4 // SCALE * SCALE
    region = (..., slice(left, None))
    return psnr(bicubic[region], high[region]), psnr(learned[region], high[region])


def random_unet():
    torch.manual_seed(20261205)
    model = DilatedUNet()
    model.train()
    with torch.no_grad():
        for _ in range(4):
            model(torch.rand(2, 3, 32, 32) * 2.0 - 0.5)
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.copy_(torch.rand_like(module.weight) + 0.5)
                module.bias.copy_(torch.randn_like(module.bias) * 0.2)
    return model.eval()


def to_half(model):
    """The model's weights rounded to float16 and back, as a user who saved in half
    precision and loads in float32 has them."""
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(tensor.half().float())
    return model


def save_case(model, name, x):
    with torch.no_grad():
        y = model(x)
        y64 = model.double()(x.double())
    model.float()
    error = ((y.double() - y64).abs() / y64.abs().clamp(min=1)).max().item()
    print(f"  {name}: output {list(y.shape)}, float32 against float64: {error:.1e}")
    save_file({"input": x.contiguous(), "output": y.contiguous()},
              OUT / f"{name}_case.safetensors")


def main():
    torch.set_num_threads(2)
    OUT.mkdir(parents=True, exist_ok=True)
    high, low = degrade(scene())

    print("FSRCNN x3, trained on the left three quarters of the demo's picture:")
    fsrcnn = train_fsrcnn(high, low)
    bicubic, learned = held_out_scores(fsrcnn, high, low)
    print(f"  held-out PSNR: bicubic {bicubic:.2f} dB, FSRCNN {learned:.2f} dB")
    save_file({k: v.contiguous() for k, v in fsrcnn.state_dict().items()},
              OUT / "fsrcnn.safetensors")
    # A crop of the real picture, 20 x 24 low-resolution pixels, from the held-out quarter.
    save_case(fsrcnn, "fsrcnn", low[1:2, 40:60, 130:154].unsqueeze(0).clone())

    print("dilated U-Net, random weights, saved as float16:")
    unet = to_half(random_unet())
    save_file({k: (v.half() if v.is_floating_point() else v).contiguous()
               for k, v in unet.state_dict().items()}, OUT / "unet.safetensors")
    save_case(unet, "unet", high[:, 100:164, 200:264].unsqueeze(0).clone())


if __name__ == "__main__":
    main()
