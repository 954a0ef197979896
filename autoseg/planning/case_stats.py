"""Per-case fingerprint statistics: pure functions of one case's arrays.

Arrays are ``(C, Z, Y, X)`` images and ``(Z, Y, X)`` labels; spacings ``(z, y, x)`` mm.
The "brain" is the body mask the preprocessing crops to
(:func:`~autoseg.preprocessing.crop.foreground_mask`: the nonzero region, or the
thresholded head of a scan without zero background); the "foreground" is ``label > 0``.
"""

from __future__ import annotations

import zlib
from typing import Any

import cc3d
import numpy as np

from autoseg.preprocessing.crop import foreground_mask

PERCENTILES = (0.5, 99.5)
SAMPLES_PER_CASE = 2000
CT_NAME_HINTS = ("CT", "NCCT", "CTA", "CTP")
CT_MIN_HU = -500.0


def bounding_box(mask: np.ndarray) -> list[list[int]]:
    """Half-open ``[[z0, z1], [y0, y1], [x0, x1]]`` of a mask; the whole array if empty."""
    if not mask.any():
        return [[0, int(n)] for n in mask.shape]
    box = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        hits = np.flatnonzero(mask.any(axis=other))
        box.append([int(hits[0]), int(hits[-1]) + 1])
    return box


def case_seed(case_id: str) -> int:
    """A seed that depends only on the case id, so sampling never depends on run order."""
    return zlib.crc32(case_id.encode("utf-8"))


def region_stats(values: np.ndarray) -> dict[str, float | int]:
    """Mean, std, min, max and the 0.5/99.5 percentiles of a 1-D array (zeros if empty)."""
    if values.size == 0:
        return {"count": 0, "mean": 0.0, "std": 0.0, "min": 0.0, "max": 0.0,
                "percentile_00_5": 0.0, "percentile_99_5": 0.0}  # fmt: skip
    values = values.astype(np.float64)
    low, high = np.percentile(values, PERCENTILES)
    return {
        "count": int(values.size),
        "mean": float(values.mean()),
        "std": float(values.std()),
        "min": float(values.min()),
        "max": float(values.max()),
        "percentile_00_5": float(low),
        "percentile_99_5": float(high),
    }


def sample_values(values: np.ndarray, rng: np.random.Generator, count: int) -> list[float]:
    """Up to ``count`` voxel values drawn with a fixed generator (deterministic pooling)."""
    if values.size == 0:
        return []
    if values.size > count:
        values = values[np.sort(rng.choice(values.size, size=count, replace=False))]
    return [float(v) for v in values.astype(np.float64)]


def channel_stats(
    channel: np.ndarray, brain: np.ndarray, foreground: np.ndarray, rng: np.random.Generator
) -> dict[str, Any]:
    """Intensity statistics of one channel (Z, Y, X) in the foreground and the brain."""
    fg_values = channel[foreground]
    brain_values = channel[brain]
    return {
        "foreground": region_stats(fg_values),
        "brain": region_stats(brain_values),
        "image_min": float(channel.min()),
        "image_max": float(channel.max()),
        "foreground_samples": sample_values(fg_values, rng, SAMPLES_PER_CASE),
        "brain_samples": sample_values(brain_values, rng, SAMPLES_PER_CASE),
    }


def lesion_stats(label: np.ndarray, brain_voxels: int, voxel_ml: float) -> dict[str, Any]:
    """Lesion volume (ml, % of brain) and connected lesions (26-connectivity) of one case."""
    lesion = label > 0
    components, count = cc3d.connected_components(
        lesion.astype(np.uint8), connectivity=26, return_N=True
    )
    sizes_ml = np.bincount(components.ravel())[1:] * voxel_ml if count else np.zeros(0)
    voxels = int(lesion.sum())
    return {
        "volume_ml": voxels * voxel_ml,
        "volume_voxels": voxels,
        "percent_of_brain": 100.0 * voxels / brain_voxels if brain_voxels else 0.0,
        "num_lesions": int(count),
        "smallest_ml": float(sizes_ml.min()) if count else 0.0,
        "median_ml": float(np.median(sizes_ml)) if count else 0.0,
        "largest_ml": float(sizes_ml.max()) if count else 0.0,
    }


def label_counts(label: np.ndarray, label_values: list[int]) -> dict[str, int]:
    """Voxel count per declared label value (keys are the values as strings)."""
    return {str(v): int(np.count_nonzero(label == v)) for v in sorted(label_values)}


def case_statistics(
    case_id: str,
    image: np.ndarray,
    label: np.ndarray,
    spacing_mm: tuple[float, float, float],
    label_values: list[int],
) -> dict[str, Any]:
    """The fingerprint of one case.

    Args:
        case_id: the case's id (seeds the voxel sampling).
        image: ``(C, Z, Y, X)`` intensities.
        label: ``(Z, Y, X)`` integer label map.
        spacing_mm: voxel size ``(z, y, x)``.
        label_values: the label values declared in dataset.json.

    Returns:
        A JSON-ready dict: geometry, crop, per-channel intensities, lesions, label counts.
    """
    brain = foreground_mask(image)
    foreground = label > 0
    box = bounding_box(brain)
    rng = np.random.default_rng(case_seed(case_id))
    voxel_ml = float(np.prod(spacing_mm)) / 1000.0
    brain_voxels = int(brain.sum())
    return {
        "case_id": case_id,
        "spacing_mm": [float(s) for s in spacing_mm],
        "shape": [int(n) for n in label.shape],
        "crop_box": box,
        "shape_after_crop": [hi - lo for lo, hi in box],
        "brain_voxels": brain_voxels,
        "brain_volume_ml": brain_voxels * voxel_ml,
        "channels": [channel_stats(c, brain, foreground, rng) for c in image],
        "lesions": lesion_stats(label, brain_voxels, voxel_ml),
        "label_counts": label_counts(label, label_values),
    }


def channel_modality(name: str, image_min: float) -> str:
    """``CT`` when the channel name says so or intensities reach air-like HU, else ``MR``.

    MR intensities are arbitrary but never strongly negative; CT air is about -1000 HU.
    """
    tokens = name.upper().replace("-", "_").replace(" ", "_").split("_")
    if any(hint in tokens or name.upper().startswith(hint) for hint in CT_NAME_HINTS):
        return "CT"
    return "CT" if image_min < CT_MIN_HU else "MR"
