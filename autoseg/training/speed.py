"""Speed levers of a training step: switches that change how fast a step runs, not what
the step computes (beyond float rounding).

:class:`SpeedLevers` is the one record the trainer, ``autoseg_train`` and
``autoseg_benchmark`` share; its defaults are the trainer's behaviour before the levers
existed (channels-last 3D, AMP in bf16 where the GPU has it, else fp16 with a
GradScaler, nothing else), with one addition: on a CPU where bf16 is faster (AMX, or
timed so: :mod:`~autoseg.networks.bf16_speed`) the step autocasts to bf16 too (where a
test step in a child process survives; see :mod:`~autoseg.training.bf16_check`). Most
levers exist only on CUDA: on another device they are reported as ``n/a on <device>``
(:func:`lever_status`), never silently taken as on.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any, TypeVar

import torch
from torch import nn

from autoseg.core.errors import InvalidInputError
from autoseg.networks.bf16_speed import cpu_bf16_faster

PRECISIONS = ("auto", "bf16", "fp16", "fp32")
CUDA_ONLY = ("cudnn_benchmark", "fused_optimizer", "pin_memory")
THREE_D_ONLY = ("channels_last",)
T = TypeVar("T")


@dataclass(frozen=True)
class SpeedLevers:
    """How a training step runs.

    Attributes:
        cudnn_benchmark: let cuDNN time its convolution algorithms on the first steps and
            keep the fastest (fixed patch sizes make that pay off).
        channels_last: 3D batches and weights channels-last (oneDNN and cuDNN 3D
            convolutions are faster so; see :func:`~autoseg.networks.base.channels_last`).
        precision: ``auto`` (CUDA: bf16 where supported, else fp16; CPU: bf16 where it is
            faster than float32 there, else full precision), ``bf16`` (no loss scaling),
            ``fp16`` (with a GradScaler; CUDA only) or ``fp32`` (no autocast).
        fused_optimizer: AdamW/SGD with ``fused=True`` (one kernel for every parameter);
            otherwise torch's default (``foreach`` on CUDA).
        pin_memory: the loader's workers hand over page-locked batches, so the trainer's
            non-blocking host-to-device copies overlap with compute.
        compile: ``torch.compile`` the network; a failure prints one line and the run
            goes on eagerly (:class:`CompiledOrEager`).
    """

    cudnn_benchmark: bool = False
    channels_last: bool = True
    precision: str = "auto"
    fused_optimizer: bool = False
    pin_memory: bool = False
    compile: bool = False

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise InvalidInputError(
                f"precision '{self.precision}': choose one of {', '.join(PRECISIONS)}"
            )

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


DEFAULT_LEVERS = SpeedLevers()


def lever_names() -> list[str]:
    return [f.name for f in fields(SpeedLevers)]


def lever_status(levers: SpeedLevers, device: torch.device, is_3d: bool = True) -> dict[str, str]:
    """Each lever as the run takes it: ``on``/``off``, a precision, or ``n/a on cpu``."""
    status = {}
    for name in lever_names():
        value = getattr(levers, name)
        if name in CUDA_ONLY and device.type != "cuda":
            status[name] = f"n/a on {device.type}"
        elif name in THREE_D_ONLY and not is_3d:
            status[name] = "n/a for 2D"
        elif name == "precision":
            status[name] = precision_name(autocast_dtype(levers, device, True))
        else:
            status[name] = "on" if value else "off"
    return status


def applies(name: str, device: torch.device, is_3d: bool = True) -> bool:
    """Whether lever ``name`` changes anything on ``device``."""
    if name in CUDA_ONLY and device.type != "cuda":
        return False
    return not (name in THREE_D_ONLY and not is_3d)


def autocast_dtype(levers: SpeedLevers, device: torch.device, amp: bool) -> torch.dtype | None:
    """The autocast dtype of a step: None (full precision) with ``amp`` off, precision
    ``fp32``, or a device that has no fitting half type (:func:`cpu_autocast_dtype`).

    Raises:
        InvalidInputError: ``bf16`` asked for on a GPU without bfloat16.
    """
    if not amp or levers.precision == "fp32":
        return None
    if device.type == "cpu":
        return cpu_autocast_dtype(levers.precision)
    if device.type != "cuda":
        return None
    bf16 = torch.cuda.is_bf16_supported()
    if levers.precision == "bf16" and not bf16:
        raise InvalidInputError("--bf16: this GPU does not support bfloat16; use --fp16")
    if levers.precision == "fp16":
        return torch.float16
    return torch.bfloat16 if bf16 else torch.float16


def cpu_autocast_dtype(precision: str) -> torch.dtype | None:
    """bf16 on a CPU where it is faster (``auto``) or when asked (``bf16``).

    With AMX a 3d_hybrid or 2.5d_unet training step took 0.62-0.65x its float32 time on
    this project's 2-core Xeon (``benchmarks/train_speed.py --precisions fp32 bf16``). The
    same CPU limited to AVX512-BF16 (``ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16``, one thread)
    took 1.13x (3d_hybrid, 0.51 s against 0.45 s) and 1.11x (2.5d_unet) its float32 time;
    an AMD EPYC without AMX but with native AVX512-BF16 took 0.68x (3d_hybrid) and 0.61x
    (2.5d_unet). So ``auto`` asks :func:`~autoseg.networks.bf16_speed.cpu_bf16_faster`,
    which times it where no CPU flag decides. fp16 autocast is not offered on the CPU.
    Whether a given network's bf16 step survives is checked before training
    (:mod:`~autoseg.training.bf16_check`).
    """
    if precision == "bf16" or (precision == "auto" and cpu_bf16_faster("training")):
        return torch.bfloat16
    return None


def precision_name(dtype: torch.dtype | None) -> str:
    return {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, "fp32")


def optimizer_flags(levers: SpeedLevers, device: torch.device) -> dict[str, bool]:
    """Keyword arguments for the optimiser: ``fused`` on CUDA when asked, else none
    (torch then picks ``foreach`` on CUDA and a per-parameter loop on the CPU)."""
    return {"fused": True} if levers.fused_optimizer and device.type == "cuda" else {}


def pins_memory(levers: SpeedLevers, device: torch.device) -> bool:
    """Page-locked batches help only copies to a CUDA device."""
    return levers.pin_memory and device.type == "cuda"


@contextlib.contextmanager
def backend_flags(levers: SpeedLevers, device: torch.device) -> Iterator[None]:
    """Set ``torch.backends.cudnn.benchmark`` for the run and restore it afterwards (it is
    process-wide, and a benchmark sweep runs levers one after another)."""
    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = levers.cudnn_benchmark and device.type == "cuda"
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = before


def sweep(
    base: SpeedLevers, device: torch.device, is_3d: bool = True, only: Sequence[str] = ()
) -> list[tuple[str, Any]]:
    """The runs of a lever sweep: ``("baseline", base)``, then one run per lever toggled
    from the baseline (``"n/a on cpu"`` in place of the levers for the run where a lever
    does not apply, so the table still names it).

    Precision is swept over the precisions the baseline does not use
    (:func:`other_precisions`).
    ``only`` limits the sweep to some levers (e.g. without ``compile``, which takes
    minutes on a CPU).

    Raises:
        InvalidInputError: ``only`` names an unknown lever.
    """
    unknown = sorted(set(only) - set(lever_names()))
    if unknown:
        raise InvalidInputError(f"unknown lever(s) {unknown}; known: {', '.join(lever_names())}")
    runs: list[tuple[str, Any]] = [("baseline", base)]
    for name in [n for n in lever_names() if n in only or not only]:
        if not applies(name, device, is_3d):
            runs.append((name, lever_status(base, device, is_3d)[name]))
        elif name == "precision":
            others = other_precisions(base, device)
            runs += [(f"precision={p}", replace(base, precision=p)) for p in others]
        else:
            flipped = not getattr(base, name)
            runs.append((f"{name}={'on' if flipped else 'off'}", replace(base, **{name: flipped})))
    return runs


def other_precisions(base: SpeedLevers, device: torch.device) -> list[str]:
    """The precisions a sweep tries beside the baseline's: the other half type on CUDA
    (bf16 only where the GPU has it), bf16 or float32 on the CPU."""
    current = precision_name(autocast_dtype(base, device, True))
    if device.type == "cpu":
        return [p for p in ("bf16", "fp32") if p != current]
    others = [p for p in ("bf16", "fp16") if p != current]
    if not torch.cuda.is_bf16_supported():
        others = [p for p in others if p != "bf16"]
    return others


class CompiledOrEager:
    """Runs a step on ``torch.compile(model)``; if compiling fails (no compiler, an
    unsupported op), prints one line saying why and runs that step and every later one
    eagerly. Compilation is lazy (at the first forward, the backward at the first
    backward), so the first step is the one that can fail; once a compiled step has
    succeeded, errors are the step's own and are raised.

    Args:
        model: the eager network.
        enabled: compile at all (the ``compile`` lever).
    """

    def __init__(self, model: nn.Module, enabled: bool):
        self.model = model
        self.compiled: Callable | None = torch.compile(model) if enabled else None
        self.trusted = False
        self.failure: str | None = None

    @property
    def active(self) -> bool:
        """True while steps run compiled."""
        return self.compiled is not None

    def run(self, step: Callable[[Callable], T]) -> T:
        """``step(model)`` with the compiled model, or the eager one after a failure."""
        if self.compiled is None:
            return step(self.model)
        if self.trusted:
            return step(self.compiled)
        try:
            result = step(self.compiled)
        except Exception as error:  # any compiler failure: the run must go on eagerly
            first = (str(error).strip().splitlines() or [""])[0][:200]
            self.failure = f"{type(error).__name__}: {first}"
            print(f"torch.compile failed, running eagerly ({self.failure})", flush=True)
            self.compiled = None
            return step(self.model)
        self.trusted = True
        return result
