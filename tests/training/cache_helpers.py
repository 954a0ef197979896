"""Tiny preprocessed caches written directly (no NIfTI round trip) for the loader tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from autoseg.preprocessing.cache import save_case
from autoseg.preprocessing.crop import CropBox
from autoseg.preprocessing.properties import (
    CaseProperties,
    PreprocessedCase,
    class_voxel_counts,
    sample_foreground,
)
from tests.conftest import tiny_meta


def coordinate_volume(shape: tuple[int, int, int], channels: int = 1) -> np.ndarray:
    """``(C, Z, Y, X)`` whose value encodes its voxel: ``c*1e6 + z*1e4 + y*1e2 + x + 1``
    (positive, so a padded 0 is distinguishable from any voxel)."""
    grid = np.indices(shape).astype(np.float32)
    base = grid[0] * 1e4 + grid[1] * 1e2 + grid[2] + 1
    return np.stack([base + 1e6 * c for c in range(channels)]).astype(np.float32)


def save_arrays(folder: Path, case_id: str, data: np.ndarray, seg: np.ndarray) -> None:
    """Save ``data (C, Z, Y, X)`` and ``seg (1, Z, Y, X)`` as a cached case."""
    shape = tuple(int(v) for v in data.shape[1:])
    counts = class_voxel_counts(seg)
    properties = CaseProperties(
        case_id=case_id,
        meta=tiny_meta(shape),
        crop_box=CropBox.full(shape),
        shape_after_crop=shape,
        shape_after_resampling=shape,
        spacing_mm=(1.0, 1.0, 1.0),
        thick_axis=None,
        spec_hash="test",
        class_voxel_counts=counts,
        foreground_coordinates=sample_foreground(seg[0], 1000, 0, counts),
    )
    save_case(folder, PreprocessedCase(data, seg.astype(np.int8), properties))


def lesion_cache(
    folder: Path,
    cases: int = 3,
    shape: tuple[int, int, int] = (20, 24, 22),
    lesion: int = 3,
    empty: tuple[int, ...] = (),
    scale: float | None = None,
    seed: int = 0,
) -> list[str]:
    """Cases with one small cubic lesion at a random place, -1 on a border slab.

    Args:
        folder: cache folder to write.
        cases: how many cases.
        shape: volume shape.
        lesion: lesion edge in voxels.
        empty: indices of cases without any lesion.
        scale: when given, the image is ``label * scale`` (alignment tests); else the
            coordinate-encoding volume of :func:`coordinate_volume`.
        seed: lesion placement.
    """
    rng = np.random.default_rng(seed)
    ids = []
    for index in range(cases):
        seg = np.zeros((1, *shape), np.int8)
        seg[0, :, :, :2] = -1
        if index not in empty:
            corner = [int(rng.integers(2, n - lesion - 1)) for n in shape]
            seg[(0, *[slice(c, c + lesion) for c in corner])] = 1
        data = coordinate_volume(shape) if scale is None else seg.astype(np.float32) * scale
        case_id = f"case{index:03d}"
        save_arrays(folder, case_id, data, seg)
        ids.append(case_id)
    return ids
