"""Per-case segmentation metrics for binary and multi-class masks (DESIGN §9, §11).

Arrays are ``(Z, Y, X)`` (or ``(Y, X)`` for a single image) and spacings ``(z, y, x)`` mm
(``(y, x)`` for 2D), see :mod:`autoseg`. Every per-case result has exactly the keys of
:data:`METRIC_KEYS`.

Conventions when a denominator is zero (stated once, used everywhere):

- Dice, IoU: 1.0 when both masks are empty (the stroke challenges' convention); 0.0 when
  exactly one is empty (that already follows from the formula).
- Precision (prediction empty) and sensitivity (reference empty): 1.0 when both masks are
  empty, 0.0 otherwise -- predicting nothing where there is a lesion earns no precision,
  and any false positive on a lesion-free case earns no sensitivity.
- Specificity when the reference has no background: 1.0.
- HD95 / ASSD: 0.0 when both are empty, NaN when exactly one is empty (see
  :mod:`autoseg.evaluation.surface`; summaries skip NaN and count the finite values).
- Lesion F1: 1.0 when neither mask has a lesion (see :mod:`autoseg.evaluation.lesions`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from autoseg.core.errors import InvalidInputError
from autoseg.evaluation.lesions import count_lesions, get_convention
from autoseg.evaluation.surface import hd95_and_assd

METRIC_KEYS = (
    "dice",
    "iou",
    "precision",
    "sensitivity",
    "specificity",
    "hd95_mm",
    "assd_mm",
    "abs_volume_diff_ml",
    "abs_volume_diff_voxels",
    "lesion_f1",
    "abs_lesion_count_diff",
)


def _ratio(numerator: int, denominator: int, both_empty: bool) -> float:
    """numerator / denominator, or the stated convention when the denominator is 0."""
    if denominator == 0:
        return 1.0 if both_empty else 0.0
    return numerator / denominator


def overlap_metrics(reference: np.ndarray, prediction: np.ndarray) -> dict[str, float]:
    """Dice, IoU, precision, sensitivity and specificity from voxel counts."""
    true_positive = int(np.count_nonzero(reference & prediction))
    reference_count = int(np.count_nonzero(reference))
    prediction_count = int(np.count_nonzero(prediction))
    false_positive = prediction_count - true_positive
    false_negative = reference_count - true_positive
    negatives = reference.size - reference_count
    both_empty = reference_count == 0 and prediction_count == 0
    union = true_positive + false_positive + false_negative
    return {
        "dice": _ratio(2 * true_positive, reference_count + prediction_count, both_empty),
        "iou": _ratio(true_positive, union, both_empty),
        "precision": _ratio(true_positive, prediction_count, both_empty),
        "sensitivity": _ratio(true_positive, reference_count, both_empty),
        "specificity": _ratio(negatives - false_positive, negatives, True),
    }


def volume_metrics(
    reference: np.ndarray, prediction: np.ndarray, spacing_mm: Sequence[float]
) -> dict[str, float]:
    """Absolute volume difference in voxels and in ml (1 ml = 1000 mm^3).

    A 2D mask is taken as one slice 1 mm thick (its voxel volume is the pixel area); files
    read from disk are always 3D, so their slice thickness is the real one.
    """
    difference_voxels = abs(int(np.count_nonzero(reference)) - int(np.count_nonzero(prediction)))
    voxel_ml = float(np.prod(spacing_mm)) / 1000.0
    return {
        "abs_volume_diff_ml": difference_voxels * voxel_ml,
        "abs_volume_diff_voxels": float(difference_voxels),
    }


def _check_pair(reference: np.ndarray, prediction: np.ndarray, spacing_mm: Sequence[float]) -> None:
    if reference.shape != prediction.shape:
        raise InvalidInputError(
            f"reference shape {reference.shape} != prediction shape {prediction.shape}"
        )
    if reference.ndim not in (2, 3) or len(spacing_mm) != reference.ndim:
        raise InvalidInputError(
            f"need 2D or 3D masks with one spacing per axis, got shape {reference.shape} "
            f"and spacing {tuple(spacing_mm)}"
        )


def evaluate_case(
    reference: np.ndarray,
    prediction: np.ndarray,
    spacing_mm: Sequence[float],
    convention: str = "isles22",
) -> dict[str, float]:
    """Every metric of :data:`METRIC_KEYS` for one binary mask pair.

    Args:
        reference: binary mask, ``(Z, Y, X)`` or ``(Y, X)``; nonzero is foreground.
        prediction: binary mask of the same shape.
        spacing_mm: voxel size ``(z, y, x)`` (or ``(y, x)``) in mm, for HD95, ASSD and ml.
        convention: ``"isles22"`` (26/8-connected lesions) or ``"atlas"`` (6/4-connected);
            it changes only the lesion-wise metrics.

    Returns:
        ``{metric: float}`` with exactly the keys of :data:`METRIC_KEYS` (module docstring
        for the empty-mask conventions).
    """
    reference, prediction = np.asarray(reference) != 0, np.asarray(prediction) != 0
    _check_pair(reference, prediction, spacing_mm)
    connectivity = get_convention(convention).connectivity(reference.ndim)
    metrics = overlap_metrics(reference, prediction)
    metrics["hd95_mm"], metrics["assd_mm"] = hd95_and_assd(reference, prediction, spacing_mm)
    metrics.update(volume_metrics(reference, prediction, spacing_mm))
    lesions = count_lesions(reference, prediction, connectivity)
    metrics["lesion_f1"] = lesions.f1
    metrics["abs_lesion_count_diff"] = float(lesions.abs_count_difference)
    return {key: metrics[key] for key in METRIC_KEYS}


def both_empty_metrics() -> dict[str, float]:
    """The metrics of a case where reference and prediction are both empty (constants)."""
    perfect = ("dice", "iou", "precision", "sensitivity", "specificity", "lesion_f1")
    return {key: 1.0 if key in perfect else 0.0 for key in METRIC_KEYS}


def labels_present(*label_maps: np.ndarray) -> list[int]:
    """Sorted nonzero values found in any of the label maps."""
    values: set[int] = set()
    for label_map in label_maps:
        values.update(int(v) for v in np.unique(label_map))
    return sorted(values - {0})


def _as_labels(label_map: np.ndarray) -> np.ndarray:
    """Integer labels; float maps (scaled NIfTI) are rounded so 0.9999 still means 1."""
    label_map = np.asarray(label_map)
    if np.issubdtype(label_map.dtype, np.floating):
        return np.rint(label_map).astype(np.int64)
    return label_map


def evaluate_labels(
    reference: np.ndarray,
    prediction: np.ndarray,
    spacing_mm: Sequence[float],
    labels: Iterable[int] | None = None,
    convention: str = "isles22",
) -> dict[int, dict[str, float]]:
    """Per-label metrics of a multi-class pair: each label scored as its own binary mask.

    Args:
        reference: integer label map, ``(Z, Y, X)`` or ``(Y, X)``.
        prediction: integer label map of the same shape.
        spacing_mm: voxel size per axis in mm.
        labels: foreground label values to score (e.g. from dataset.json); None scores
            every nonzero value present in either map. A binary task is ``[1]``.
        convention: lesion convention, see :func:`evaluate_case`.

    Returns:
        ``{label: {metric: value}}`` in ascending label order.
    """
    reference, prediction = _as_labels(reference), _as_labels(prediction)
    chosen = labels_present(reference, prediction) if labels is None else sorted(set(labels))
    return {
        label: evaluate_case(reference == label, prediction == label, spacing_mm, convention)
        for label in chosen
    }
