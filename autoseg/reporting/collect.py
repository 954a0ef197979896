"""Gather what the report shows from the files earlier steps wrote.

Only the fingerprint and the plans are required (a report before planning says
nothing); every other input may be missing and then shows as "not available yet".
A file that exists but cannot be read is an error that names it.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from autoseg.core.atomic import is_temporary, read_json
from autoseg.core.errors import InvalidInputError
from autoseg.core.run_layout import FOLD_PREFIX, TRAINING_LOG_CSV, RunLayout, resolve_dataset_dir
from autoseg.core.workspace import Workspace
from autoseg.data.io import VOLUME_ENDINGS, file_ending, strip_ending
from autoseg.data.prediction_files import DISAGREEMENT_SUFFIX, LESIONS_SUFFIX, UNCERTAINTY_SUFFIX

if TYPE_CHECKING:
    from autoseg.reporting.lesion_table import LesionTables

FIRST_CHANNEL_SUFFIX = "_0000"

TrainingLog = list[dict[str, float]]


@dataclass(frozen=True)
class CaseFiles:
    """Files of one case for the overlays (``image`` is the first channel's file)."""

    case_id: str
    image: Path | None
    prediction: Path
    reference: Path | None
    uncertainty: Path | None
    lesions_json: Path | None


@dataclass(frozen=True)
class ReportInputs:
    """Everything the report reads; None (or empty) where a piece is not there yet.

    Attributes:
        dataset: dataset name as the folders spell it.
        fingerprint: ``fingerprint.json`` contents.
        plans: ``plans.json`` contents.
        training_logs: ``{configuration: {"fold_k": rows of training_log.csv}}``.
        find_best: ``find_best.json`` contents (the cross-validation table).
        metrics: test metrics summary written by ``evaluate_folders``.
        metrics_path: where the metrics were looked for.
        cases: case files for overlays, in no particular order.
        lesion_tables: the lesion table section's data (None without predictions).
    """

    dataset: str
    fingerprint: dict[str, Any]
    plans: dict[str, Any]
    training_logs: dict[str, dict[str, TrainingLog]]
    find_best: dict[str, Any] | None
    metrics: dict[str, Any] | None
    metrics_path: Path
    cases: list[CaseFiles]
    lesion_tables: LesionTables | None = None


def dataset_folder_name(workspace: Workspace, dataset: str) -> str:
    """The dataset's folder name (``Dataset012_Foo`` found by ``Foo`` or ``12``), or the
    name as given when the raw dataset is not in this workspace."""
    try:
        return resolve_dataset_dir(workspace.raw, dataset).name
    except (InvalidInputError, FileNotFoundError, ValueError):
        return dataset


def required_json(path: Path, produced_by: str) -> dict[str, Any]:
    """Read a JSON file the report cannot do without, saying which command writes it."""
    if not path.is_file():
        raise InvalidInputError(f"{path}: not found (run {produced_by} first)")
    return optional_json(path)


def optional_json(path: Path) -> dict[str, Any] | None:
    """A JSON file's contents, or None when it does not exist yet."""
    if not path.is_file():
        return None
    try:
        return read_json(path)
    except (ValueError, OSError) as error:
        raise InvalidInputError(f"{path}: unreadable ({error})") from error


def _number(text: str | None) -> float:
    try:
        return float(text) if text not in (None, "") else math.nan
    except ValueError:
        return math.nan


def read_training_log(path: Path) -> TrainingLog:
    """Rows of ``training_log.csv`` as ``{column: float}`` (empty cells are NaN)."""
    with path.open(newline="") as handle:
        return [
            {key: _number(value) for key, value in row.items()} for row in csv.DictReader(handle)
        ]


def training_logs(results_dir: Path) -> dict[str, dict[str, TrainingLog]]:
    """``{configuration: {fold folder: log rows}}`` for every ``*/fold_*/training_log.csv``."""
    logs: dict[str, dict[str, TrainingLog]] = {}
    for path in sorted(results_dir.glob(f"*/{FOLD_PREFIX}*/{TRAINING_LOG_CSV}")):
        rows = read_training_log(path)
        if rows:
            logs.setdefault(path.parent.parent.name, {})[path.parent.name] = rows
    return logs


def volumes_by_case(folder: Path | None) -> dict[str, Path]:
    """``{file name without ending: file}`` for the volumes of a folder (empty if absent)."""
    if folder is None or not folder.is_dir():
        return {}
    return {
        strip_ending(path): path
        for path in sorted(folder.iterdir())
        if path.is_file() and file_ending(path) in VOLUME_ENDINGS and not is_temporary(path)
    }


def _first_existing(folders: list[Path | None]) -> Path | None:
    return next((f for f in folders if f is not None and f.is_dir()), None)


def case_files(
    images_dir: Path | None, predictions_dir: Path | None, references_dir: Path | None
) -> list[CaseFiles]:
    """Pair predictions with their image (``<case>_0000`` or ``<case>``), reference and
    the optional ``<case>_uncertainty`` volume and ``<case>_lesions.json``."""
    predictions = volumes_by_case(predictions_dir)
    images, references = volumes_by_case(images_dir), volumes_by_case(references_dir)
    cases = []
    for case_id, prediction in sorted(predictions.items()):
        if case_id.endswith((UNCERTAINTY_SUFFIX, DISAGREEMENT_SUFFIX)):
            continue
        lesions = predictions_dir / f"{case_id}{LESIONS_SUFFIX}"
        image = images.get(case_id + FIRST_CHANNEL_SUFFIX, images.get(case_id))
        cases.append(
            CaseFiles(
                case_id,
                image,
                prediction,
                references.get(case_id),
                predictions.get(case_id + UNCERTAINTY_SUFFIX),
                lesions if lesions.is_file() else None,
            )
        )
    return cases


def default_folders(layout: RunLayout) -> tuple[Path | None, Path, Path | None]:
    """Images, predictions and references when none are given: the test split if it has
    labels (``imagesTs``/``labelsTs``), else the training split, and ``results/<NAME>/
    test/predictions``."""
    raw, predictions = layout.raw, layout.test_predictions
    if (raw / "labelsTs").is_dir():
        return raw / "imagesTs", predictions, raw / "labelsTs"
    images = _first_existing([raw / "imagesTs", raw / "imagesTr"])
    return images, predictions, _first_existing([raw / "labelsTr"])


def case_dice(metrics: dict[str, Any]) -> dict[str, float]:
    """Each case's Dice averaged over labels, from a metrics summary's ``cases`` list."""
    scores = {}
    for case in metrics.get("cases", []):
        values = [m.get("dice") for m in case.get("metrics", {}).values()]
        finite = [v for v in values if v is not None and math.isfinite(v)]
        scores[case["case_id"]] = float(np.mean(finite)) if finite else math.nan
    return scores


def collect_inputs(
    workspace: Workspace,
    dataset: str,
    metrics_path: Path | None = None,
    images_dir: Path | None = None,
    predictions_dir: Path | None = None,
    references_dir: Path | None = None,
) -> ReportInputs:
    """Read every input of the report (see the module docstring for what may be missing).

    Raises:
        InvalidInputError: no fingerprint or plans yet, or an unreadable input file.
    """
    name = dataset_folder_name(workspace, dataset)
    layout = RunLayout(workspace, name)
    defaults = default_folders(layout)
    metrics_path = Path(metrics_path or layout.test_metrics)
    folders = [
        Path(given) if given else default
        for given, default in zip(
            (images_dir, predictions_dir, references_dir), defaults, strict=True
        )
    ]
    return ReportInputs(
        dataset=name,
        fingerprint=required_json(layout.fingerprint, f"autoseg_plan -d {name}"),
        plans=required_json(layout.plans, f"autoseg_plan -d {name}"),
        training_logs=training_logs(layout.results),
        find_best=optional_json(layout.find_best_json),
        metrics=optional_json(metrics_path),
        metrics_path=metrics_path,
        cases=case_files(*folders),
    )
