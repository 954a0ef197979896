"""Whether a bf16 training step of a network survives on this CPU, asked of a child process.

torch 2.13's oneDNN computes the weight gradient of some bf16 3D convolutions on AMX
wrongly: a ``Conv3d`` backward on a (2, 16, 3, 96, 96) input aborts the process ("double
free or corruption"), segfaults or hangs, which of the three changing from run to run,
while (2, 16, 4, 64, 64) or a 3d_hybrid patch of (2, 1, 40, 56, 40) runs fine. Without
AMX (``ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16``) the same steps run, but slower than float32.
A crash cannot be caught inside the process it kills, so before a CPU run autocasts to
bf16 the trainer runs two steps of the very network and input in a child process, and
trains in float32 when the child does not come back in time with exit status 0.

    python -m autoseg.training.bf16_check < spec.json     # what the child runs
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

import torch

PROBE_TIMEOUT_S = 180.0
PROBE_STEPS = 2

_verdicts: dict[str, bool] = {}


def probe_command() -> list[str]:
    """The child's command line (a function, so tests can make it crash on purpose)."""
    return [sys.executable, "-m", "autoseg.training.bf16_check"]


def bf16_step_survives(
    network: dict[str, Any],
    input_shape: Sequence[int],
    channels_last: bool = False,
    timeout_s: float = PROBE_TIMEOUT_S,
) -> bool:
    """True when ``PROBE_STEPS`` bf16 forward/backward steps of ``network`` (a plans
    ``{"name", "kwargs"}`` entry) on a random ``input_shape`` batch finish in a child
    process. Asked once per network, shape and layout in a process."""
    request = {
        "network": network,
        "input_shape": [int(n) for n in input_shape],
        "channels_last": bool(channels_last),
        "threads": torch.get_num_threads(),
    }
    key = json.dumps(request, sort_keys=True)
    if key not in _verdicts:
        _verdicts[key] = _ask_child(key, timeout_s)
    return _verdicts[key]


def _ask_child(request: str, timeout_s: float) -> bool:
    try:
        done = subprocess.run(
            probe_command(), input=request, text=True, capture_output=True, timeout=timeout_s
        )
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0


def run_steps(request: dict[str, Any]) -> None:
    """Build the network and run the bf16 steps (in the child; may crash it)."""
    from autoseg.networks.base import channels_last, to_channels_last
    from autoseg.networks.registry import build_network

    torch.set_num_threads(int(request["threads"]))
    network = build_network(request["network"]).train()
    batch = torch.randn(*request["input_shape"])
    if request["channels_last"]:
        network, batch = to_channels_last(network), channels_last(batch)
    for _ in range(PROBE_STEPS):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            outputs = network(batch)
        outputs = outputs if isinstance(outputs, list | tuple) else [outputs]
        sum(o.float().mean() for o in outputs).backward()


if __name__ == "__main__":
    run_steps(json.loads(sys.stdin.read()))
