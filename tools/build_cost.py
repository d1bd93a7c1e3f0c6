#!/usr/bin/env python3
"""What a `conv!` geometry costs a user's release build, measured the way a user meets it.

Writes a throwaway binary crate that depends on conv-runtime by path and uses 0, 1 or 8
distinct geometries (six as Conv2d, two as ConvTranspose2d), for inference (forward only) or
training (forward, backward and an Adam step), builds each with `cargo build --release` once
the dependencies are built, and prints the build time and binary size of each, and the cost
per geometry: (8 geometries - 0 geometries) / 8.

    python3 tools/build_cost.py                 # both modes, 3 builds of each variant
    python3 tools/build_cost.py --repeat 5 --mode inference
    python3 tools/build_cost.py --rank 1       # eight conv1d! geometries on Conv1d / ConvTranspose1d
    python3 tools/build_cost.py --padded       # eight conv! geometries of wide padding (ASPP's)

Build times are the median of `--repeat` builds of the crate alone (its dependencies are built
once, before any timing). Nothing else should run on the machine meanwhile. The crate lives in
target/build-cost (never committed).
"""

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# (layer, conv! parameters, in_channels, out_channels, input size): the eight.
GEOMETRIES = [
    ("Conv2d", "k = 3, padding = 1", 8, 8, 16),
    ("Conv2d", "k = 3, dilation = 2, padding = 2", 8, 8, 16),
    ("Conv2d", "k = 3, dilation = 4, padding = 4", 8, 8, 16),
    ("Conv2d", "k = 3, stride = 2, padding = 1", 8, 8, 16),
    ("Conv2d", "k = 1", 8, 8, 16),
    ("Conv2d", "k = 5, padding = 2", 8, 8, 16),
    ("ConvTranspose2d", "k = 2, stride = 2", 8, 8, 16),
    ("ConvTranspose2d", "k = 4, stride = 2, padding = 1", 8, 8, 16),
]

# Geometries whose padding is wide, as ASPP's and dilated context modules' (`--padded`):
# those run, on AVX-512, the kernel vectorised along output channels, whose end tiles leave
# out the pixels that read padding, in instances of their own.
GEOMETRIES_PADDED = [
    ("Conv2d", "k = 3, dilation = 6, padding = 6", 8, 8, 32),
    ("Conv2d", "k = 3, dilation = 12, padding = 12", 8, 8, 32),
    ("Conv2d", "k = 3, dilation = 18, padding = 18", 8, 8, 32),
    ("Conv2d", "k = 3, dilation = 8, padding = 8", 8, 8, 32),
    ("Conv2d", "k = 3, dilation = 8, padding = 24", 8, 8, 32),
    ("Conv2d", "k = (1, 4), dilation = (1, 9), padding = same", 8, 8, 32),
    ("ConvTranspose2d", "k = 3, dilation = 12, padding = 12", 8, 8, 32),
    ("ConvTranspose2d", "k = 3, dilation = 6, padding = 6", 8, 8, 32),
]

# The same for `conv1d!` (input length 64): WaveNet's causal layers, a strided, a `same` and
# a reflect-padded one, and two upsamplers.
GEOMETRIES_1D = [
    ("Conv1d", "k = 2, dilation = 1, padding = causal", 8, 8, 64),
    ("Conv1d", "k = 2, dilation = 8, padding = causal", 8, 8, 64),
    ("Conv1d", "k = 2, dilation = 64, padding = causal", 8, 8, 128),
    ("Conv1d", "k = 3, stride = 2, padding = 1", 8, 8, 64),
    ("Conv1d", "k = 5, padding = same", 8, 8, 64),
    ("Conv1d", "k = 3, dilation = 2, padding = 2, padding_mode = reflect", 8, 8, 64),
    ("ConvTranspose1d", "k = 2, stride = 2", 8, 8, 64),
    ("ConvTranspose1d", "k = 4, stride = 2, padding = 1", 8, 8, 64),
]

CARGO_TOML = """[package]
name = "build-cost"
version = "0.1.0"
edition = "2024"
publish = false

# Not part of the convgen workspace.
[workspace]

[dependencies]
conv-runtime = {{ path = "{runtime}" }}
"""


def program(count: int, training: bool, rank: int) -> str:
    """A user's main with the first `count` geometries of `rank` (2: conv!, 1: conv1d!, 0:
    the conv! geometries of wide padding)."""
    if rank in (0, 2):
        geometries, macro = GEOMETRIES if rank == 2 else GEOMETRIES_PADDED, "conv!"
        helper = [
            "use conv_runtime::ndarray::Array4;",
            "fn input(channels: usize, size: usize) -> Array4<f32> {",
            "    Array4::from_shape_fn((1, channels, size, size), |(_, c, y, x)| {",
            "        ((c * 7 + y * 3 + x) % 11) as f32 / 11.0 - 0.5",
            "    })",
            "}",
        ]
    else:
        geometries, macro = GEOMETRIES_1D, "conv1d!"
        helper = [
            "use conv_runtime::ndarray::Array3;",
            "fn input(channels: usize, length: usize) -> Array3<f32> {",
            "    Array3::from_shape_fn((1, channels, length), |(_, c, x)| {",
            "        ((c * 7 + x) % 11) as f32 / 11.0 - 0.5",
            "    })",
            "}",
        ]
    lines = [
        "#[allow(unused_imports)]",
        "use conv_runtime::optim::Adam;",
        "use conv_runtime::prelude::*;",
        "",
        *helper,
        "",
        "#[allow(unused_mut)]",
        "fn main() -> Result<(), ConvError> {",
        "    let mut total = input(1, 4).sum();",
    ]
    for index, (layer, params, cin, cout, size) in enumerate(geometries[:count]):
        binding = "let mut" if training else "let"
        lines += [
            f"    {binding} layer{index} = {layer}::new({macro}({params}), {cin}, {cout});",
            f"    let x = input({cin}, {size});",
            f"    let y = layer{index}.forward(&x)?;",
            "    total += y.sum();",
        ]
        if training:
            lines += [
                f"    let grads = layer{index}.backward(&x, &y)?;",
                f"    Adam::new(1e-3).step(&mut layer{index}, &grads)?;",
                "    total += grads.input.sum();",
            ]
    lines += ['    println!("{total}");', "    Ok(())", "}", ""]
    return "\n".join(lines)


def cargo_build(crate: Path, target: Path) -> None:
    subprocess.run(
        ["cargo", "build", "--release", "--quiet"],
        cwd=crate,
        env={**os.environ, "CARGO_TARGET_DIR": str(target)},
        check=True,
    )


def measure(crate: Path, target: Path, count: int, training: bool, rank: int, repeat: int):
    """Median build seconds of the crate alone, and its binary's bytes."""
    main = crate / "src" / "main.rs"
    main.write_text(program(count, training, rank))
    times = []
    for _ in range(repeat):
        # A new modification time makes cargo rebuild the crate, and only the crate.
        os.utime(main, None)
        start = time.perf_counter()
        cargo_build(crate, target)
        times.append(time.perf_counter() - start)
    binary = target / "release" / "build-cost"
    # The program must run: a build that produced a broken binary measures nothing.
    subprocess.run([binary], check=True, stdout=subprocess.DEVNULL)
    return statistics.median(times), binary.stat().st_size


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="builds per variant (median)")
    parser.add_argument(
        "--mode", choices=["inference", "training", "both"], default="both"
    )
    parser.add_argument(
        "--rank", type=int, choices=[1, 2], default=2, help="2: conv! geometries, 1: conv1d!"
    )
    parser.add_argument(
        "--padded", action="store_true", help="conv! geometries of wide padding instead"
    )
    parser.add_argument(
        "--dir", type=Path, default=ROOT / "target" / "build-cost", help="scratch folder"
    )
    args = parser.parse_args()
    if args.padded:
        args.rank = 0

    crate, target = args.dir / "crate", args.dir / "target"
    if crate.exists():
        shutil.rmtree(crate)
    (crate / "src").mkdir(parents=True)
    (crate / "Cargo.toml").write_text(
        CARGO_TOML.format(runtime=(ROOT / "conv-runtime").as_posix())
    )
    # Dependencies, built once and never timed.
    (crate / "src" / "main.rs").write_text(program(0, False, args.rank))
    cargo_build(crate, target)

    rustc = subprocess.run(
        ["rustc", "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    family = {2: "conv!", 1: "conv1d!", 0: "conv! of wide padding"}[args.rank]
    print(f"machine: {machine()}; {rustc}; median of {args.repeat} release builds; {family}")
    print()
    print("| mode | geometries | build s | binary bytes | per geometry s | per geometry KB |")
    print("|---|---|---|---|---|---|")
    modes = ["inference", "training"] if args.mode == "both" else [args.mode]
    for mode in modes:
        training = mode == "training"
        base_time, base_size = measure(crate, target, 0, training, args.rank, args.repeat)
        print(f"| {mode} | 0 | {base_time:.2f} | {base_size} | | |", flush=True)
        for count in (1, len(GEOMETRIES)):
            seconds, size = measure(crate, target, count, training, args.rank, args.repeat)
            per_time = (seconds - base_time) / count
            per_size = (size - base_size) / count / 1024
            print(
                f"| {mode} | {count} | {seconds:.2f} | {size} | {per_time:.2f} | {per_size:.0f} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
