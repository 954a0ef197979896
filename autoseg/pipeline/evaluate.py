"""``autoseg_evaluate``: metrics of a prediction folder, and on request its lesion tables
(and the references' own) and the predictions as a BIDS derivative dataset.

The metrics are :func:`autoseg.evaluation.evaluate_folders`'s. With ``lesion_tables``,
``<stem>_lesions.tsv`` / ``<stem>_cases.tsv`` of the predictions and
``<stem>_reference_lesions.tsv`` / ``<stem>_reference_cases.tsv`` of the references go
beside the summary JSON (``metrics.json`` -> ``metrics_lesions.tsv``), so reference and
predicted lesion volumes can be compared case by case. The brain mask for the
hemisphere comes from ``images_dir`` (``<case>_0000`` or ``<case>`` files), by default
the ``imagesTr``/``imagesTs`` beside a raw ``labelsTr``/``labelsTs``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from autoseg.data.io import VOLUME_ENDINGS, file_ending
from autoseg.data.prediction_files import DISAGREEMENT_SUFFIX, PROBABILITIES_ENDING
from autoseg.data.sources import find_case_sources
from autoseg.evaluation import evaluate_folders
from autoseg.evaluation.folders import pair_cases
from autoseg.evaluation.lesion_files import LesionCase, lesion_tables
from autoseg.evaluation.lesions import get_convention
from autoseg.pipeline.lesion_outputs import (
    LesionOutputs,
    case_sources,
    identified,
    write_lesion_outputs,
)


def image_files(images_dir: Path | None, reference_dir: Path, case_ids: Sequence[str]) -> dict:
    """``{case: first image channel}`` for the cases that have one."""
    folder = images_dir
    if folder is None and reference_dir.name.startswith("labels"):
        folder = reference_dir.parent / reference_dir.name.replace("labels", "images", 1)
    if folder is None or not Path(folder).is_dir():
        return {}
    found = {}
    for case in case_ids:
        for stem in (f"{case}_0000", case):
            match = next((Path(folder) / f"{stem}{e}" for e in VOLUME_ENDINGS
                          if (Path(folder) / f"{stem}{e}").is_file()), None)  # fmt: skip
            if match is not None:
                found[case] = match
                break
    return found


def _companion(path: Path, suffix: str) -> Path | None:
    candidate = path.with_name(path.name[: -len(file_ending(path))] + suffix)
    return candidate if candidate.is_file() else None


def prediction_case(case: str, path: Path) -> LesionCase:
    """A predicted label file with its saved probabilities and disagreement map, if any."""
    ending = file_ending(path)
    return LesionCase(case, path, None, _companion(path, PROBABILITIES_ENDING),
                      _companion(path, f"{DISAGREEMENT_SUFFIX}{ending}"))  # fmt: skip


def evaluate(
    reference_dir: str | os.PathLike,
    prediction_dir: str | os.PathLike,
    output_json: str | os.PathLike,
    labels: Sequence[int] | None = None,
    convention: str = "isles22",
    num_processes: int | None = None,
    overwrite: bool = False,
    write_tables: bool = False,
    outputs: LesionOutputs | None = None,
    images_dir: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Score the predictions; with ``write_tables`` or ``outputs.bids_out``, also measure
    lesions (module docstring).

    Args:
        reference_dir, prediction_dir, output_json, labels, convention, num_processes,
            overwrite: as :func:`autoseg.evaluation.evaluate_folders`.
        write_tables: write the predictions' and references' lesion tables.
        outputs: BIDS folder, atlas and command line (its convention is ``convention``).
        images_dir: images for the brain mask (default: beside a raw labels folder).

    Returns:
        The metrics summary.
    """
    reference_dir, prediction_dir = Path(reference_dir), Path(prediction_dir)
    output_json = Path(output_json)
    summary = evaluate_folders(reference_dir, prediction_dir, output_json, labels=labels,
                               convention=convention, num_processes=num_processes,
                               overwrite=overwrite)  # fmt: skip
    outputs = dataclasses.replace(outputs or LesionOutputs(), convention=convention)
    if not write_tables and outputs.bids_out is None:
        return summary
    pairs = pair_cases(reference_dir, prediction_dir)
    ids = [pair.case_id for pair in pairs]
    recorded = find_case_sources(reference_dir) or find_case_sources(prediction_dir)
    sources = case_sources(ids, recorded)
    images = image_files(None if images_dir is None else Path(images_dir), reference_dir, ids)
    predicted = identified([prediction_case(p.case_id, p.prediction_file) for p in pairs],
                           sources, images)  # fmt: skip
    prefix = f"{output_json.stem}_"
    write_lesion_outputs(output_json.parent, predicted, sources, outputs, prefix=prefix)
    references = identified([LesionCase(p.case_id, p.reference_file) for p in pairs],
                            sources, images)  # fmt: skip
    connectivity = get_convention(convention).connectivity_3d
    lesion_tables(output_json.parent, references, connectivity, outputs.atlas,
                  f"{prefix}reference_")  # fmt: skip
    return summary
