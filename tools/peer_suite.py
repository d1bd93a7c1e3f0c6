#!/usr/bin/env python3
"""Times the benchmark suite in convgen, PyTorch and onnxruntime side by side.

Needs a Python with numpy and, for the peers, torch and/or onnxruntime; onnxruntime also
needs the `onnx` package (its models are built with `onnx.helper`). A peer that cannot be
imported is reported and left out. Our numbers come from the Rust suite example, so `cargo`
must be on the PATH unless `--skip-rust` is given. Run from anywhere, e.g.:

    /work/venv-torch/bin/pip install onnxruntime onnx   # once, into the venv, never the repo
    /work/venv-torch/bin/python tools/peer_suite.py
    /work/venv-torch/bin/python tools/peer_suite.py --quick --only unet-enc --threads 1

Options: `--backward` (also the backward pass, against PyTorch's), `--quick` (fewer timed
runs, here and in Rust), `--only NAME` (one case), `--rounds N` (default 5, see below),
`--threads 1|all|both` (default both), `--skip-rust` (peers only), `--suite PATH`
(default `../shared/bench-suite.json` beside the repository).

The suite is read from `bench-suite.json`. Case by case, convgen is timed by
`cargo run --release --example suite -- --json --only NAME`, which measures the case at one
thread and at all threads (CARGO_TARGET_DIR and other cargo settings come from the
environment), and then the peers, one after the other, never at the same time as Rust:

* PyTorch: `nn.Conv2d` / `nn.ConvTranspose2d` with bias, under `torch.inference_mode()`,
  with `torch.set_num_threads(n)`; the output is allocated per call, as in convgen.
* onnxruntime: a one-node Conv / ConvTranspose model with the same weights, built with
  `onnx.helper`, run with `intra_op_num_threads = n` through IOBinding with a reused output
  buffer (as in `peer-baseline.md`). Its output is checked against PyTorch's once.

With `--backward`, the backward pass is timed too: ours is `layer.backward(x, grad_output)`
(input, weight and bias gradients), PyTorch's is `torch.ops.aten.convolution_backward` with
all three outputs, what autograd calls for a convolution (onnxruntime has no backward).

Each timing is a warm-up call, then the median of repeated calls (about a quarter of a
second per case, 0.05 s with `--quick`, at least 5 and at most 2000 runs), as in
`examples/suite.rs`. The suite is timed in `--rounds` rounds, each taking every case in
turn with convgen and then each peer one after another, and each contestant's time is the
fastest of its rounds' medians: on a shared machine whose speed drifts by a tenth within
minutes and whose second core is now and then taken for seconds, timing every case of
convgen first and the peers a minute later compared different machines, and one slow
stretch decided a ratio; rounds spread over the run, each contestant beside the others in
every round, give every contestant the same chances. Five rounds, not three, since a
machine drifted by far more: on an Intel Xeon (model 207, 2026-12-07), of 25 medians of
convgen's sr-x3 backward over two minutes the fastest was 0.96 ms and the median 1.59, 8 of
PyTorch's ranged 1.18 to 1.72 ms, and with three rounds a contestant's slow stretch still
decided ratios run to run (0.85x to 1.06x for that case in three runs).

GFLOP/s count two flops per multiply-add that touches real data (taps in the padding
excluded), the same count as `Case::useful_flops` in `src/suite.rs`, for every column;
"peer/ours" is the peer's time over ours (above 1: convgen is faster).
"""

import argparse
import json
import math
import os
import pathlib
import statistics
import subprocess
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
DEFAULT_SUITE = ROOT.parent / "shared" / "bench-suite.json"


def all_threads():
    """The number of cores this process may run on (what Rust's available_parallelism sees)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def output_hw(case):
    """The output's spatial size, as PyTorch computes it."""
    k, s, p, d, op = case["k"], case["stride"], case["pad"], case["dil"], case["opad"]
    if case["op"] == "conv":
        return tuple((n + 2 * p - d * (k - 1) - 1) // s + 1 for n in (case["h"], case["w"]))
    return tuple((n - 1) * s - 2 * p + d * (k - 1) + op + 1 for n in (case["h"], case["w"]))


def useful_flops(case):
    """Two flops per multiply-add that touches real data, as `Case::useful_flops`."""
    k, s, p, d = case["k"], case["stride"], case["pad"], case["dil"]
    out = output_hw(case)

    def taps(size, out_size):
        if case["op"] == "conv":
            # Output o reads input o * s + t * d - p.
            return sum(1 for o in range(out_size) for t in range(k)
                       if 0 <= o * s + t * d - p < size)
        # Input i writes output i * s + t * d - p.
        return sum(1 for i in range(size) for t in range(k)
                   if 0 <= i * s + t * d - p < out_size)

    pairs = taps(case["h"], out[0]) * taps(case["w"], out[1])
    return 2.0 * case["n"] * case["cout"] * (case["cin"] // case["groups"]) * pairs


def median_ms(call, quick):
    """Median time of `call` in milliseconds after a warm-up, as `median_time` in Rust."""
    call()
    start = time.perf_counter()
    call()
    once = max(time.perf_counter() - start, 1e-6)
    runs = min(max(int((0.05 if quick else 0.25) / once), 5), 2000)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def run_rust(args, name):
    """convgen's times of case `name` from the Rust suite: {(pass, name, threads): (ms,
    flops)}."""
    command = ["cargo", "run", "--quiet", "--release", "--example", "suite", "--", "--json",
               "--only", name]
    if args.backward:
        command.append("--backward")
    if args.quick:
        command.append("--quick")
    result = subprocess.run(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    if result.returncode != 0:
        sys.exit(f"the Rust suite failed (exit code {result.returncode})")
    times = {}
    for line in result.stdout.splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            key = (record.get("pass", "forward"), record["name"], record["threads"])
            times[key] = (record["ms"], record["flops"])
    return times


def import_peers():
    """The importable peers' modules, reporting the missing ones."""
    peers = {}
    try:
        import torch
        peers["torch"] = torch
    except ImportError as error:
        print(f"PyTorch is not importable ({error}); leaving it out", file=sys.stderr)
    try:
        import onnx
        import onnxruntime
        peers["ort"] = (onnx, onnxruntime)
    except ImportError as error:
        print(f"onnxruntime and onnx are needed ({error}); leaving onnxruntime out",
              file=sys.stderr)
    return peers


def make_input(case):
    rng = np.random.default_rng(2)
    shape = (case["n"], case["cin"], case["h"], case["w"])
    return rng.standard_normal(shape, dtype=np.float32)


def make_weights(case):
    """Weight and bias in PyTorch's layouts, uniform in the bound of PyTorch's default
    initialisation (1 / sqrt(fan_in)); fixed, so every peer and thread count sees the same."""
    k, groups = case["k"], case["groups"]
    if case["op"] == "conv":
        shape = (case["cout"], case["cin"] // groups, k, k)
    else:
        shape = (case["cin"], case["cout"] // groups, k, k)
    fan_in = shape[1] * k * k
    bound = 1.0 / math.sqrt(fan_in)
    rng = np.random.default_rng(1)
    weight = rng.uniform(-bound, bound, shape).astype(np.float32)
    bias = rng.uniform(-bound, bound, case["cout"]).astype(np.float32)
    return weight, bias


def torch_layer(torch, case, weight, bias):
    kind = torch.nn.Conv2d if case["op"] == "conv" else torch.nn.ConvTranspose2d
    extra = {} if case["op"] == "conv" else {"output_padding": case["opad"]}
    layer = kind(case["cin"], case["cout"], case["k"], stride=case["stride"],
                 padding=case["pad"], dilation=case["dil"], groups=case["groups"], bias=True,
                 **extra)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(weight))
        layer.bias.copy_(torch.from_numpy(bias))
    return layer.eval()


def time_torch(torch, case, x, weight, bias, threads, quick):
    """Median ms per call and the output (for the onnxruntime check)."""
    torch.set_num_threads(threads)
    layer = torch_layer(torch, case, weight, bias)
    x = torch.from_numpy(x)
    with torch.inference_mode():
        output = layer(x).numpy()
        return median_ms(lambda: layer(x), quick), output


def time_torch_backward(torch, case, x, weight, bias, threads, quick):
    """Median ms of PyTorch's convolution backward: input, weight and bias gradients from
    one output gradient, as autograd computes them for `nn.Conv2d` / `nn.ConvTranspose2d`."""
    torch.set_num_threads(threads)
    x, weight = torch.from_numpy(x), torch.from_numpy(weight)
    transposed = case["op"] != "conv"
    stride, padding, dilation = ([case[key]] * 2 for key in ("stride", "pad", "dil"))
    output_padding = [case["opad"]] * 2 if transposed else [0, 0]
    with torch.no_grad():
        output = torch.ops.aten.convolution(x, weight, torch.from_numpy(bias), stride, padding,
                                            dilation, transposed, output_padding,
                                            case["groups"])
        grad_output = torch.randn(output.shape)

        def backward():
            torch.ops.aten.convolution_backward(
                grad_output, x, weight, [case["cout"]], stride, padding, dilation, transposed,
                output_padding, case["groups"], [True, True, True])

        return median_ms(backward, quick)


def onnx_model(onnx, case, weight, bias):
    """A one-node Conv / ConvTranspose model with the given weights."""
    helper, TensorProto = onnx.helper, onnx.TensorProto
    k, s, p, d = case["k"], case["stride"], case["pad"], case["dil"]
    attributes = dict(kernel_shape=[k, k], strides=[s, s], pads=[p, p, p, p],
                      dilations=[d, d], group=case["groups"])
    if case["op"] == "conv":
        node = helper.make_node("Conv", ["x", "w", "b"], ["y"], **attributes)
    else:
        node = helper.make_node("ConvTranspose", ["x", "w", "b"], ["y"],
                                output_padding=[case["opad"]] * 2, **attributes)
    x_shape = [case["n"], case["cin"], case["h"], case["w"]]
    y_shape = [case["n"], case["cout"], *output_hw(case)]
    graph = helper.make_graph(
        [node], case["name"],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, y_shape)],
        initializer=[onnx.numpy_helper.from_array(weight, "w"),
                     onnx.numpy_helper.from_array(bias, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # readable by any onnxruntime since 1.10
    onnx.checker.check_model(model)
    return model.SerializeToString()


def time_ort(ort_modules, case, x, weight, bias, threads, quick, expected):
    onnx, ort = ort_modules
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(onnx_model(onnx, case, weight, bias), options,
                                   providers=["CPUExecutionProvider"])
    output = np.empty((case["n"], case["cout"], *output_hw(case)), dtype=np.float32)
    binding = session.io_binding()
    binding.bind_cpu_input("x", x)
    binding.bind_output("y", "cpu", 0, np.float32, output.shape, output.ctypes.data)
    session.run_with_iobinding(binding)
    if expected is not None:
        difference = float(np.max(np.abs(output - expected)))
        if not difference <= 1e-3:  # NaN counts as a difference
            print(f"warning: {case['name']}: onnxruntime differs from PyTorch by {difference}",
                  file=sys.stderr)
    return median_ms(lambda: session.run_with_iobinding(binding), quick)


def fmt_ms(value):
    return "-" if value is None else f"{value:.3f}"


def fmt_gflops(flops, value):
    return "-" if value is None else f"{flops / value / 1e6:.0f}"


def fmt_ratio(peer, ours):
    return "-" if peer is None or ours is None else f"{peer / ours:.2f}x"


def print_table(title, rows, peers):
    print(f"\n## {title}\n")
    header = ["case", "convgen ms", "GF/s"]
    for peer in peers:
        header += [f"{peer} ms", "GF/s", f"{peer}/ours"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    ratios = {peer: [] for peer in peers}
    for name, flops, times in rows:
        ours = times.get("convgen")
        cells = [name, fmt_ms(ours), fmt_gflops(flops, ours)]
        for peer in peers:
            theirs = times.get(peer)
            cells += [fmt_ms(theirs), fmt_gflops(flops, theirs), fmt_ratio(theirs, ours)]
            if theirs is not None and ours is not None:
                ratios[peer].append(theirs / ours)
        print("| " + " | ".join(cells) + " |")
    if any(ratios.values()):
        cells = ["geometric mean", "", ""]
        for peer in peers:
            mean = statistics.geometric_mean(ratios[peer]) if ratios[peer] else None
            cells += ["", "", "-" if mean is None else f"{mean:.2f}x"]
        print("| " + " | ".join(cells) + " |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer timed runs")
    parser.add_argument("--backward", action="store_true",
                        help="also time the backward pass (against PyTorch)")
    parser.add_argument("--only", metavar="NAME", help="time one case")
    parser.add_argument("--rounds", type=int, default=5, metavar="N",
                        help="rounds per case; each contestant's fastest counts (default 5)")
    parser.add_argument("--threads", choices=["1", "all", "both"], default="both",
                        help="thread counts to time (default both)")
    parser.add_argument("--skip-rust", action="store_true", help="time the peers only")
    parser.add_argument("--suite", type=pathlib.Path, default=DEFAULT_SUITE,
                        help=f"the suite (default {DEFAULT_SUITE})")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, not {args.rounds}")

    cases = json.loads(args.suite.read_text())["cases"]
    if args.only:
        cases = [case for case in cases if case["name"] == args.only]
        if not cases:
            sys.exit(f"no case named {args.only!r} in {args.suite}")
    most = all_threads()
    thread_counts = {"1": [1], "all": [most], "both": sorted({1, most})}[args.threads]

    peers = import_peers()
    if not peers and args.skip_rust:
        sys.exit("nothing to time: no peer is importable and --skip-rust was given")
    if not args.skip_rust:
        print("timing convgen with: cargo run --release --example suite -- --json --only NAME",
              file=sys.stderr)

    # Every round's median of each contestant, keyed by (case, pass, threads, contestant).
    rounds = {}

    def record(key, ms):
        rounds.setdefault(key, []).append(ms)

    for round_index in range(args.rounds):
        for case in cases:
            name = case["name"]
            flops = useful_flops(case)
            x = make_input(case)
            weight, bias = make_weights(case)
            ours = {} if args.skip_rust else run_rust(args, name)
            for threads in thread_counts:
                if ("forward", name, threads) in ours:
                    ms, rust_flops = ours["forward", name, threads]
                    record((name, "forward", threads, "convgen"), ms)
                    if not math.isclose(rust_flops, flops, rel_tol=1e-9):
                        print(f"warning: {name}: useful flops {flops:.0f} here but "
                              f"{rust_flops:.0f} in Rust", file=sys.stderr)
                elif not args.skip_rust:
                    print(f"warning: the Rust suite has no {name} at {threads} threads",
                          file=sys.stderr)
                expected = None
                if "torch" in peers:
                    ms, expected = time_torch(peers["torch"], case, x, weight, bias, threads,
                                              args.quick)
                    record((name, "forward", threads, "torch"), ms)
                if "ort" in peers:
                    record((name, "forward", threads, "ort"),
                           time_ort(peers["ort"], case, x, weight, bias, threads, args.quick,
                                    expected))
                if args.backward:
                    if ("backward", name, threads) in ours:
                        record((name, "backward", threads, "convgen"),
                               ours["backward", name, threads][0])
                    if "torch" in peers:
                        record((name, "backward", threads, "torch"),
                               time_torch_backward(peers["torch"], case, x, weight, bias,
                                                   threads, args.quick))
            print(f"timed {name} (round {round_index + 1} of {args.rounds})", file=sys.stderr)

    def fastest(name, kind, threads):
        return {contestant: min(times) for (n, k, t, contestant), times in rounds.items()
                if (n, k, t) == (name, kind, threads)}

    results = {threads: [] for threads in thread_counts}
    backward_results = {threads: [] for threads in thread_counts}
    for case in cases:
        name, flops = case["name"], useful_flops(case)
        for threads in thread_counts:
            results[threads].append((name, flops, fastest(name, "forward", threads)))
            if args.backward:
                # The input and weight gradients each take the forward pass's multiply-adds.
                backward_results[threads].append((name, 2 * flops,
                                                  fastest(name, "backward", threads)))

    print(f"ms per call (fastest of {args.rounds} rounds' medians, each round every case "
          "with convgen and the peers one after another), NCHW f32 with bias; GF/s count only "
          "taps that touch real data; peer/ours above 1 means convgen is faster")
    if hasattr(os, "getloadavg") and os.getloadavg()[0] > 0.5:
        print(f"the machine was busy (load average {os.getloadavg()[0]:.1f} on {most} cores): "
              "times are noisy, multi-threaded ones most")
    def title(threads):
        return "1 thread" if threads == 1 else f"{threads} threads"

    for threads in thread_counts:
        print_table(title(threads), results[threads], list(peers))
    if args.backward:
        backward_peers = [peer for peer in peers if peer == "torch"]
        for threads in thread_counts:
            print_table(f"backward (input, weight and bias gradients), {title(threads)}",
                        backward_results[threads], backward_peers)


if __name__ == "__main__":
    main()
