#!/usr/bin/env python3
"""Times a WaveNet-sized stack of causal dilated Conv1d layers in convgen and PyTorch.

The stack is the one in `benches/wavenet.rs`: 64 channels in and out, batch 1, a sequence of
16000 samples, ten `Conv1d` layers with k = 2, causal padding and dilations 1, 2, 4, ..., 512
(a receptive field of 1024 samples), applied one after the other with nothing between them.

Needs a Python with numpy and torch, and `cargo` on the PATH unless `--skip-rust` is given.
Run from anywhere, e.g.:

    ~/venv/bin/python tools/peer_wavenet.py
    ~/venv/bin/python tools/peer_wavenet.py --quick --threads 1
    ~/venv/bin/python tools/peer_wavenet.py --skip-rust        # reuse the last cargo bench

Options: `--skip-rust` (do not run the Rust benchmark; read the results criterion left from
its last run), `--quick` (fewer timed runs in PyTorch; criterion is run as it is),
`--threads 1|all|both` (default both; the backward pass is only timed at one thread).

convgen is timed by `cargo bench --bench wavenet -- --noplot`, run from the repository root
with RAYON_NUM_THREADS removed from its environment (CARGO_TARGET_DIR and other cargo
settings come from the environment). Its times are the medians criterion writes to
`<target>/criterion/wavenet/<id>/new/estimates.json` for "forward/1-thread",
"forward/<N>-threads" (N = all threads, only when N > 1) and "backward/1-thread"; criterion
turns the "/" in an id into "_" in the directory name (`forward_1-thread`), so the
directories are found through the ids criterion records in `new/benchmark.json`.
PyTorch is timed afterwards, never at the same time as Rust:

* forward: `nn.Conv1d(64, 64, 2, dilation=d, bias=True)` on `F.pad(x, ((2 - 1) * d, 0))`
  for each layer, under `torch.inference_mode()`, with `torch.set_num_threads(n)`; every
  output is allocated per call, as in convgen.
* backward (one thread): a training-mode forward through the stack keeps the autograd
  graph, then `out.backward(grad_output, retain_graph=True)` computes the input, weight and
  bias gradients of every layer (and of the stack's input). The gradients are set to None
  before each call, outside the timed region, so every call allocates them as convgen does;
  only the backward call is timed.

Each PyTorch timing is a warm-up call, then the median of repeated calls (about two seconds
per timing, 0.25 s with `--quick`; at least 10 runs, 3 with `--quick`). Inputs, weights and
output gradients are float32, drawn from seeded numpy generators (weights uniform in PyTorch's
default bound 1 / sqrt(fan_in)); they are not convgen's numbers, which does not matter for
timing.

Columns of the table:

* pass: forward (inference) or backward (input, weight and bias gradients of all layers).
* threads: the thread count (torch.set_num_threads / the Rust thread pool).
* convgen ms, PyTorch ms: median milliseconds for the whole ten-layer stack.
* PyTorch/convgen: PyTorch's time over ours (above 1: convgen is faster).
* convgen GF/s, PyTorch GF/s: 2 * 64 * 64 * 2 * 16000 * 10 flops per forward pass (the
  taps that fall in the causal padding are counted as flops, for simplicity), twice that per
  backward pass (the input and the weight gradients each take the forward's multiply-adds;
  the bias gradient is not counted), over the time.
"""

import argparse
import json
import math
import os
import pathlib
import re
import statistics
import subprocess
import sys
import time

# The table's formatting, shared with the suite's script beside this one.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from peer_suite import fmt_ms, fmt_ratio  # noqa: E402

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
GROUP = "wavenet"

CHANNELS = 64
LENGTH = 16000
KERNEL = 2
DILATIONS = [2 ** i for i in range(10)]
RECEPTIVE_FIELD = 1 + sum((KERNEL - 1) * d for d in DILATIONS)
# Two flops per multiply-add, every output times every tap (padded taps included).
FORWARD_FLOPS = 2 * CHANNELS * CHANNELS * KERNEL * LENGTH * len(DILATIONS)
BACKWARD_FLOPS = 2 * FORWARD_FLOPS


def all_threads():
    """The number of cores this process may run on (what Rust's available_parallelism sees)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def cpu_model():
    """The CPU's model name from /proc/cpuinfo, or what the platform module says."""
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform
    return platform.processor() or "unknown CPU"


def median_ms(call, quick, setup=None):
    """Median time of `call` in milliseconds after a warm-up; `setup` (if given) runs before
    every call, outside the timed region."""
    def timed():
        if setup is not None:
            setup()
        start = time.perf_counter()
        call()
        return time.perf_counter() - start

    timed()
    once = max(timed(), 1e-6)
    least, budget = (3, 0.25) if quick else (10, 2.0)
    runs = min(max(int(budget / once), least), 2000)
    return statistics.median(timed() for _ in range(runs)) * 1e3


def target_dir():
    """Cargo's target directory: CARGO_TARGET_DIR (relative to the repository root, where
    cargo runs) or `<repo>/target`."""
    configured = os.environ.get("CARGO_TARGET_DIR")
    return ROOT / configured if configured else ROOT / "target"


def run_rust():
    """Runs the criterion benchmark; its results are read by `read_rust`."""
    command = ["cargo", "bench", "--bench", "wavenet", "--", "--noplot"]
    environment = {key: value for key, value in os.environ.items()
                   if key != "RAYON_NUM_THREADS"}
    print("running:", " ".join(command), f"(in {ROOT})", file=sys.stderr)
    # Criterion's report goes to stderr with cargo's, so the table stays alone on stdout.
    result = subprocess.run(command, cwd=ROOT, env=environment, stdout=sys.stderr)
    if result.returncode != 0:
        sys.exit(f"the Rust benchmark failed (exit code {result.returncode})")


def read_rust(since=None):
    """convgen's median times from criterion: {function id: ms}, e.g. "forward/1-thread".

    Criterion names a benchmark's directory after its id with "/" (and other characters a
    file name should not hold) turned into "_", so the ids are read from the
    `new/benchmark.json` it writes beside each `new/estimates.json`; a directory without one
    is taken by its name, `forward_1-thread` as "forward/1-thread". `since` (a time stamp)
    warns about results older than the benchmark run that should have written them."""
    group_dir = target_dir() / "criterion" / GROUP
    times = {}
    if not group_dir.is_dir():
        return times
    for estimates in sorted(group_dir.glob("**/new/estimates.json")):
        directory = estimates.parent.parent
        record = estimates.parent / "benchmark.json"
        try:
            function_id = json.loads(record.read_text())["function_id"]
        except (OSError, ValueError, KeyError):
            relative = directory.relative_to(group_dir).as_posix()
            function_id = re.sub(r"^(forward|backward)[_/]", r"\1/", relative)
        if since is not None and estimates.stat().st_mtime < since:
            print(f"warning: {estimates} predates this run; is {function_id!r} still in the "
                  "benchmark?", file=sys.stderr)
        median = json.loads(estimates.read_text())["median"]["point_estimate"]
        times[function_id] = median / 1e6
    return times


def rust_threads(times, threads):
    """The id of convgen's forward pass at `threads` threads (several threads: any
    "forward/<N>-threads" if that exact one is missing, with a warning) and its thread count."""
    if threads == 1:
        return ("forward/1-thread", 1) if "forward/1-thread" in times else (None, None)
    wanted = f"forward/{threads}-threads"
    if wanted in times:
        return wanted, threads
    others = sorted((int(match.group(1)), key) for key in times
                    if (match := re.fullmatch(r"forward/(\d+)-threads", key)))
    if not others:
        return None, None
    count, key = others[-1]
    print(f"warning: no {wanted!r} from criterion; using {key!r} (a run on another machine "
          "or with another thread count?)", file=sys.stderr)
    return key, count


def make_weights():
    """Each layer's weight [64, 64, 2] and bias [64], uniform in PyTorch's default bound."""
    rng = np.random.default_rng(1)
    bound = 1.0 / math.sqrt(CHANNELS * KERNEL)
    return [(rng.uniform(-bound, bound, (CHANNELS, CHANNELS, KERNEL)).astype(np.float32),
             rng.uniform(-bound, bound, CHANNELS).astype(np.float32))
            for _ in DILATIONS]


def torch_stack(torch):
    layers = []
    for dilation, (weight, bias) in zip(DILATIONS, make_weights()):
        layer = torch.nn.Conv1d(CHANNELS, CHANNELS, KERNEL, dilation=dilation, bias=True)
        with torch.no_grad():
            layer.weight.copy_(torch.from_numpy(weight))
            layer.bias.copy_(torch.from_numpy(bias))
        layers.append((dilation, layer))
    return layers


def torch_forward(torch, layers, x):
    """The stack: each layer on its input padded causally ((k - 1) * d zeros on the left)."""
    pad = torch.nn.functional.pad
    for dilation, layer in layers:
        x = layer(pad(x, ((KERNEL - 1) * dilation, 0)))
    return x


def make_input():
    return np.random.default_rng(2).standard_normal((1, CHANNELS, LENGTH), dtype=np.float32)


def time_torch_forward(torch, threads, quick):
    torch.set_num_threads(threads)
    layers = torch_stack(torch)
    for _, layer in layers:
        layer.eval()
    x = torch.from_numpy(make_input())
    with torch.inference_mode():
        out = torch_forward(torch, layers, x)
        if tuple(out.shape) != (1, CHANNELS, LENGTH):
            sys.exit(f"the PyTorch stack's output is {tuple(out.shape)}, not "
                     f"{(1, CHANNELS, LENGTH)}")
        return median_ms(lambda: torch_forward(torch, layers, x), quick)


def time_torch_backward(torch, threads, quick):
    """Median ms of `out.backward(grad_output)` through the whole stack: input, weight and
    bias gradients of every layer (and the stack's input gradient), the graph kept."""
    torch.set_num_threads(threads)
    layers = torch_stack(torch)
    parameters = []
    for _, layer in layers:
        layer.train()
        parameters += list(layer.parameters())
    x = torch.from_numpy(make_input()).requires_grad_(True)
    with torch.enable_grad():
        out = torch_forward(torch, layers, x)
    rng = np.random.default_rng(3)
    grad_output = torch.from_numpy(rng.standard_normal(tuple(out.shape), dtype=np.float32))

    def clear():
        x.grad = None
        for parameter in parameters:
            parameter.grad = None

    def backward():
        out.backward(grad_output, retain_graph=True)

    ms = median_ms(backward, quick, setup=clear)
    missing = [tensor for tensor in [x, *parameters] if tensor.grad is None]
    if missing:
        sys.exit(f"the PyTorch backward left {len(missing)} gradients unset")
    return ms


def fmt_gflops(flops, value):
    return "-" if value is None else f"{flops / value / 1e6:.1f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="fewer timed runs in PyTorch (criterion runs as it is)")
    parser.add_argument("--threads", choices=["1", "all", "both"], default="both",
                        help="forward thread counts to time (default both); the backward "
                             "pass is timed at one thread when 1 is among them")
    parser.add_argument("--skip-rust", action="store_true",
                        help="do not run cargo bench; read criterion's last results")
    args = parser.parse_args()

    most = all_threads()
    thread_counts = {"1": [1], "all": [most], "both": sorted({1, most})}[args.threads]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None

    started = None
    if not args.skip_rust:
        started = time.time()
        run_rust()
    ours = read_rust(since=started)
    if not ours:
        print(f"warning: no criterion results under {target_dir() / 'criterion' / GROUP}; "
              "run without --skip-rust", file=sys.stderr)

    import torch

    # (pass, threads, convgen ms, PyTorch ms, flops)
    rows = []
    for threads in thread_counts:
        key, rust_count = rust_threads(ours, threads)
        if key is not None and rust_count != threads:
            print(f"warning: convgen's forward at {rust_count} threads is set beside "
                  f"PyTorch's at {threads}", file=sys.stderr)
        elif key is None and ours:
            print(f"warning: criterion has no forward at {threads} thread(s)", file=sys.stderr)
        theirs = time_torch_forward(torch, threads, args.quick)
        rows.append(("forward", threads, ours.get(key), theirs, FORWARD_FLOPS))
        print(f"timed the PyTorch forward at {threads} thread(s)", file=sys.stderr)
    if 1 in thread_counts:
        theirs = time_torch_backward(torch, 1, args.quick)
        rows.append(("backward", 1, ours.get("backward/1-thread"), theirs, BACKWARD_FLOPS))
        print("timed the PyTorch backward at 1 thread", file=sys.stderr)

    print(f"machine: {cpu_model()}, {os.cpu_count()} logical CPUs ({most} available to "
          "this process)")
    print(f"PyTorch {torch.__version__}, numpy {np.__version__}")
    print(f"stack: {len(DILATIONS)} Conv1d layers, {CHANNELS} -> {CHANNELS} channels, k = "
          f"{KERNEL}, causal, dilations {DILATIONS[0]}..{DILATIONS[-1]}, batch 1, length "
          f"{LENGTH}, f32 with bias; receptive field {RECEPTIVE_FIELD} samples")
    print(f"flops: {FORWARD_FLOPS / 1e9:.3f} GFLOP per forward (2 * {CHANNELS} * {CHANNELS} * "
          f"{KERNEL} * {LENGTH} * {len(DILATIONS)}; taps in the causal padding counted as "
          f"flops for simplicity), {BACKWARD_FLOPS / 1e9:.3f} per backward (input and weight "
          "gradients; bias not counted)")
    print("ms for the whole stack (median; convgen: criterion, PyTorch: "
          f"{'quick ' if args.quick else ''}warm-up then repeated calls); "
          "PyTorch/convgen above 1 means convgen is faster")
    if load is not None and load > 0.5:
        print(f"the machine was busy before the run (load average {load:.1f} on {most} "
              "cores): times are noisy, multi-threaded ones most")
    print()
    header = ["pass", "threads", "convgen ms", "PyTorch ms", "PyTorch/convgen",
              "convgen GF/s", "PyTorch GF/s"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for name, threads, mine, theirs, flops in rows:
        cells = [name, str(threads), fmt_ms(mine), fmt_ms(theirs), fmt_ratio(theirs, mine),
                 fmt_gflops(flops, mine), fmt_gflops(flops, theirs)]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
