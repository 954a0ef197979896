"""The contralateral channel: every image channel mirrored across the head's midline plane.

A stroke lesion lies in one hemisphere of a nearly symmetric brain, and a reader judges a
suspect region against the same place on the other side: deep grey nuclei, sulci and
ventricles have a twin there, a lesion does not. A 3D patch network sees a few
centimetres and cannot make that comparison itself. Given the mirrored image as extra
channels, every voxel carries the intensity of its twin.

The left-right axis is read off the image's affine (no reorientation is needed), and the
midline plane is the centre of mass of the head mask along that axis, which for heads in
a standard space such as MNI (ATLAS) lies within a voxel or two of the true plane.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def left_right_axis(affine: Sequence[Sequence[float]]) -> int:
    """The array axis (``(z, y, x)`` order) that runs most nearly along world left-right.

    Voxel axis ``i, j, k`` is column 0, 1, 2 of the affine; row 0 is the world x (RAS
    left-right) component of each.
    """
    across = np.abs(np.asarray(affine, dtype=np.float64)[0, :3])
    return 2 - int(np.argmax(across))


def midline(mask: np.ndarray, axis: int) -> float:
    """The midline plane's index along ``axis``: the head mask's centre of mass there (the
    middle of the array for an empty mask)."""
    others = tuple(a for a in range(mask.ndim) if a != axis)
    profile = np.asarray(mask, dtype=bool).sum(axis=others).astype(np.float64)
    if profile.sum() == 0:
        return (mask.shape[axis] - 1) / 2.0
    return float(np.average(np.arange(profile.size), weights=profile))


def mirrored(data: np.ndarray, axis: int, plane: float) -> np.ndarray:
    """``data`` ``(C, Z, Y, X)`` reflected across the plane at index ``plane`` along
    spatial ``axis`` (nearest voxel; 0 where the twin lies outside the array)."""
    size = data.shape[1 + axis]
    twin = np.rint(2.0 * plane - np.arange(size)).astype(np.int64)
    inside = (twin >= 0) & (twin < size)
    reflected = np.take(data, np.clip(twin, 0, size - 1), axis=1 + axis)
    shape = [1] * data.ndim
    shape[1 + axis] = size
    return np.where(inside.reshape(shape), reflected, 0).astype(data.dtype, copy=False)


def with_contralateral(
    data: np.ndarray, affine: Sequence[Sequence[float]], mask: np.ndarray
) -> np.ndarray:
    """``(2C, Z, Y, X)``: the channels, then each mirrored across the head's midline.

    Args:
        data: ``(C, Z, Y, X)`` image channels.
        affine: the image's voxel-to-world affine (its orientation only is used).
        mask: ``(Z, Y, X)`` head mask on the same grid.
    """
    axis = left_right_axis(affine)
    return np.concatenate([data, mirrored(data, axis, midline(mask, axis))])
