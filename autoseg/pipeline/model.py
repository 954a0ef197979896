"""A trained configuration, loaded for inference: its folds' networks and what they need.

``results/<NAME>/<CONFIG>/`` is self-contained (DESIGN §3): ``plans.json`` and
``dataset.json`` beside ``fold_<k>/checkpoint_{final,best,latest}.pt``. Loading checks every
checkpoint against the folder's plans (``plans_id``), so a network never runs with a
preprocessing or window it was not trained with.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from autoseg.data.atomic import read_json
from autoseg.data.errors import InvalidInputError
from autoseg.data.layout import parse_dataset_json, resolve_dataset_dir
from autoseg.data.workspace import Workspace
from autoseg.inference.settings import InferenceSettings
from autoseg.networks import build_network
from autoseg.planning.device import check_device
from autoseg.plans import Configuration, load_plans
from autoseg.plans.preprocessing import PreprocessingSpec
from autoseg.training.checkpoint import load_checkpoint

CHECKPOINTS = ("final", "best", "latest")
INFERENCE_JSON = "inference.json"


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


def resolve_device(device: str) -> str:
    """``auto`` picks CUDA, then Apple MPS, then the CPU; other names must exist here."""
    if check_device(device) != "auto":
        return device
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def fold_id(fold: int | str) -> str:
    """``0`` / ``"0"`` -> ``"0"``; ``"all"`` stays; anything else is bad usage."""
    text = str(fold)
    if text != "all" and not text.isdigit():
        raise InvalidInputError(f"fold '{fold}': expected a fold number or 'all'")
    return text


def fold_json(fold: str) -> int | str:
    """A fold id as written to JSON: a number, or ``"all"``."""
    return int(fold) if fold.isdigit() else fold


def fold_folders(config_dir: Path) -> dict[str, Path]:
    """``{fold id: fold_<k> folder}`` of a configuration folder, numbers first."""
    found = {
        p.name[len("fold_") :]: p
        for p in Path(config_dir).glob("fold_*")
        if p.is_dir() and (p.name[5:].isdigit() or p.name[5:] == "all")
    }
    order = sorted(found, key=lambda f: (not f.isdigit(), int(f) if f.isdigit() else 0))
    return {fold: found[fold] for fold in order}


def trained_folds(config_dir: Path, checkpoint: str = "final") -> list[str]:
    """Fold ids whose folder holds ``checkpoint_<checkpoint>.pt``."""
    return [
        fold
        for fold, folder in fold_folders(config_dir).items()
        if (folder / f"checkpoint_{checkpoint}.pt").is_file()
    ]


def _nothing_trained(config_dir: Path, checkpoint: str) -> InvalidInputError:
    """An error listing the checkpoints that do exist, so the user sees what to run."""
    lines = [
        f"{folder.name}: " + (", ".join(sorted(p.name for p in folder.glob("*.pt"))) or "empty")
        for folder in fold_folders(config_dir).values()
    ]
    found = "; ".join(lines) or "no fold_<k> folders"
    return InvalidInputError(
        f"{config_dir}: no trained fold with checkpoint_{checkpoint}.pt (found: {found}); "
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
                f"{config_dir / f'fold_{f}' / f'checkpoint_{checkpoint}.pt'}: not found "
                f"(trained folds: {', '.join(available) or 'none'})"
                for f in missing
            ]
        )
    return wanted


def read_dataset_json(config_dir: Path) -> tuple[dict[str, int], dict[str, str]]:
    """Labels and channel names from the configuration folder's dataset.json copy."""
    path = Path(config_dir) / "dataset.json"
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


def load_model_folder(
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
    if checkpoint not in CHECKPOINTS:
        raise InvalidInputError(f"checkpoint '{checkpoint}': choose one of {CHECKPOINTS}")
    plans = load_plans(config_dir / "plans.json")
    entry = plans.configuration(config_dir.name)
    labels, channels = read_dataset_json(config_dir)
    chosen = _select_folds(config_dir, folds, checkpoint)
    device = resolve_device(device)
    paths = [config_dir / f"fold_{f}" / f"checkpoint_{checkpoint}.pt" for f in chosen]
    networks = tuple(load_network(path, plans.plans_id, entry, device) for path in paths)
    num_classes = entry.network.num_classes
    num_classes = len(labels) if num_classes is None else num_classes
    settings = InferenceSettings.from_configuration(entry, num_classes, device=device)
    return TrainedModel(
        config_dir.name, entry, plans.plans_id, labels, channels,
        entry.preprocessing_spec, settings, networks, tuple(chosen), config_dir,
        checkpoint, tuple(file_sha256(path) for path in paths),
    )  # fmt: skip


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def results_folder(workspace: Workspace, dataset: str) -> Path:
    """``results/<NAME>``, also found from ``Dataset012_NAME`` / ``12`` via the raw folder."""
    direct = Path(workspace.results) / dataset
    if direct.is_dir():
        return direct
    for root in (workspace.preprocessed, workspace.raw, workspace.results):
        try:
            folder = resolve_dataset_dir(Path(root), dataset)
        except InvalidInputError:
            continue
        if (Path(workspace.results) / folder.name).is_dir():
            return Path(workspace.results) / folder.name
    raise InvalidInputError(f"{direct}: no results for dataset '{dataset}' (train it first)")


def trained_configurations(results_dir: Path, checkpoint: str = "final") -> list[str]:
    """Configuration folders of ``results/<NAME>`` with at least one trained fold."""
    if not Path(results_dir).is_dir():
        return []
    return sorted(
        p.name
        for p in Path(results_dir).iterdir()
        if p.is_dir() and (p / "plans.json").is_file() and trained_folds(p, checkpoint)
    )


def read_inference_choice(results_dir: Path) -> dict[str, Any] | None:
    """``results/<NAME>/inference.json`` (find_best's choice), or None when absent."""
    path = Path(results_dir) / INFERENCE_JSON
    if not path.is_file():
        return None
    try:
        choice = read_json(path)
    except ValueError as error:
        raise InvalidInputError(str(error)) from error
    if not isinstance(choice, dict) or not choice.get("configurations"):
        raise InvalidInputError(f"{path}: needs a non-empty 'configurations' list")
    return choice


def calibration_temperatures(results_dir: Path) -> dict[str, float]:
    """``{configuration: temperature}`` that find_best fitted (inference.json), or {}."""
    choice = read_inference_choice(results_dir) or {}
    fitted = choice.get("calibration") or {}
    try:
        return {name: float(entry["temperature"]) for name, entry in fitted.items()}
    except (KeyError, TypeError, ValueError) as error:
        raise InvalidInputError(
            f"{Path(results_dir) / INFERENCE_JSON}: 'calibration' entries need a "
            f"'temperature' ({error})"
        ) from error


def calibrated(model: TrainedModel, temperature: float) -> TrainedModel:
    """The model with its logits divided by ``temperature`` before each softmax."""
    return dataclasses.replace(model, settings=model.settings.with_(temperature=temperature))


def recommended_configuration(results_dir: Path, checkpoint: str) -> str:
    """The plans' recommended configuration if trained, else the only trained one."""
    trained = trained_configurations(results_dir, checkpoint)
    if not trained:
        raise InvalidInputError(
            f"{results_dir}: no configuration has a trained fold with checkpoint_{checkpoint}.pt"
        )
    recommended = load_plans(results_dir / trained[0] / "plans.json").recommended_configuration
    if recommended in trained:
        return recommended
    if len(trained) == 1:
        return trained[0]
    raise InvalidInputError(
        f"{results_dir}: the recommended configuration '{recommended}' is not trained; "
        f"pick one with -c ({', '.join(trained)}) or run autoseg_find_best"
    )


def resolve_choice(
    results_dir: Path,
    configurations: Sequence[str] | None,
    folds: Sequence[int | str] | None,
    checkpoint: str | None,
) -> tuple[list[str], list[int | str] | None, dict[str, Any], str]:
    """Configurations, folds, postprocessing and checkpoint to predict with.

    inference.json's postprocessing applies only to the ensemble it was chosen for.
    """
    choice = read_inference_choice(results_dir) or {}
    chosen = list(choice.get("configurations", []))
    if configurations is None and chosen:
        folds = folds if folds is not None else choice.get("folds")
        configurations = chosen
    elif configurations is None:
        configurations = [recommended_configuration(results_dir, checkpoint or "final")]
    same = sorted(configurations) == sorted(chosen) and (
        folds is None
        or [fold_id(f) for f in folds] == [fold_id(f) for f in choice.get("folds") or []]
    )
    post = dict(choice.get("postprocessing") or {}) if same else {}
    checkpoint = checkpoint or (choice.get("checkpoint") if same else None) or "final"
    return list(configurations), None if folds is None else list(folds), post, checkpoint
