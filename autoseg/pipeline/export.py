"""Sharing a model: a zip of trained folds (``autoseg_export``) and ONNX export.

The zip holds, per configuration, ``<CONFIG>/plans.json``, ``<CONFIG>/dataset.json`` and
``<CONFIG>/fold_<k>/checkpoint_<final|best>.pt`` (weights, network spec and plans_id
only: optimiser and RNG states are dropped), plus ``inference_contract.json`` at the top:
the autoseg version, the configurations and folds of the ensemble, its postprocessing, and
per configuration everything a reimplementation needs (spacing, normalisation, patch,
step, mirror axes, labels, channels). ``-m model.zip`` predicts from it with no dataset and
no network access; members and sizes are checked before extraction
(:mod:`autoseg.inference.model_zip`), so a crafted zip can neither write outside its
temporary folder, nor fill a disk, nor point the contract at a folder elsewhere.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

import autoseg
from autoseg.core.atomic import atomic_path, write_json
from autoseg.core.checkpoint import load_checkpoint
from autoseg.core.errors import InvalidInputError
from autoseg.core.paths import ensure_writable_file
from autoseg.core.run_layout import ConfigLayout
from autoseg.inference.choice import calibration_temperatures, resolve_choice
from autoseg.inference.model import TrainedModel, calibrated, fold_id, fold_json
from autoseg.inference.model_zip import CONTRACT_NAME
from autoseg.networks.export import export_onnx

CONTRACT_FORMAT = 1
KEPT_CHECKPOINT_KEYS = ("model", "network", "plans_id", "configuration", "dataset", "fold",
                        "epoch", "format_version")  # fmt: skip


def configuration_contract(model: TrainedModel) -> dict[str, Any]:
    """What predicting with one configuration depends on, as plain JSON."""
    settings = model.settings
    return {
        "plans_id": model.plans_id,
        "spacing_mm": list(model.spec.spacing_mm),
        "preprocessing": model.spec.to_json(),
        "patch_size": list(settings.patch_size),
        "slices": settings.slices,
        "step": settings.step,
        "gaussian": settings.gaussian,
        "gaussian_sigma_scale": settings.sigma_scale,
        "mirror_axes": list(settings.mirror_axes),
        "num_classes": model.num_classes,
        "in_channels": model.entry.network.in_channels,
        "network": model.entry.network.name,
        "folds": [fold_json(f) for f in model.folds],
        "temperature": settings.temperature,
    }


def inference_contract(
    models: Sequence[TrainedModel], postprocessing: dict[str, Any], checkpoint: str
) -> dict[str, Any]:
    """The top-level contract of an exported ensemble."""
    return {
        "format": "autoseg-model",
        "format_version": CONTRACT_FORMAT,
        "autoseg_version": autoseg.__version__,
        "checkpoint": checkpoint,
        "configurations": [m.configuration for m in models],
        "postprocessing": dict(postprocessing),
        "labels": models[0].labels,
        "channel_names": models[0].channel_names,
        "per_configuration": {m.configuration: configuration_contract(m) for m in models},
    }


def _slim_checkpoint(path: Path) -> bytes:
    """A checkpoint with what inference needs only (weights, spec, plans_id)."""
    payload = load_checkpoint(path)
    buffer = io.BytesIO()
    torch.save({k: payload[k] for k in KEPT_CHECKPOINT_KEYS if k in payload}, buffer)
    return buffer.getvalue()


def _write_configuration(archive: zipfile.ZipFile, model: TrainedModel, checkpoint: str) -> None:
    name, layout = model.configuration, ConfigLayout(model.source)
    for path in (layout.plans, layout.dataset_json):
        archive.write(path, f"{name}/{path.name}")
    for fold in model.folds:
        source = layout.fold(fold).checkpoint(checkpoint)
        member = f"{name}/{source.relative_to(layout.folder).as_posix()}"
        archive.writestr(member, _slim_checkpoint(source))


def export_model_zip(
    results_dir: str | os.PathLike,
    configurations: Sequence[str] | None,
    folds: Sequence[int | str] | None,
    output_zip: str | os.PathLike,
    checkpoint: str | None = "final",
    overwrite: bool = False,
) -> Path:
    """Write trained folds of ``results/<NAME>`` as a shareable zip (``autoseg_export``).

    Args:
        results_dir: ``results/<NAME>``.
        configurations: configurations to include; None: find_best's choice
            (inference.json, with its postprocessing), else the recommended one.
        folds: folds to include; None: inference.json's, else every trained fold.
        output_zip: the zip to write (atomically).
        checkpoint: ``final`` or ``best``; None: inference.json's choice.
        overwrite: replace an existing zip.

    Returns:
        The zip path.

    Raises:
        InvalidInputError: nothing trained, missing folds, or an existing zip.
    """
    results_dir, output_zip = Path(results_dir), Path(output_zip)
    if output_zip.exists() and not overwrite:
        raise InvalidInputError(f"{output_zip}: exists (use --overwrite to replace it)")
    ensure_writable_file(output_zip, "model zip")
    names, folds, post, checkpoint = resolve_choice(results_dir, configurations, folds, checkpoint)
    temperatures = calibration_temperatures(results_dir)
    models = [
        calibrated(TrainedModel.from_folder(results_dir / n, folds, checkpoint, "cpu"),
                   temperatures.get(n, 1.0))
        for n in names
    ]  # fmt: skip
    contract = inference_contract(models, post, checkpoint)
    contract["dataset"] = results_dir.name
    with atomic_path(output_zip) as temp, zipfile.ZipFile(temp, "w", zipfile.ZIP_DEFLATED) as zf:
        for model in models:
            _write_configuration(zf, model, checkpoint)
        zf.writestr(CONTRACT_NAME, _json_text(contract))
    return output_zip


def _json_text(payload: Any) -> str:
    return json.dumps(payload, indent=2, sort_keys=True) + "\n"


def export_onnx_from_results(
    results_dir: str | os.PathLike,
    configuration: str,
    fold: int | str,
    output_onnx: str | os.PathLike,
    checkpoint: str = "final",
) -> tuple[Path, Path]:
    """One fold's network as ONNX, with the inference contract as JSON beside it.

    ``autoseg_export -d NAME -c CONFIG -f FOLD --onnx out.onnx`` writes ``out.onnx`` and
    ``out.json``: the graph computes one window's logits; preprocessing, sliding window,
    TTA and postprocessing are what the JSON describes.

    Returns:
        The ONNX and JSON paths.
    """
    results_dir, output_onnx = Path(results_dir), ensure_writable_file(output_onnx, "ONNX file")
    model = TrainedModel.from_folder(
        results_dir / configuration, [fold_id(fold)], checkpoint, "cpu"
    )
    contract = inference_contract([model], {}, checkpoint)
    contract.update(dataset=results_dir.name, onnx={"input": "image", "output": "logits"})
    block = contract["per_configuration"][configuration]
    output_onnx.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(output_onnx) as temp:
        export_onnx(model.networks[0], block["in_channels"], block["patch_size"], temp)
    json_path = output_onnx.with_suffix(".json")
    write_json(json_path, contract)
    return output_onnx, json_path
