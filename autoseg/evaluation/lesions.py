"""Lesion-wise detection as the stroke challenges score it (connected components).

Two conventions, chosen by name:

- ``isles22`` (ISLES'22 scoring code): lesions are 26-connected components in 3D
  (8-connected in 2D); the headline volume difference is in millilitres.
- ``atlas`` (ATLAS R2.0 scoring): lesions are 6-connected components in 3D (4 in 2D);
  the headline volume difference is in voxels.

In both, a reference lesion is a true positive if any predicted voxel overlaps it and a
false negative otherwise; a predicted component is a false positive if it overlaps no
reference voxel (a predicted component touching a reference lesion is never counted, so
one prediction may detect several lesions). Lesion F1 = TP / (TP + (FP + FN) / 2), and
1.0 when neither mask has a lesion.
"""

from __future__ import annotations

from dataclasses import dataclass

import cc3d
import numpy as np

from autoseg.core.errors import InvalidInputError
from autoseg.evaluation.surface import union_crop


@dataclass(frozen=True)
class Convention:
    """How a challenge defines a lesion and which volume difference it reports first."""

    name: str
    connectivity_3d: int
    connectivity_2d: int
    headline_volume_key: str

    def connectivity(self, ndim: int) -> int:
        """The cc3d connectivity for an array of ``ndim`` spatial dimensions."""
        return self.connectivity_3d if ndim == 3 else self.connectivity_2d


CONVENTIONS = {
    "isles22": Convention("isles22", 26, 8, "abs_volume_diff_ml"),
    "atlas": Convention("atlas", 6, 4, "abs_volume_diff_voxels"),
}


def get_convention(name: str) -> Convention:
    """The convention called ``name``; an unknown name fails with the known ones."""
    if name not in CONVENTIONS:
        known = ", ".join(sorted(CONVENTIONS))
        raise InvalidInputError(f"unknown evaluation convention '{name}' (known: {known})")
    return CONVENTIONS[name]


@dataclass(frozen=True)
class LesionCounts:
    """Lesion-wise counts of one case: detections and component totals."""

    true_positives: int
    false_positives: int
    false_negatives: int
    reference_lesions: int
    predicted_lesions: int

    @property
    def f1(self) -> float:
        """TP / (TP + (FP + FN) / 2); 1.0 when there is nothing to find and nothing found."""
        errors = self.false_positives + self.false_negatives
        if self.true_positives + errors == 0:
            return 1.0
        return self.true_positives / (self.true_positives + errors / 2)

    @property
    def abs_count_difference(self) -> int:
        """|number of reference lesions - number of predicted lesions|."""
        return abs(self.reference_lesions - self.predicted_lesions)


def label_components(mask: np.ndarray, connectivity: int) -> tuple[np.ndarray, int]:
    """Connected components of a boolean mask: ``(labels, count)``; labels 1..count."""
    labels, count = cc3d.connected_components(
        np.ascontiguousarray(mask, dtype=np.uint8), connectivity=connectivity, return_N=True
    )
    return labels, int(count)


def count_lesions(reference: np.ndarray, prediction: np.ndarray, connectivity: int) -> LesionCounts:
    """Match reference lesions and predicted components by overlap.

    Args:
        reference: binary mask, ``(Z, Y, X)`` or ``(Y, X)``.
        prediction: binary mask of the same shape.
        connectivity: 26/18/6 for 3D arrays, 8/4 for 2D arrays.
    """
    reference, prediction = union_crop(reference.astype(bool), prediction.astype(bool))
    if reference.size == 0:
        return LesionCounts(0, 0, 0, 0, 0)
    reference_labels, reference_count = label_components(reference, connectivity)
    prediction_labels, prediction_count = label_components(prediction, connectivity)
    detected = np.unique(reference_labels[prediction])
    detected_count = int(np.count_nonzero(detected))
    touching = np.unique(prediction_labels[reference])
    touching_count = int(np.count_nonzero(touching))
    return LesionCounts(
        true_positives=detected_count,
        false_positives=prediction_count - touching_count,
        false_negatives=reference_count - detected_count,
        reference_lesions=reference_count,
        predicted_lesions=prediction_count,
    )
