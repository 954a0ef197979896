"""A trained configuration, loaded for inference: its folds' networks and what they need.

:meth:`TrainedModel.from_folder` is the one way a model is read for prediction (autoseg_predict,
the end-of-fold validation, export, the benchmark); which configurations to load is
find_best's choice (:mod:`autoseg.inference.choice`).

``results/<NAME>/<CONFIG>/`` is self-contained (DESIGN §3): ``plans.json`` and
``dataset.json`` beside ``fold_<k>/checkpoint_{final,best,latest}.pt``. Loading checks every
checkpoint against the folder's plans (``plans_id``), so a network never runs with a
preprocessing or window it was not trained with.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from autoseg.core.atomic import read_json
from autoseg.core.checkpoint import load_checkpoint
from autoseg.core.device import resolve_device
from autoseg.core.errors import InvalidInputError
from autoseg.core.run_layout import (
    CHECKPOINTS,
    ConfigLayout,
    checkpoint_name,
)
from autoseg.data.layout import parse_dataset_json
from autoseg.inference.settings import InferenceSettings
from autoseg.networks import build_network
from autoseg.plans import Configuration, load_plans
from autoseg.plans.preprocessing import PreprocessingSpec


@dataclass(frozen=True)
class TrainedModel:
    """One configuration's trained folds, ready to predict.

    Attributes:
        configuration: the configuration's name in the plans (``3d_hybrid`` ...).
        entry: the configuration's entry of plans.json.
        plans_id: content hash of the plans every fold was trained with.
        labels: ``{name: value}`` of dataset.json.
        channel_names: ``{"0": "T1w", ...}`` of dataset.json.
        spec: the preprocessing the networks were trained on.
        settings: inference settings from the plans (flags override them with ``with_``).
        networks: one network per fold, in eval mode on the device.
        folds: the fold ids (``"0"`` .. ``"4"`` or ``"all"``), in the order of ``networks``.
        source: the configuration folder the model was read from.
        checkpoint: which checkpoint of each fold (``final``, ``best``, ``latest``).
        checkpoint_sha256: SHA-256 of each fold's checkpoint file, in fold order
            (provenance of every prediction made with it).
    """

    configuration: str
    entry: Configuration = field(repr=False)
    plans_id: str
    labels: dict[str, int]
    channel_names: dict[str, str]
    spec: PreprocessingSpec
    settings: InferenceSettings
    networks: tuple[nn.Module, ...] = field(repr=False)
    folds: tuple[str, ...]
    source: Path
    checkpoint: str = "final"
    checkpoint_sha256: tuple[str, ...] = ()

    @property
    def num_classes(self) -> int:
        return self.settings.num_classes

    @property
    def num_channels(self) -> int:
        return self.spec.num_channels

    @classmethod
    def from_folder(
        cls,
        config_dir: str | os.PathLike,
        folds: list[int | str] | None = None,
        checkpoint: str = "final",
        device: str = "cpu",
    ) -> TrainedModel:
        """Load a trained configuration folder ``results/<NAME>/<CONFIG>/``.

        Args:
            config_dir: the configuration folder (its name is the configuration's name).
            folds: fold ids to load; None loads every fold holding the checkpoint.
            checkpoint: ``final``, ``best`` or ``latest``.
            device: ``auto``, ``cpu``, ``cuda``, ``cuda:1``, ``mps``.

        Returns:
            The model, networks in eval mode on the device.

        Raises:
            InvalidInputError: missing plans/dataset.json, nothing trained (listing what
                exists), a missing fold, or a checkpoint trained with other plans.
        """
        config_dir = Path(config_dir)
        layout = ConfigLayout(config_dir)
        if checkpoint not in CHECKPOINTS:
            raise InvalidInputError(f"checkpoint '{checkpoint}': choose one of {CHECKPOINTS}")
        plans = load_plans(layout.plans)
        entry = plans.configuration(config_dir.name)
        labels, channels = read_dataset_json(config_dir)
        chosen = _select_folds(config_dir, folds, checkpoint)
        device = str(resolve_device(device))
        paths = [layout.fold(f).checkpoint(checkpoint) for f in chosen]
        networks = tuple(load_network(path, plans.plans_id, entry, device) for path in paths)
        num_classes = entry.network.num_classes
        num_classes = len(labels) if num_classes is None else num_classes
        settings = InferenceSettings.from_configuration(entry, num_classes, device=device)
        return cls(
            config_dir.name, entry, plans.plans_id, labels, channels,
            entry.preprocessing_spec, settings, networks, tuple(chosen), config_dir,
            checkpoint, tuple(file_sha256(path) for path in paths),
        )  # fmt: skip


def fold_id(fold: int | str) -> str:
    """``0`` / ``"0"`` -> ``"0"``; ``"all"`` stays; anything else is bad usage."""
    text = str(fold)
    if text != "all" and not text.isdigit():
        raise InvalidInputError(f"fold '{fold}': expected a fold number or 'all'")
    return text


def fold_json(fold: str) -> int | str:
    """A fold id as written to JSON: a number, or ``"all"``."""
    return int(fold) if fold.isdigit() else fold


def trained_folds(config_dir: Path, checkpoint: str = "final") -> list[str]:
    """Fold ids whose folder holds ``checkpoint_<checkpoint>.pt``."""
    return ConfigLayout(Path(config_dir)).trained_folds(checkpoint)


def _nothing_trained(config_dir: Path, checkpoint: str) -> InvalidInputError:
    """An error listing the checkpoints that do exist, so the user sees what to run."""
    lines = [
        f"{fold.folder.name}: "
        + (", ".join(sorted(p.name for p in fold.folder.glob("*.pt"))) or "empty")
        for fold in ConfigLayout(Path(config_dir)).folds().values()
    ]
    found = "; ".join(lines) or "no fold_<k> folders"
    return InvalidInputError(
        f"{config_dir}: no trained fold with {checkpoint_name(checkpoint)} (found: {found}); "
        "train with autoseg_train or pick another --checkpoint"
    )


def _select_folds(config_dir: Path, folds: list[int | str] | None, checkpoint: str) -> list[str]:
    available = trained_folds(config_dir, checkpoint)
    if folds is None:
        if not available:
            raise _nothing_trained(config_dir, checkpoint)
        return available
    wanted = [fold_id(f) for f in folds]
    missing = [f for f in wanted if f not in available]
    if missing:
        raise InvalidInputError(
            [
                f"{ConfigLayout(Path(config_dir)).fold(f).checkpoint(checkpoint)}: not found "
                f"(trained folds: {', '.join(available) or 'none'})"
                for f in missing
            ]
        )
    return wanted


def read_dataset_json(config_dir: Path) -> tuple[dict[str, int], dict[str, str]]:
    """Labels and channel names from the configuration folder's dataset.json copy."""
    path = ConfigLayout(Path(config_dir)).dataset_json
    if not path.is_file():
        raise InvalidInputError(f"{path}: missing (a results folder keeps a copy of it)")
    try:
        parsed = parse_dataset_json(read_json(path), path)
    except ValueError as error:
        raise InvalidInputError(str(error)) from error
    return parsed.labels, parsed.channel_names


def load_network(path: Path, plans_id: str, entry: Configuration, device: str) -> nn.Module:
    """One fold's network from its checkpoint, refusing checkpoints of other plans."""
    payload = load_checkpoint(path, plans_id, map_location="cpu")
    if payload.get("plans_id") is None:
        raise InvalidInputError(f"{path}: records no plans_id; cannot tell which plans it fits")
    network = build_network(payload.get("network") or entry.network.to_json())
    try:
        network.load_state_dict(payload["model"])
    except (KeyError, RuntimeError) as error:
        raise InvalidInputError(f"{path}: weights do not fit the network ({error})") from error
    return network.to(device).eval()


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def calibrated(model: TrainedModel, temperature: float) -> TrainedModel:
    """The model with its logits divided by ``temperature`` before each softmax."""
    return dataclasses.replace(model, settings=model.settings.with_(temperature=temperature))
