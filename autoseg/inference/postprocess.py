"""Postprocessing of predicted labels, chosen on cross-validation by find_best.

A spec is a small dict stored beside the model (``{}`` does nothing):

- ``{"threshold": p}``: a voxel is foreground when its foreground probability
  (``1 - p(background)``) is at least ``p``; among several foreground classes the most
  probable one wins. Needs the probabilities.
- ``{"min_component_voxels": n}``: remove connected components (26-connectivity, per
  label value, as the stroke challenges count lesions) of fewer than ``n`` voxels.

Both may be given; the threshold is applied first.
"""

from __future__ import annotations

from typing import Any

import cc3d
import numpy as np

POSTPROCESSING_KEYS = ("threshold", "min_component_voxels")


def threshold_labels(probabilities: np.ndarray, threshold: float) -> np.ndarray:
    """uint8 labels ``(*spatial)`` from probabilities ``(K, *spatial)`` and a threshold."""
    foreground = probabilities[0] <= 1.0 - threshold
    if probabilities.shape[0] == 2:
        return foreground.astype(np.uint8)
    best = np.argmax(probabilities[1:], axis=0).astype(np.uint8) + 1
    return np.where(foreground, best, 0).astype(np.uint8)


def remove_small_components(labels: np.ndarray, min_voxels: int) -> np.ndarray:
    """Labels with every 26-connected component of fewer than ``min_voxels`` voxels set to 0.

    Components are found per label value, so touching lesions of two classes are judged
    separately.
    """
    if min_voxels <= 1 or not labels.any():
        return labels
    return cc3d.dust(np.ascontiguousarray(labels), threshold=int(min_voxels), connectivity=26)


def check_postprocessing(spec: dict[str, Any]) -> None:
    """Raise ValueError naming unknown keys or out-of-range values of a spec."""
    unknown = sorted(set(spec) - set(POSTPROCESSING_KEYS))
    if unknown:
        raise ValueError(
            f"unknown postprocessing {unknown}; known: {', '.join(POSTPROCESSING_KEYS)}"
        )
    if "threshold" in spec and not 0 < float(spec["threshold"]) <= 1:
        raise ValueError(f"postprocessing threshold must lie in (0, 1], got {spec['threshold']}")
    if int(spec.get("min_component_voxels", 0)) < 0:
        raise ValueError("postprocessing min_component_voxels must be >= 0")


def needs_probabilities(spec: dict[str, Any]) -> bool:
    """True when the spec cannot work from labels alone."""
    return "threshold" in spec


def postprocess(
    labels: np.ndarray, spec: dict[str, Any], probabilities: np.ndarray | None = None
) -> np.ndarray:
    """Apply a postprocessing spec (module docstring) to uint8 labels ``(Z, Y, X)``.

    Args:
        labels: argmax labels.
        spec: the postprocessing dict; ``{}`` returns ``labels`` unchanged.
        probabilities: ``(K, Z, Y, X)``, needed for ``threshold``.

    Returns:
        uint8 labels of the same shape.
    """
    check_postprocessing(spec)
    if "threshold" in spec:
        if probabilities is None:
            raise ValueError("postprocessing 'threshold' needs the probabilities")
        labels = threshold_labels(probabilities, float(spec["threshold"]))
    return remove_small_components(labels, int(spec.get("min_component_voxels", 0)))
