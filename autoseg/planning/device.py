"""The planning budget: accelerator memory (detected, flagged or default) or CPU compute.

On a CUDA or MPS device memory is what limits a plan. On a CPU-only machine the scarce
resource is time, so the default CPU plan is capped by the compute of one training
iteration (forward + backward) instead, sized so an iteration takes about a second on a
small CPU; the plans record which rule was used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from autoseg.core.device import DEVICES, detected_device
from autoseg.core.errors import InvalidInputError
from autoseg.networks.bf16_speed import cpu_bf16_faster

# Memory assumed when nothing is detected or given: the card nnU-Net's defaults target.
DEFAULT_GPU_MEMORY_GB = 8.0
# A 2-core laptop CPU sustains about 78 GFLOP/s on large 3D convolutions, but slim
# networks on large patches are bound by memory traffic (normalisation, activations) at
# well under half that: 25 GFLOP per iteration (backward included) measured ~0.6-1 s.
CPU_GFLOPS_PER_ITERATION = 25.0
CPU_ASSUMED_GFLOPS_PER_SECOND = 78.0
# A CPU's compute cap holds a 3D patch near 100 k voxels at any spacing, so at 1 mm it sees
# 4 x 6 x 5 cm of a head (3 % of it). On 1 mm ATLAS-like heads (40 training, 10 test; one
# core each, 20 minutes) the 1 mm 3d_hybrid reached test Dice 0.35, lesion F1 0.08 and
# 38 more lesions a head than the reference, predicting 4.5 minutes a case; at 1.76 mm, as
# the planner now plans it, twice: Dice 0.49 / 0.51, F1 0.45 / 0.43, 3-4 more, 35-39 s
# (2 mm by hand: 0.50, 0.35). So a CPU plan coarsens 3D spacing
# (rules.cpu_field_of_view_spacing) until the patch covers about this share of the median
# image (2 mm heads, 17 %, keep 2 mm). Small lesions pay: 3-5 of the 10 small test lesions
# found against 7 by the 1 mm model among its false ones.
CPU_MIN_PATCH_COVERAGE_3D = 0.15


@dataclass(frozen=True)
class Budget:
    """What a plan must fit.

    Attributes:
        device: ``cuda``, ``mps`` or ``cpu``: the device training is planned for.
        gpu_memory_gb: memory budget in GiB.
        source: ``detected``, ``flag`` or ``default`` (how ``gpu_memory_gb`` was found).
        amp: plan for mixed precision (:func:`plans_amp`).
        gflops_per_iteration: compute cap of one iteration (CPU plans), else None.
        cpu_bf16: CPU steps will run in bf16 (measured faster here), where network width
            costs far less time than its FLOPs suggest (see ``ConfigurationKind``).
    """

    device: str
    gpu_memory_gb: float
    source: str
    amp: bool
    gflops_per_iteration: float | None = None
    cpu_bf16: bool = False

    def cpu_budget(self) -> dict[str, Any] | None:
        """The CPU rule as recorded in the plans (None for accelerator plans)."""
        if self.gflops_per_iteration is None:
            return None
        rule = (
            "no accelerator: patch, batch and network capped by the compute of one "
            "training iteration (forward + backward), about one second on a 2-core CPU; "
            f"a 3D patch covering under {CPU_MIN_PATCH_COVERAGE_3D:.0%} of the median image "
            "is planned at a coarser spacing"
        )
        if self.cpu_bf16:
            rule += "; bf16 steps (faster here): 3d_hybrid one width level wider on the same patch"
        return {
            "gflops_per_iteration": self.gflops_per_iteration,
            "assumed_gflops_per_second": CPU_ASSUMED_GFLOPS_PER_SECOND,
            "bf16": self.cpu_bf16,
            "rule": rule,
        }


def detected_memory_gb(device: str) -> float | None:
    """Total memory of the accelerator (GiB), or None when it cannot be read."""
    if device == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_properties(0).total_memory / 1024**3
    if device == "mps" and hasattr(torch, "mps"):
        try:
            return torch.mps.recommended_max_memory() / 1024**3
        except (AttributeError, RuntimeError):
            return None
    return None


def plans_amp(device: str) -> bool:
    """Mixed precision on CUDA (fp16/bf16) and on a CPU (bf16 where it is faster than
    float32 and a test step survives, decided where it trains:
    :func:`~autoseg.pipeline.fold_trainer.settle_cpu_precision`); not on MPS."""
    return device in ("cuda", "cpu")


def budget_for_cpu(gpu_memory_gb: float, source: str) -> Budget:
    """The CPU rule: a compute cap per iteration, noting whether steps will run in bf16.

    Whether training really runs in bf16 is settled where it trains (a CPU where bf16 is
    not faster, or one where a bf16 test step fails, trains in float32); a plan widened for bf16 and
    trained in float32 pays its 2.25x FLOPs in full.
    """
    amp = plans_amp("cpu")
    bf16 = amp and cpu_bf16_faster("training")
    return Budget("cpu", gpu_memory_gb, source, amp, CPU_GFLOPS_PER_ITERATION, bf16)


def resolve_budget(device: str | None = None, gpu_memory_gb: float | None = None) -> Budget:
    """The budget to plan for, from flags first and detection second.

    Args:
        device: ``--device`` (None: detect).
        gpu_memory_gb: ``--gpu-memory-gb`` (None: detect, or the CPU rule).

    Raises:
        InvalidInputError: an unknown device, a non-positive memory, or ``cuda``/``mps``
            asked for on a machine without one and no memory given.
    """
    if device is not None and device not in DEVICES:
        raise InvalidInputError(f"--device: unknown device '{device}' (known: cpu, cuda, mps)")
    if gpu_memory_gb is not None:
        if not gpu_memory_gb > 0:
            raise InvalidInputError(f"--gpu-memory-gb: must be positive, got {gpu_memory_gb}")
        target = device or ("cuda" if detected_device() == "cpu" else detected_device())
        if target == "cpu":
            return budget_for_cpu(float(gpu_memory_gb), "flag")
        return Budget(target, float(gpu_memory_gb), "flag", plans_amp(target))
    target = device or detected_device()
    if target == "cpu":
        return budget_for_cpu(DEFAULT_GPU_MEMORY_GB, "default")
    memory = detected_memory_gb(target)
    if memory is None:
        raise InvalidInputError(
            f"--device {target}: no {target} device found; pass --gpu-memory-gb to plan for one"
        )
    return Budget(target, round(memory, 1), "detected", plans_amp(target))
