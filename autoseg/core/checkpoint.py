"""Checkpoints: tensors and plain types only, written atomically, read with weights_only.

A checkpoint is a dict with ``model``, ``optimizer``, ``grad_scaler``, ``scheduler``,
``rng`` (torch / CUDA / numpy / python states converted to tensors and lists), ``epoch``,
``iteration``, ``epoch_step`` (steps done in an unfinished epoch), ``epoch_losses``,
``plans_id``, ``configuration``, ``network`` (the spec to rebuild the model), ``ema_dice``,
``best_ema_dice`` and ``history`` (one dict of floats per finished epoch). Nothing in it
needs pickle's arbitrary-object machinery, so loading uses ``torch.load(weights_only=True)``
and a crafted file that tries to run code is refused (DESIGN §12).
"""

from __future__ import annotations

import pickle
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from autoseg.core.atomic import atomic_path
from autoseg.core.errors import InvalidInputError

FORMAT_VERSION = 1


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` to ``path`` atomically (a crash mid-write leaves the old file)."""
    with atomic_path(path) as temp:
        torch.save({"format_version": FORMAT_VERSION, **payload}, temp)


def load_checkpoint(
    path: Path, plans_id: str | None = None, map_location: str | torch.device = "cpu"
) -> dict[str, Any]:
    """Read a checkpoint safely; refuse foreign objects and checkpoints of other plans.

    Args:
        path: the ``.pt`` file.
        plans_id: the current plans' id; when given, a checkpoint recording another id is
            refused (a model must never run with plans it was not trained on).
        map_location: where tensors land.

    Raises:
        InvalidInputError: missing or unreadable file, a file needing arbitrary pickled
            objects (possibly malicious), or a plans_id mismatch.
    """
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"{path}: checkpoint not found")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        raise InvalidInputError(
            f"{path}: refused: the file holds objects other than tensors and plain types "
            f"(not an autoseg checkpoint, possibly malicious): {str(error).splitlines()[0]}"
        ) from error
    except (RuntimeError, EOFError, OSError) as error:
        raise InvalidInputError(f"{path}: not a readable checkpoint ({error})") from error
    if not isinstance(payload, dict):
        raise InvalidInputError(f"{path}: not a checkpoint (expected a dict)")
    check_plans_id(payload, plans_id, path)
    return payload


def check_plans_id(payload: dict[str, Any], plans_id: str | None, path: Path) -> None:
    """Refuse a checkpoint trained with other plans (DESIGN §10)."""
    recorded = payload.get("plans_id")
    if plans_id is not None and recorded is not None and recorded != plans_id:
        raise InvalidInputError(
            f"{path}: trained with plans_id {recorded}, but the current plans have "
            f"plans_id {plans_id}; re-plan with the same settings or start a new run"
        )


def rng_state() -> dict[str, Any]:
    """Every random generator's state as tensors and lists (weights_only-loadable)."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "position": int(position),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` recorded."""
    torch.set_rng_state(state["torch"])
    numpy = state["numpy"]
    np.random.set_state(
        (
            numpy["kind"],
            numpy["keys"].numpy().astype(np.uint32),
            numpy["position"],
            numpy["has_gauss"],
            numpy["cached_gaussian"],
        )
    )
    python = state["python"]
    random.setstate((python["version"], tuple(python["internal"]), python["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclass
class TransferReport:
    """What ``--pretrained`` loaded and what it left at its initial value."""

    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    shape_mismatch: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """A few lines for the console: counts, then the names that were not loaded."""
        lines = [
            f"pretrained: loaded {len(self.loaded)} tensors, skipped "
            f"{len(self.missing)} missing, {len(self.unexpected)} unexpected, "
            f"{len(self.shape_mismatch)} shape mismatch"
        ]
        lines += [f"  shape mismatch: {entry}" for entry in self.shape_mismatch]
        lines += [f"  missing (kept initial): {name}" for name in self.missing]
        lines += [f"  unexpected (ignored): {name}" for name in self.unexpected]
        return "\n".join(lines)


def model_state(payload: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The weights in a checkpoint: its ``model`` entry, or the dict itself if it is one."""
    state = payload.get("model", payload)
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


def load_pretrained(model: nn.Module, path: Path) -> TransferReport:
    """Copy every weight of a checkpoint whose name and shape match ``model``.

    Transfer between datasets changes at least the input channels or the classes, so
    mismatching tensors are skipped (and reported), never an error. No plans check: the
    point is to use weights trained with other plans.
    """
    source = model_state(load_checkpoint(path))
    target = model.state_dict()
    report = TransferReport()
    for name, tensor in target.items():
        if name not in source:
            report.missing.append(name)
        elif source[name].shape != tensor.shape:
            shapes = f"{tuple(source[name].shape)} -> {tuple(tensor.shape)}"
            report.shape_mismatch.append(f"{name} {shapes}")
        else:
            report.loaded.append(name)
    report.unexpected = sorted(set(source) - set(target))
    model.load_state_dict({n: source[n] for n in report.loaded}, strict=False)
    return report
