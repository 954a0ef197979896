"""Which bf16 3D convolution backwards survive on this CPU, and what a bf16 step saves.

    python benchmarks/bf16_conv3d.py                 # the default shapes, 3 tries each
    python benchmarks/bf16_conv3d.py --isa AVX512_CORE_BF16

Each try runs one ``Conv3d(C, 16, 3, padding=1)`` forward and backward under CPU bf16
autocast in a child process (:mod:`autoseg.training.bf16_check` explains why a child) and
prints how it ended: ``ok``, ``abort``, ``segfault`` or ``hang`` (no exit within
``--timeout`` seconds). With torch 2.13 on an AMX Xeon the thin slice stacks of
``2d_lcnn`` (3 slices of 96x96 or more) failed in every try while 3d_hybrid-like boxes
ran; ``--isa AVX512_CORE_BF16`` (oneDNN without AMX) ran them all. Rerun it after a torch
upgrade before relying on the check in the trainer less.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys

import torch

SHAPES = [  # (channels, slices, height, width)
    (1, 3, 96, 96),
    (16, 3, 96, 96),
    (16, 3, 128, 96),
    (16, 8, 96, 96),
    (16, 4, 64, 64),
    (8, 40, 56, 40),
    (8, 16, 80, 56),
]

CHILD = """
import sys, torch
channels, slices, height, width, threads = map(int, sys.argv[1:6])
torch.set_num_threads(threads)
conv = torch.nn.Conv3d(channels, 16, 3, padding=1)
x = torch.randn(2, channels, slices, height, width)
with torch.autocast("cpu", dtype=torch.bfloat16):
    y = conv(x)
y.float().mean().backward()
"""


def outcome(shape: tuple[int, ...], threads: int, timeout: float, isa: str | None) -> str:
    """How one child's bf16 forward and backward ended."""
    env = dict(os.environ, **({"ONEDNN_MAX_CPU_ISA": isa} if isa else {}))
    command = [sys.executable, "-c", CHILD, *map(str, shape), str(threads)]
    try:
        done = subprocess.run(command, capture_output=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return "hang"
    names = {0: "ok", -signal.SIGABRT: "abort", -signal.SIGSEGV: "segfault"}
    return names.get(done.returncode, f"exit {done.returncode}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tries", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--isa", help="ONEDNN_MAX_CPU_ISA for the children, e.g. AVX512_CORE_BF16")
    args = parser.parse_args()
    amx = bool(getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)())
    print(f"torch {torch.__version__}, AMX {amx}, ISA limit {args.isa or 'none'}, "
          f"{args.threads} thread(s)")  # fmt: skip
    print("shape (C, S, Y, X)     tries")
    for shape in SHAPES:
        ends = [outcome(shape, args.threads, args.timeout, args.isa) for _ in range(args.tries)]
        print(f"{shape!s:22} {' '.join(ends)}", flush=True)


if __name__ == "__main__":
    main()
