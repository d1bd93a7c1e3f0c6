#!/usr/bin/env python3
"""Writes the safetensors fixtures that `tests/state_dict.rs` loads: a small model's
`state_dict()` saved with `safetensors.torch.save_file`, as PyTorch users save theirs.

Run from the repository root with a Python that has torch and safetensors (never in CI; the
fixtures are committed):

    ~/venv/bin/pip install safetensors
    ~/venv/bin/python tools/make_state_dict.py

The model is `encoder.conv` (Conv2d 3 -> 4, k=3, dilation 2, padding 2, no bias),
`encoder.bn` (BatchNorm2d(4), eval mode, trained running statistics), `encoder.depthwise`
(Conv2d 4 -> 4, groups 4, k=3, padding 1) and `decoder.up` (ConvTranspose2d 4 -> 2, k=2,
stride 2). For each dtype (float32, float16, bfloat16) it writes `model_<dtype>.safetensors`
(the state_dict in that dtype) and `model_<dtype>.json`: an input and the model's output
computed in float32 with the weights rounded to that dtype, which the Rust side must
reproduce after converting the tensors to f32 on load.
"""

import json
import pathlib

import torch
from safetensors.torch import save_file

OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "state_dict"


class Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = torch.nn.Module()
        self.encoder.conv = torch.nn.Conv2d(3, 4, 3, dilation=2, padding=2, bias=False)
        self.encoder.bn = torch.nn.BatchNorm2d(4)
        self.encoder.depthwise = torch.nn.Conv2d(4, 4, 3, padding=1, groups=4)
        self.decoder = torch.nn.Module()
        self.decoder.up = torch.nn.ConvTranspose2d(4, 2, 2, stride=2)

    def forward(self, x):
        x = self.encoder.bn(self.encoder.conv(x))
        return self.decoder.up(self.encoder.depthwise(x))


def tensor(t):
    t = t.detach().contiguous().float()
    return {"shape": list(t.shape), "data": [float(v) for v in t.reshape(-1).tolist()]}


def main():
    torch.manual_seed(20261203)
    torch.set_num_threads(1)
    model = Model()
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(2, 3, 8, 8) * 2.0 + 0.5)
        model.encoder.bn.weight.copy_(torch.rand(4) + 0.5)
        model.encoder.bn.bias.copy_(torch.randn(4))
    model.eval()
    x = torch.randn(1, 3, 9, 10)
    OUT.mkdir(parents=True, exist_ok=True)
    for name, dtype in [("f32", torch.float32), ("f16", torch.float16), ("bf16", torch.bfloat16)]:
        # Integer buffers (num_batches_tracked) keep their dtype, as in a real state_dict.
        state = {k: v.to(dtype) if v.is_floating_point() else v
                 for k, v in model.state_dict().items()}
        save_file(state, str(OUT / f"model_{name}.safetensors"))
        rounded = Model()
        rounded.load_state_dict({k: v.float() if v.is_floating_point() else v
                                 for k, v in state.items()})
        rounded.eval()
        with torch.no_grad():
            y = rounded(x)
        (OUT / f"model_{name}.json").write_text(json.dumps({"case": f"model_{name}", "input": tensor(x), "output": tensor(y)}))
    print("wrote", sorted(p.name for p in OUT.iterdir()))


if __name__ == "__main__":
    main()
