#!/usr/bin/env python3
"""Runs one of the ported networks (`tools/networks.py`) in PyTorch on the input the Rust
example hands it, for the side-by-side comparison `examples/fsrcnn` and `examples/unet`
print when given `--python PATH`:

    python tools/peer_networks.py NET WEIGHTS INPUT OUTPUT THREADS RUNS

loads `NET` ("fsrcnn" or "unet") from the `WEIGHTS` safetensors file, runs it in eval mode
under `torch.no_grad()` on the tensor `input` of the `INPUT` safetensors file with `THREADS`
intra-op threads, `RUNS` timed runs after two warm-up runs, writes its `output` to `OUTPUT`,
and prints one line: `median_ms <milliseconds per call> torch <version> threads <n>`.
"""

import statistics
import sys
import time

import torch
from safetensors.torch import load_file, save_file

from networks import NETWORKS


def main():
    net, weights, input_path, output_path, threads, runs = sys.argv[1:7]
    torch.set_num_threads(int(threads))
    model = NETWORKS[net]()
    model.load_state_dict(load_file(weights))
    model.eval()
    x = load_file(input_path)["input"]
    times = []
    with torch.no_grad():
        for _ in range(2):
            y = model(x)
        for _ in range(int(runs)):
            start = time.perf_counter()
            y = model(x)
            times.append(time.perf_counter() - start)
    save_file({"output": y.contiguous()}, output_path)
    version = torch.__version__.split("+")[0]
    print(f"median_ms {statistics.median(times) * 1e3:.4f} torch {version} "
          f"threads {torch.get_num_threads()}")


if __name__ == "__main__":
    main()
