"""End-of-fold validation: predict a fold's held-out cases and score them (DESIGN §7).

``autoseg_train`` calls :func:`validate_fold` after :func:`autoseg.pipeline.fit_fold.train_fold`
returns (``--val-only`` calls it alone). The raw images of the fold's ``val`` cases
(``splits.json``) go through the same predictor as any user input, with probabilities
saved so that :mod:`autoseg.pipeline.find_best` can ensemble configurations later, and
``fold_<k>/validation/summary.json`` holds their metrics against ``labelsTr``.

Fold ``all`` has no held-out cases. Asked (``autoseg_train NAME CONFIG all --val-only``),
it is validated on its own training cases instead (resubstitution, as nnU-Net validates
its fold ``all``): at most
:data:`RESUBSTITUTION_CASES` of them, spread over the sorted ids, predicted with autocast.
Those scores are optimistic and are never reported as cross-validation; they exist so
that ``autoseg_find_best`` can choose postprocessing for a model trained on everything,
which is what a time-budgeted run trains. A model that has not fitted its training cases
(a CPU budget of minutes) makes the same kind of false positives on them as on new cases
(docs/quality.md measures how far the choice carries over); on a model that has fitted
them, postprocessing rarely raises their Dice, and find_best then chooses none.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from autoseg.core.atomic import write_json
from autoseg.core.errors import InvalidInputError
from autoseg.core.run_layout import SUMMARY_JSON, RunLayout, resolve_dataset_dir
from autoseg.core.workspace import Workspace
from autoseg.data.layout import RawDataset
from autoseg.evaluation import evaluate_folders
from autoseg.inference.folder_prediction import predict_folder
from autoseg.inference.inputs import InputCase
from autoseg.inference.model import TrainedModel, fold_id
from autoseg.training.splits import read_splits


def open_raw(workspace: Workspace, dataset: str) -> RawDataset:
    """The raw dataset ``raw/<NAME>`` (also ``Dataset012_NAME`` / ``12``)."""
    return RawDataset.open(resolve_dataset_dir(Path(workspace.raw), dataset))


RESUBSTITUTION_CASES = 20


def resubstitution_ids(raw: RawDataset) -> list[str]:
    """Fold ``all``'s validation cases: up to :data:`RESUBSTITUTION_CASES` of the training
    cases, evenly spread over the sorted ids (the same ones on every call)."""
    everything = sorted(case.case_id for case in raw.training_cases())
    step = max(1.0, len(everything) / RESUBSTITUTION_CASES)
    return [everything[int(i * step)] for i in range(min(len(everything), RESUBSTITUTION_CASES))]


def validation_ids(splits: list[dict[str, list[str]]], fold: str, where: Path) -> list[str]:
    """The ``val`` case ids of a numbered fold."""
    index = int(fold)
    if not 0 <= index < len(splits):
        raise InvalidInputError(f"{where}: fold {fold} does not exist ({len(splits)} folds)")
    return sorted(splits[index]["val"])


def input_cases(raw: RawDataset, case_ids: Sequence[str]) -> list[InputCase]:
    """The raw ``imagesTr`` channel files of the given cases (missing ones are an error)."""
    cases = {case.case_id: case for case in raw.training_cases()}
    missing = [c for c in case_ids if c not in cases]
    if missing:
        raise InvalidInputError([f"{raw.images_tr}: no images for case '{c}'" for c in missing])
    return [(c, [Path(f) for f in cases[c].image_files]) for c in case_ids]


def foreground_labels(labels: dict[str, int]) -> list[int]:
    """Label values scored by evaluation (background and nnU-Net's ``ignore`` excluded)."""
    return sorted(v for name, v in labels.items() if v != 0 and name != "ignore")


def _link(source: Path, target: Path) -> None:
    try:
        os.symlink(source.resolve(), target)
    except OSError:  # file systems without symlinks
        shutil.copyfile(source, target)


def evaluate_cases(
    raw: RawDataset,
    case_ids: Sequence[str],
    prediction_dir: Path,
    output_json: Path,
    labels: Sequence[int],
    convention: str = "isles22",
    num_processes: int | None = None,
) -> dict[str, Any]:
    """Score the predictions of some training cases against ``labelsTr``.

    :func:`autoseg.evaluation.evaluate_folders` wants every reference predicted, so the
    chosen references are linked into a temporary folder; the summary then names the real
    ``labelsTr`` files.
    """
    ending = raw.dataset_json.file_ending
    output_json.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".partial-reference-", dir=output_json.parent) as tmp:
        for case_id in case_ids:
            source = raw.labels_tr / f"{case_id}{ending}"
            if not source.is_file():
                raise InvalidInputError(f"{source}: reference label missing")
            _link(source, Path(tmp) / source.name)
        summary = evaluate_folders(
            tmp, prediction_dir, output_json, labels=labels, convention=convention,
            num_processes=num_processes, overwrite=True, progress=False,
        )  # fmt: skip
    summary["reference_dir"] = str(raw.labels_tr)
    for case in summary["cases"]:
        case["reference_file"] = str(raw.labels_tr / Path(case["reference_file"]).name)
    write_json(output_json, summary)
    return summary


def validate_fold(
    workspace: Workspace,
    dataset: str,
    configuration: str,
    fold: int | str,
    checkpoint: str = "final",
    device: str = "auto",
    save_probabilities: bool = True,
    overwrite: bool = True,
    convention: str = "isles22",
    num_processes: int | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Predict fold ``fold``'s validation cases and write ``validation/summary.json``.

    Args:
        workspace: raw / preprocessed / results roots.
        dataset: dataset name.
        configuration: the trained configuration.
        fold: fold number, or ``"all"`` (validated on its own training cases, see the
            module docstring).
        checkpoint: ``final`` (default, as the challenge submission would use) or ``best``.
        device: ``auto``, ``cpu``, ``cuda`` ...
        save_probabilities: keep ``<case>.npz`` for later ensembling (find_best needs it).
        overwrite: redo predictions that exist (False resumes: finished cases are kept).
        convention: lesion convention of the metrics (``isles22`` or ``atlas``).
        num_processes: evaluation workers (None: automatic).
        progress: show progress bars.

    Returns:
        The summary.

    Raises:
        InvalidInputError: missing model, splits, images or references.
    """
    fold = fold_id(fold)
    layout = RunLayout.of_results(workspace, dataset)
    raw = open_raw(workspace, layout.dataset)
    resubstitution = fold == "all"
    if resubstitution:
        case_ids = resubstitution_ids(raw)
        print(f"fold 'all' trains on every case: validating on {len(case_ids)} of its training "
              "cases (resubstitution: optimistic scores, for autoseg_find_best to choose "
              "postprocessing on)")  # fmt: skip
    else:
        case_ids = validation_ids(read_splits(layout.splits), fold, layout.preprocessed)
    model = TrainedModel.from_folder(layout.configuration(configuration).folder, [fold], checkpoint,
                              device)  # fmt: skip
    out = layout.fold(configuration, fold).validation
    settings = model.settings.with_(save_probabilities=save_probabilities, progress=progress,
                                    amp=resubstitution or model.settings.amp)  # fmt: skip
    predict_folder(input_cases(raw, case_ids), out, model.networks, model.spec, settings,
                   overwrite=overwrite, resume=not overwrite)  # fmt: skip
    labels = foreground_labels(model.labels)
    return evaluate_cases(raw, case_ids, out, out / SUMMARY_JSON, labels, convention,
                          num_processes)  # fmt: skip
