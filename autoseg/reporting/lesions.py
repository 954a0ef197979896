"""Lesion-wise errors of one case: reference lesions missed, predicted components unmatched.

A lesion is a connected component of the foreground (any label > 0) with 26-connectivity
in 3D, as the stroke challenges count them (see :mod:`autoseg.evaluation.lesions`). A
reference lesion is *missed* when no predicted voxel overlaps it; a predicted component is
a *false positive* when it overlaps no reference voxel.
"""

from __future__ import annotations

from dataclasses import dataclass

import cc3d
import numpy as np

CONNECTIVITY_3D = 26


@dataclass(frozen=True)
class Lesion:
    """One connected component.

    Attributes:
        voxels: voxel count.
        volume_ml: volume in millilitres.
        centroid_zyx: mean voxel index ``(z, y, x)``.
    """

    voxels: int
    volume_ml: float
    centroid_zyx: tuple[float, float, float]


def component_labels(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """Connected components of a ``(Z, Y, X)`` mask: ``(labels 1..count, count)``."""
    labels, count = cc3d.connected_components(
        np.ascontiguousarray(mask > 0, dtype=np.uint8), connectivity=CONNECTIVITY_3D, return_N=True
    )
    return labels, int(count)


def describe_components(
    labels: np.ndarray, ids: list[int], spacing_mm: tuple[float, float, float]
) -> list[Lesion]:
    """Volume and centroid of the components ``ids`` of ``labels``, largest first."""
    if not ids:
        return []
    stats = cc3d.statistics(labels)
    voxel_ml = float(np.prod(spacing_mm)) / 1000.0
    lesions = [
        Lesion(
            voxels=int(stats["voxel_counts"][i]),
            volume_ml=float(stats["voxel_counts"][i]) * voxel_ml,
            centroid_zyx=tuple(float(v) for v in stats["centroids"][i]),
        )
        for i in ids
    ]
    return sorted(lesions, key=lambda lesion: -lesion.voxels)


def unmatched_components(mask: np.ndarray, other: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """Components of ``mask`` that share no voxel with ``other``: ``(labels, ids)``."""
    labels, count = component_labels(mask)
    touched = set(np.unique(labels[other > 0]).tolist())
    return labels, [i for i in range(1, count + 1) if i not in touched]


def lesion_errors(
    reference: np.ndarray, prediction: np.ndarray, spacing_mm: tuple[float, float, float]
) -> tuple[list[Lesion], list[Lesion]]:
    """Missed reference lesions and false-positive predicted components, largest first.

    Args:
        reference: reference label map ``(Z, Y, X)``.
        prediction: predicted label map of the same shape.
        spacing_mm: voxel size ``(z, y, x)``.

    Returns:
        ``(misses, false_positives)``.
    """
    missed_labels, missed_ids = unmatched_components(reference, prediction)
    extra_labels, extra_ids = unmatched_components(prediction, reference)
    return (
        describe_components(missed_labels, missed_ids, spacing_mm),
        describe_components(extra_labels, extra_ids, spacing_mm),
    )
