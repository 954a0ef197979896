"""Fake trained results folders for the inference pipeline tests.

A workspace holds ``raw/Tiny`` (tests/conftest.py's tiny NIfTI dataset), a
``preprocessed/Tiny/splits.json`` and ``results/Tiny/<CONFIG>/`` with plans.json (a
minimal but schema-valid plans file, finalised by the planner's own code so its
``plans_id`` is the real content hash), dataset.json and checkpoints written with
:func:`autoseg.core.checkpoint.save_checkpoint` in the trainer's key layout.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from autoseg.core.atomic import write_json
from autoseg.core.checkpoint import save_checkpoint
from autoseg.core.workspace import Workspace
from autoseg.networks import build_network, register_network, registry
from autoseg.plans import Plans, finalize, write_plans
from tests.conftest import tiny_meta, write_tiny_dataset
from tests.networks.conftest import TINY

DATASET = "Tiny"


@pytest.fixture
def single_thread() -> Iterator[None]:
    """One torch thread: tiny windows run faster so, and far faster on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


AFFINE_NETWORK = "test_affine"


class AffineNetwork(nn.Module):
    """1x1 convolution: logit_k = weight_k * intensity + bias_k (a model whose output is known)."""

    def __init__(
        self, in_channels: int, num_classes: int, weight: list[float], bias: list[float]
    ) -> None:
        super().__init__()
        self.conv = nn.Conv3d(in_channels, num_classes, 1)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[:, 0] = torch.tensor(weight).view(-1, 1, 1, 1)
            self.conv.bias.copy_(torch.tensor(bias))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


@pytest.fixture
def affine_network() -> Iterator[None]:
    """AffineNetwork registered for the test only (the registry test lists the real ones)."""
    register_network(AFFINE_NETWORK)(AffineNetwork)
    yield
    registry._REGISTRY.pop(AFFINE_NETWORK, None)


def affine_spec(bias: list[float], weight: list[float] | None = None) -> dict[str, Any]:
    """``{"name", "kwargs"}`` of an AffineNetwork with 2 classes."""
    kwargs = {"in_channels": 1, "num_classes": 2, "weight": weight or [0.0, 0.0], "bias": bias}
    return {"name": AFFINE_NETWORK, "kwargs": kwargs}


def hybrid_spec(seed: int = 0) -> dict[str, Any]:
    """The tiny 3d_hybrid of the network tests, one channel, two classes."""
    kwargs = {**TINY["3d_hybrid"][0], "in_channels": 1, "num_classes": 2, "seed": seed}
    return {"name": "3d_hybrid", "kwargs": kwargs}


FOREGROUND = affine_spec([0.0, 20.0])  # certain lesion everywhere
BACKGROUND = affine_spec([20.0, 0.0])  # certain background everywhere


def configuration_entry(network: dict[str, Any], spacing: tuple = (3.0, 2.0, 2.0)) -> dict:
    """A plans configuration with the fields inference reads (others minimal)."""
    return {
        "data_id": "",
        "spacing_mm": list(spacing),
        "patch_size": [4, 8, 8],
        "batch_size": 2,
        "normalization": [{"scheme": "zscore"}],
        "preprocessing": {"crop_to_nonzero": True, "foreground_samples": 10},
        "network": network,
        "parameters": 1,
        "memory_estimate_gb": 0.1,
        "training": {},
        "augmentation": {},
        "inference": {"step": 0.5, "gaussian": True, "mirror_axes": [0, 1, 2]},
    }


def make_plans(
    networks: dict[str, dict[str, Any]],
    recommended: str | None = None,
    postprocessing: dict[str, Any] | None = None,
) -> Plans:
    """Schema-valid plans with one configuration per ``{name: network spec}`` (and the
    plans' default ``postprocessing`` when given)."""
    extra = {} if postprocessing is None else {"postprocessing": postprocessing}
    payload = {
        **extra,
        "dataset": DATASET,
        "gpu_memory_gb": 1.0,
        "gpu_memory_source": "default",
        "device": "cpu",
        "recommended_configuration": recommended or next(iter(networks)),
        "configurations": {n: configuration_entry(s) for n, s in networks.items()},
    }
    return finalize(payload)


def make_workspace(root: Path, cases: int = 4, folds: int = 2, oblique: bool = False) -> Workspace:
    """raw/Tiny with ``cases`` cases and splits.json dealing them into ``folds`` folds."""
    workspace = Workspace.under(root)
    write_tiny_dataset(workspace.raw / DATASET, cases=cases, meta=tiny_meta(oblique=oblique))
    ids = [f"case{i:03d}" for i in range(cases)]
    splits = [
        {"train": [c for j, c in enumerate(ids) if j % folds != k], "val": ids[k::folds]}
        for k in range(folds)
    ]
    write_json(workspace.preprocessed / DATASET / "splits.json", splits)
    return workspace


def write_fold(
    config_dir: Path,
    fold: int | str,
    network_spec: dict[str, Any],
    plans_id: str,
    checkpoint: str = "final",
) -> nn.Module:
    """Save a checkpoint of a freshly built network as the trainer would; returns it."""
    network = build_network(network_spec)
    payload = {"model": network.state_dict(), "network": network_spec, "plans_id": plans_id,
               "configuration": config_dir.name, "epoch": 1, "optimizer": {}}  # fmt: skip
    save_checkpoint(config_dir / f"fold_{fold}" / f"checkpoint_{checkpoint}.pt", payload)
    return network.eval()


def write_results(
    workspace: Workspace,
    plans: Plans,
    folds: dict[str, list[dict[str, Any] | None]] | None = None,
) -> Path:
    """``results/Tiny/<CONFIG>/`` for every configuration of the plans.

    Args:
        folds: ``{configuration: [network spec per fold]}``; None: two folds each with the
            configuration's own network.
    """
    results = workspace.results / DATASET
    for name, entry in plans.configurations.items():
        config_dir = results / name
        config_dir.mkdir(parents=True, exist_ok=True)
        write_plans(config_dir / "plans.json", plans)
        shutil.copyfile(workspace.raw / DATASET / "dataset.json", config_dir / "dataset.json")
        specs = (folds or {}).get(name, [entry["network"], entry["network"]])
        for k, spec in enumerate(specs):
            if spec is not None:
                write_fold(config_dir, k, spec, plans.plans_id)
    return results
