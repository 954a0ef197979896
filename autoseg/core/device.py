"""Which device a command runs on: checked up front, ``auto`` resolved in one place."""

from __future__ import annotations

import torch

from autoseg.core.errors import InvalidInputError

DEVICES = ("cpu", "cuda", "mps")


def detected_device() -> str:
    """``cuda`` or ``mps`` when available, else ``cpu``."""
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def check_device(name: str) -> str:
    """``name`` when this machine has that device (``auto`` always passes).

    Asked for a device it lacks, torch fails deep inside the first ``.to(device)`` with a
    traceback; this says so in one line before any model or data is loaded.

    Raises:
        InvalidInputError: an unknown device string, or a device this machine lacks.
    """
    if name == "auto":
        return name
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise InvalidInputError(
            f"--device {name}: not a device (use auto, cpu, cuda, cuda:N or mps)"
        ) from error
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise InvalidInputError(
                f"--device {name}: this machine has no CUDA device; use --device cpu (or auto)"
            )
        if device.index is not None and device.index >= count:
            raise InvalidInputError(f"--device {name}: this machine has {count} CUDA device(s)")
    elif device.type == "mps" and detected_device() != "mps":
        raise InvalidInputError(f"--device {name}: this machine has no Apple MPS device")
    elif device.type not in DEVICES:
        raise InvalidInputError(f"--device {name}: unsupported (use auto, cpu, cuda or mps)")
    return name


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then the CPU; other names must exist here."""
    if check_device(name) != "auto":
        return torch.device(name)
    return torch.device(detected_device())
