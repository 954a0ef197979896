"""Results by lesion size: where a model fails, small lesions or large ones.

A mean Dice hides that a model may find mid-sized lesions and miss both tails. Two views:

- per case, by the case's total reference lesion volume: mean Dice per volume bin;
- per reference lesion (connected component), by its own volume: the share detected
  (any overlapping predicted voxel, the challenges' rule) per volume bin.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from autoseg.data.io import read_volume
from autoseg.evaluation.folders import volume_files
from autoseg.evaluation.lesions import label_components

CASE_BINS_ML = (0.0, 1.5, 10.0, 20.0, float("inf"))  # the bins of the table
LESION_BINS_ML = (0.0, 1.5, 10.0, float("inf"))


@dataclass(frozen=True)
class CaseSize:
    """One case: its reference lesion volume and the Dice of the prediction."""

    case_id: str
    reference_ml: float
    predicted_ml: float
    dice: float


@dataclass(frozen=True)
class LesionHit:
    """One reference lesion: its volume and whether any predicted voxel overlaps it."""

    case_id: str
    volume_ml: float
    detected: bool


def _dice(reference: np.ndarray, prediction: np.ndarray) -> float:
    total = int(reference.sum()) + int(prediction.sum())
    return 1.0 if total == 0 else 2.0 * int((reference & prediction).sum()) / total


def score_case(
    case_id: str, reference: np.ndarray, prediction: np.ndarray, voxel_ml: float, connectivity: int
) -> tuple[CaseSize, list[LesionHit]]:
    """The case's size row and one detection row per reference lesion."""
    reference, prediction = reference > 0, prediction > 0
    labels, count = label_components(reference, connectivity)
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    hit = np.zeros(count + 1, bool)
    hit[np.unique(labels[prediction])] = True
    lesions = [LesionHit(case_id, float(sizes[i] * voxel_ml), bool(hit[i]))
               for i in range(1, count + 1)]  # fmt: skip
    row = CaseSize(case_id, float(reference.sum() * voxel_ml), float(prediction.sum() * voxel_ml),
                   _dice(reference, prediction))  # fmt: skip
    return row, lesions


def score_folders(
    references: Path, predictions: Path, connectivity: int = 26
) -> tuple[list[CaseSize], list[LesionHit]]:
    """Score every reference case that has a prediction of the same case id."""
    reference_files, prediction_files = volume_files(references), volume_files(predictions)
    cases, lesions = [], []
    for case_id in sorted(set(reference_files) & set(prediction_files)):
        reference, meta = read_volume(reference_files[case_id])
        prediction, _ = read_volume(prediction_files[case_id])
        voxel_ml = float(np.prod(meta.spacing_mm)) / 1000.0
        row, hits = score_case(case_id, reference, prediction, voxel_ml, connectivity)
        cases.append(row)
        lesions.extend(hits)
    return cases, lesions


def _bin_label(low: float, high: float) -> str:
    if high == float("inf"):
        return f"> {low:g} ml"
    return f"< {high:g} ml" if low == 0 else f"{low:g}-{high:g} ml"


def case_table(cases: Sequence[CaseSize], bins: Sequence[float] = CASE_BINS_ML) -> list[dict]:
    """Mean Dice per bin of reference lesion volume (cases without a lesion left out)."""
    rows = []
    for low, high in itertools.pairwise(bins):
        members = [c for c in cases if c.reference_ml > 0 and low <= c.reference_ml < high]
        rows.append({
            "bin": _bin_label(low, high), "cases": len(members),
            "mean_dice": float(np.mean([c.dice for c in members])) if members else None,
        })  # fmt: skip
    return rows


def lesion_table(
    lesions: Sequence[LesionHit], bins: Sequence[float] = LESION_BINS_ML
) -> list[dict]:
    """Share of reference lesions detected per bin of lesion volume."""
    rows = []
    for low, high in itertools.pairwise(bins):
        members = [hit for hit in lesions if low <= hit.volume_ml < high]
        rows.append({
            "bin": _bin_label(low, high), "lesions": len(members),
            "recall": float(np.mean([h.detected for h in members])) if members else None,
        })  # fmt: skip
    return rows
