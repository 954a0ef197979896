"""Evaluate a folder of predictions against a folder of references (``autoseg_evaluate``).

Files pair by case id (the file name without its ending: ``.nii.gz``, ``.nii``, ``.mha``,
``.mhd``, ``.nrrd``, ``.nhdr``). Every pair is checked (header only) before any voxel is
read, so all missing predictions and geometry mismatches are reported in one error.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from autoseg.core.atomic import is_temporary, read_json, write_json
from autoseg.core.errors import InvalidInputError
from autoseg.core.paths import ensure_writable_file
from autoseg.core.resources import default_workers, worker_pool
from autoseg.core.run_layout import DATASET_JSON
from autoseg.data.io import VOLUME_ENDINGS, file_ending, read_meta, read_volume, strip_ending
from autoseg.data.layout import parse_dataset_json
from autoseg.data.records import geometry_mismatch
from autoseg.evaluation.lesions import get_convention
from autoseg.evaluation.metrics import both_empty_metrics, evaluate_labels
from autoseg.evaluation.summary import CaseResult, summarise, write_case_csv

BINARY_LESION_LABEL = 1

MAX_DEFAULT_PROCESSES = 8
WORKER_BYTES = 1024**3


@dataclass(frozen=True)
class CasePair:
    """One case to score: its reference and prediction files."""

    case_id: str
    reference_file: Path
    prediction_file: Path


def default_num_processes() -> int:
    """Worker count when none is given: cores and RAM allow it, capped (each holds ~2
    volumes and their distance maps, well under 1 GB for a 1 mm brain)."""
    return default_workers(WORKER_BYTES, cap=MAX_DEFAULT_PROCESSES)


def volume_files(folder: Path) -> dict[str, Path]:
    """``{case_id: file}`` for the volumes in ``folder``; duplicate case ids are an error."""
    if not folder.is_dir():
        raise InvalidInputError(f"{folder}: folder not found")
    found: dict[str, list[Path]] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and file_ending(path) in VOLUME_ENDINGS and not is_temporary(path):
            found.setdefault(strip_ending(path), []).append(path)
    problems = [
        f"{folder}: case '{case_id}' has several files: {', '.join(p.name for p in paths)}"
        for case_id, paths in found.items()
        if len(paths) > 1
    ]
    if problems:
        raise InvalidInputError(problems)
    return {case_id: paths[0] for case_id, paths in found.items()}


def pair_cases(reference_dir: Path, prediction_dir: Path) -> list[CasePair]:
    """Pair every reference with its prediction; a reference without one is an error.

    Predictions without a reference are ignored (a prediction folder may hold test cases).
    """
    references, predictions = volume_files(reference_dir), volume_files(prediction_dir)
    if not references:
        raise InvalidInputError(
            f"{reference_dir}: no reference volumes ({', '.join(VOLUME_ENDINGS)})"
        )
    missing = [
        f"{prediction_dir}: no prediction for case '{case_id}' (reference {path})"
        for case_id, path in sorted(references.items())
        if case_id not in predictions
    ]
    if missing:
        raise InvalidInputError(missing)
    return [
        CasePair(case_id, references[case_id], predictions[case_id])
        for case_id in sorted(references)
    ]


def _pair_problem(pair: CasePair) -> str | None:
    try:
        mismatch = geometry_mismatch(
            read_meta(pair.reference_file), read_meta(pair.prediction_file)
        )
    except InvalidInputError as error:
        return "; ".join(error.problems)
    if mismatch is None:
        return None
    return f"{pair.prediction_file}: {mismatch} against reference {pair.reference_file}"


def check_geometry(pairs: Sequence[CasePair]) -> None:
    """Raise once, listing every unreadable file and every reference/prediction mismatch."""
    problems = [problem for pair in pairs if (problem := _pair_problem(pair)) is not None]
    if problems:
        raise InvalidInputError(problems)


def labels_from_dataset_json(reference_dir: Path) -> list[int] | None:
    """Foreground labels of the dataset.json in ``reference_dir`` or its parent, if any.

    ``labelsTr``/``labelsTs`` sit beside their dataset.json in the raw layout; the
    ``ignore`` label (nnU-Net) is not scored.
    """
    for folder in (reference_dir, reference_dir.parent):
        path = folder / DATASET_JSON
        if path.is_file():
            labels = parse_dataset_json(read_json(path), path).labels
            return sorted(v for name, v in labels.items() if v != 0 and name != "ignore")
    return None


def evaluate_pair(pair: CasePair, labels: Sequence[int] | None, convention: str) -> CaseResult:
    """Read and score one case; errors are re-raised naming the case and its files."""
    try:
        reference, meta = read_volume(pair.reference_file)
        prediction, _ = read_volume(pair.prediction_file)
        metrics = evaluate_labels(reference, prediction, meta.spacing_mm, labels, convention)
        voxels = {label: int(np.count_nonzero(reference == label)) for label in metrics}
    except InvalidInputError as error:
        raise InvalidInputError([f"case '{pair.case_id}': {p}" for p in error.problems]) from error
    except Exception as error:
        raise RuntimeError(
            f"case '{pair.case_id}' ({pair.reference_file}, {pair.prediction_file}): {error}"
        ) from error
    return CaseResult(
        pair.case_id, str(pair.reference_file), str(pair.prediction_file), metrics, voxels
    )


def _evaluate_task(task: tuple[CasePair, Sequence[int] | None, str]) -> CaseResult:
    return evaluate_pair(*task)


def run_cases(
    pairs: Sequence[CasePair], labels: Sequence[int] | None, convention: str, num_processes: int
) -> Iterator[CaseResult]:
    """Score every pair in order, in worker processes when ``num_processes`` > 1."""
    tasks = [(pair, labels, convention) for pair in pairs]
    if num_processes <= 1 or len(tasks) == 1:
        yield from map(_evaluate_task, tasks)
        return
    with worker_pool(min(num_processes, len(tasks))) as pool:
        yield from pool.map(_evaluate_task, tasks)


def fill_missing_labels(results: list[CaseResult], labels: Sequence[int]) -> list[CaseResult]:
    """Give every case every label: a label absent from both masks scores as both-empty."""
    filled = []
    for result in results:
        metrics = {label: result.metrics.get(label, both_empty_metrics()) for label in labels}
        voxels = {label: result.reference_voxels.get(label, 0) for label in labels}
        filled.append(
            CaseResult(
                result.case_id, result.reference_file, result.prediction_file, metrics, voxels
            )
        )
    return filled


def csv_path_for(output_json: Path) -> Path:
    """The per-case CSV written beside the summary (``metrics.json`` -> ``metrics.csv``)."""
    return output_json.with_suffix(".csv")


def evaluate_folders(
    reference_dir: str | os.PathLike,
    prediction_dir: str | os.PathLike,
    output_json: str | os.PathLike,
    labels: Sequence[int] | None = None,
    convention: str = "isles22",
    num_processes: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Score every prediction against its reference; write summary JSON and per-case CSV.

    Args:
        reference_dir: folder of reference label maps (e.g. ``labelsTs``).
        prediction_dir: folder of predicted label maps with the same case ids.
        output_json: summary path (e.g. ``metrics.json``); the per-case CSV goes beside it
            with the ending ``.csv``. Both are written atomically.
        labels: foreground labels to score; None reads them from the dataset.json in
            ``reference_dir`` or its parent, else scores every nonzero value found in any
            reference or prediction (a label absent from a case scores as both-empty).
        convention: ``"isles22"`` or ``"atlas"`` (lesion connectivity, see
            :mod:`autoseg.evaluation.lesions`).
        num_processes: worker processes; None picks :func:`default_num_processes`.
        overwrite: False refuses to replace an existing ``output_json``.
        progress: show a tqdm progress bar.

    Returns:
        The summary written to ``output_json`` (see :mod:`autoseg.evaluation.summary`).

    Raises:
        InvalidInputError: unknown convention, missing folders or predictions, duplicate
            case ids, unreadable files, shape/affine mismatches (all listed at once).
    """
    reference_dir, prediction_dir = Path(reference_dir), Path(prediction_dir)
    output_json = ensure_writable_file(output_json, "summary JSON")
    connectivity_3d = get_convention(convention).connectivity_3d
    if output_json.exists() and not overwrite:
        raise InvalidInputError(f"{output_json}: exists (pass overwrite to replace it)")
    pairs = pair_cases(reference_dir, prediction_dir)
    check_geometry(pairs)
    labels = list(labels) if labels is not None else labels_from_dataset_json(reference_dir)
    workers = default_num_processes() if num_processes is None else num_processes
    iterator = run_cases(pairs, labels, convention, workers)
    results = list(
        tqdm(iterator, total=len(pairs), desc="evaluate", unit="case", disable=not progress)
    )
    if labels is None:
        labels = sorted({label for result in results for label in result.metrics})
        # Every mask empty and no dataset.json: a binary lesion task, whose empty-vs-empty
        # cases score as docs/metrics.md says (Dice 1.0), not as no metrics at all.
        labels = labels or [BINARY_LESION_LABEL]
    results = fill_missing_labels(results, labels)
    summary = summarise(results, labels)
    summary.update(
        convention=convention,
        connectivity_3d=connectivity_3d,
        reference_dir=str(reference_dir),
        prediction_dir=str(prediction_dir),
    )
    write_case_csv(csv_path_for(output_json), results)
    write_json(output_json, summary)
    return summary
