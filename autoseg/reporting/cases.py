"""The per-case part of the report: overlays worst-first, lesion-wise errors, confidence.

Cases are ordered by Dice from the test metrics when there are some, else by a Dice
computed here from the reference and prediction; only the ``max_cases`` worst are drawn,
since the worst cases are the ones a reader needs to see.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from autoseg.core.errors import InvalidInputError
from autoseg.data.io import read_volume
from autoseg.reporting.collect import CaseFiles, optional_json
from autoseg.reporting.figures import figure_uri
from autoseg.reporting.html import Section, esc, fmt, image, not_available, table
from autoseg.reporting.lesions import Lesion, lesion_errors
from autoseg.reporting.overlay import case_figure, lesion_slices, load_case

LESION_HEADERS = ["volume (ml)", "voxels", "centroid (z, y, x)"]
# column -> keys that may hold it: autoseg.inference.uncertainty's names first
CONFIDENCE_COLUMNS = {
    "lesion": ("id",),
    "voxels": ("voxels",),
    "volume (ml)": ("volume_ml",),
    "centroid (z, y, x)": ("centroid_voxel_zyx", "centroid"),
    "mean probability": ("mean_foreground_probability", "mean_probability"),
    "min probability": ("min_foreground_probability",),
    "mean entropy": ("mean_entropy",),
    "fold disagreement": ("mean_disagreement",),
}


def dice(reference: np.ndarray, prediction: np.ndarray) -> float:
    """Foreground Dice (1.0 when both are empty, the stroke challenges' convention)."""
    ref, pred = reference > 0, prediction > 0
    total = int(ref.sum() + pred.sum())
    return 1.0 if total == 0 else 2.0 * int((ref & pred).sum()) / total


def local_dice(case: CaseFiles) -> float:
    """Dice of a case read from its files (NaN without a reference)."""
    if case.reference is None:
        return math.nan
    return dice(read_volume(case.reference)[0], read_volume(case.prediction)[0])


def order_cases(
    cases: list[CaseFiles], dice_by_case: dict[str, float] | None
) -> list[tuple[CaseFiles, float]]:
    """Cases with their Dice, worst first (cases without a Dice last, then by id)."""
    scored = [
        (case, dice_by_case.get(case.case_id, math.nan) if dice_by_case else local_dice(case))
        for case in cases
    ]
    return sorted(scored, key=lambda item: (not math.isfinite(item[1]), item[1], item[0].case_id))


def voxel_position(values: Any) -> str:
    """A centroid as ``(z, y, x)`` rounded to whole voxels."""
    if not isinstance(values, (list, tuple)):
        return fmt(values)
    return "(" + ", ".join(f"{float(v):.0f}" for v in values) + ")"


def lesion_rows(lesions: list[Lesion]) -> list[list[Any]]:
    """Table rows of lesions: volume, voxel count, centroid rounded to a voxel."""
    return [
        [lesion.volume_ml, lesion.voxels, voxel_position(lesion.centroid_zyx)] for lesion in lesions
    ]


def _lesion_list(title: str, lesions: list[Lesion]) -> str:
    if not lesions:
        return f"<p class='note'>{esc(title)}: none.</p>"
    heading = f"<p><span class='bad'>{esc(title)}: {len(lesions)}</span></p>"
    return heading + table(LESION_HEADERS, lesion_rows(lesions))


def confidence_table(path: Path) -> str:
    """The per-lesion confidence of ``<case>_lesions.json`` (a list, or ``{"lesions": [...]}``).

    Raises:
        InvalidInputError: the file is not JSON or not a list of lesion objects.
    """
    payload = optional_json(path)
    lesions = payload.get("lesions") if isinstance(payload, dict) else payload
    if not isinstance(lesions, list) or not all(isinstance(x, dict) for x in lesions):
        raise InvalidInputError(f"{path}: expected a list of lesion objects")
    rows = [
        [_first_value(lesion, keys) for keys in CONFIDENCE_COLUMNS.values()] for lesion in lesions
    ]
    for row in rows:
        row[3] = voxel_position(row[3])
    keep = [i for i in range(len(CONFIDENCE_COLUMNS)) if any(r[i] is not None for r in rows)]
    headers = [h for i, h in enumerate(CONFIDENCE_COLUMNS) if i in keep or not rows]
    body = [[row[i] for i in keep] for row in rows]
    return "<p>Predicted lesions and their confidence:</p>" + table(headers, body)


def _first_value(entry: dict[str, Any], keys: tuple[str, ...]) -> Any:
    return next((entry[key] for key in keys if entry.get(key) is not None), None)


def case_block(case: CaseFiles, case_dice: float) -> str:
    """Overlay figure, missed lesions, false positives and confidence of one case."""
    title = f"{case.case_id}: Dice {fmt(case_dice)}"
    parts = [f"<div class='case' id='case-{esc(case.case_id)}'><h3>{esc(title)}</h3>"]
    if case.image is None:
        parts.append(not_available(f"Image of {case.case_id}"))
    else:
        volumes = load_case(case.image, case.prediction, case.reference, case.uncertainty)
        slices = lesion_slices(volumes.reference, volumes.prediction)
        parts.append(
            image(figure_uri(case_figure(volumes, slices, title)), f"overlay {case.case_id}")
        )
        if volumes.reference is None:
            parts.append(not_available("Reference (lesion-wise errors)"))
        else:
            misses, extras = lesion_errors(
                volumes.reference, volumes.prediction, volumes.meta.spacing_mm
            )
            parts.append(_lesion_list("Missed lesions", misses))
            parts.append(_lesion_list("False-positive components", extras))
    if case.lesions_json is not None:
        parts.append(confidence_table(case.lesions_json))
    return "".join(parts) + "</div>"


def cases_section(
    cases: list[CaseFiles], dice_by_case: dict[str, float] | None, max_cases: int
) -> Section:
    """Overlays of the ``max_cases`` worst cases, with their lesion-wise errors."""
    if not cases:
        return Section("cases", "Cases, worst first", not_available("Predictions"))
    ordered = order_cases(cases, dice_by_case)
    shown = ordered[:max_cases]
    intro = (
        f"<p class='note'>{len(shown)} of {len(ordered)} cases, worst Dice first. Axial slices "
        "through the largest reference lesion (else the largest predicted one): reference "
        "outline green, prediction red. A missed lesion overlaps no predicted voxel; a false "
        "positive overlaps no reference voxel (26-connected components); centroids are voxel "
        "indices.</p>"
    )
    return Section(
        "cases", "Cases, worst first", intro + "".join(case_block(c, d) for c, d in shown)
    )
