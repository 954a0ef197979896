"""Whether bf16 autocast makes 3D convolutions faster on this CPU, timed once per process.

No CPU flag answers it. With AMX tiles a 3d_hybrid training step took 0.62-0.65x its
float32 time (a 2-core Xeon); the same Xeon limited to AVX512-BF16 took 1.11-1.13x; an
AMD EPYC with native AVX512-BF16 and no AMX took 0.68x (3d_hybrid), 0.61x (2.5d_unet) and
0.75x (2d_lcnn) (``benchmarks/train_speed.py --precisions fp32 bf16``). So AMX counts as
faster, a CPU without bf16 instructions as slower, and anything between is timed: a few
steps of the float32 CPU plan's 3d_hybrid in each precision, in a child process, because
a bf16 kernel that crashes (see :mod:`~autoseg.training.bf16_check`) must not take the
caller down.

    python -m autoseg.networks.bf16_speed       # what the child runs: prints the seconds
"""

from __future__ import annotations

import functools
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from autoseg.core.cpu import cpu_has_amx
from autoseg.networks.registry import build_network

FASTER_BELOW = 0.9  # bf16 must take under this share of float32's time to be chosen
PROBE_SHAPE = (2, 1, 40, 56, 40)  # batch and patch of the float32 CPU plan of ATLAS at 2 mm
PROBE_NETWORK = {"in_channels": 1, "num_classes": 2, "stage_features": [8, 16, 32, 64], "groups": 1}
PROBE_WARMUP, PROBE_STEPS = 2, 3
PROBE_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Bf16Speed:
    """bf16 time over float32 time of the probe: a training step and a forward pass."""

    training: float
    inference: float


def cpu_bf16_faster(purpose: Literal["training", "inference"] = "training") -> bool:
    """True when bf16 autocast is worth it on this CPU for ``training`` or ``inference``."""
    if cpu_has_amx():
        return True
    if not getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)():
        return False  # bf16 would be emulated in float32 arithmetic
    speed = measured_speed()
    return speed is not None and getattr(speed, purpose) < FASTER_BELOW


@functools.cache
def measured_speed() -> Bf16Speed | None:
    """The child's timing (None when it crashed, hung or printed nothing usable)."""
    command = [sys.executable, "-m", "autoseg.networks.bf16_speed", str(torch.get_num_threads())]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S)
        seconds = json.loads(done.stdout.strip().splitlines()[-1])
        return Bf16Speed(
            training=seconds["bf16_training"] / seconds["fp32_training"],
            inference=seconds["bf16_inference"] / seconds["fp32_inference"],
        )
    except (subprocess.TimeoutExpired, ValueError, KeyError, IndexError, ZeroDivisionError):
        return None


def probe_network() -> nn.Module:
    """A 3d_hybrid as a float32 CPU plan builds it: the network whose precision is decided."""
    return build_network({"name": "3d_hybrid", "kwargs": PROBE_NETWORK}).train()


def median_seconds(
    step: Callable[[], None],
    warmup: int = PROBE_WARMUP,
    steps: int = PROBE_STEPS,
) -> float:
    """Median wall seconds of ``step`` after ``warmup`` untimed calls (first calls pick kernels)."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        step()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def time_probe() -> dict[str, float]:
    """Median seconds of a training step and of a forward pass, float32 and bf16."""
    torch.manual_seed(0)
    network, batch = probe_network(), torch.randn(*PROBE_SHAPE)
    precisions = {"fp32": False, "bf16": True}

    def train_step(bf16: bool) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = sum(output.float().mean() for output in network(batch))
        loss.backward()

    def forward(bf16: bool) -> None:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            network(batch)

    seconds = {f"{name}_training": median_seconds(lambda b=b: train_step(b))
               for name, b in precisions.items()}  # fmt: skip
    network.eval()
    seconds |= {f"{name}_inference": median_seconds(lambda b=b: forward(b))
                for name, b in precisions.items()}  # fmt: skip
    return seconds


if __name__ == "__main__":
    torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else torch.get_num_threads())
    print(json.dumps(time_probe()))
