"""Patch ladders: the candidate patches a configuration's planner rungs are built from.

3D patches keep the median image's aspect and what the pooling plan can divide; CPU
patches tile the median image with few windows; 2D patches cover the median slice.
"""

from __future__ import annotations

import math

from autoseg.planning.topology import MIN_FEATURE_SIZE, fit_patch_3d, fit_patch_up_3d, pooling_3d

MAX_WINDOWS_PER_AXIS = 6  # CPU tiling patches: at most this many windows along an axis
PATCH_STEP = 0.85  # per-axis shrink between patch rungs (~0.6x the voxels)
MIN_PATCH_MM = 24.0  # a smaller patch sees too little context around a lesion


def patch_ladder_3d(spacing_mm: list[float], max_shape: list[int]) -> list[tuple[int, ...]]:
    """Distinct 3D patches with the median image's aspect, smallest first."""
    patches: list[tuple[int, ...]] = []
    scale = 1.0
    while True:
        wanted = [max(1, math.floor(n * scale)) for n in max_shape]
        patch = tuple(fit_patch_3d(spacing_mm, wanted))
        patch = tuple(min(p, max(n, p)) for p, n in zip(patch, max_shape, strict=True))
        if not patches or patch != patches[-1]:
            patches.append(patch)
        too_small = min(p * s for p, s in zip(patch, spacing_mm, strict=True)) < MIN_PATCH_MM
        if too_small or scale < 0.05:
            break
        scale *= PATCH_STEP
    # A U-Net needs at least one pooling stage; an image too small for that is padded.
    deep_enough = [p for p in patches if len(pooling_3d(spacing_mm, p)[0]) >= 2]
    if not deep_enough:
        padded = [max(n, 2 * MIN_FEATURE_SIZE) for n in max_shape]
        deep_enough = [tuple(fit_patch_3d(spacing_mm, padded))]
    return sorted(set(deep_enough), key=lambda p: (math.prod(p), p))


def tiling_patch_ladder_3d(
    spacing_mm: list[float], median_shape: list[int], step: float
) -> list[tuple[int, ...]]:
    """CPU patches: the smallest that cover the median image with n windows per axis.

    Every sliding window costs a forward pass per mirror at inference, and on a CPU that is
    what a user waits for. A patch that leaves the last window of an axis mostly outside
    the image (32 voxels on a 66-voxel axis at step 0.5 takes 4 windows; 48 takes 2)
    pays for context it never uses. So a CPU plan only considers the patches that tile the
    median image with n = 1, 2, 3... windows per axis at the inference step: p = size /
    (1 + (n - 1) * step), rounded up to the pooling divisor.
    """
    patches: set[tuple[int, ...]] = set()
    for windows in range(1, MAX_WINDOWS_PER_AXIS + 1):
        wanted = [max(1, math.ceil(n / (1 + (windows - 1) * step))) for n in median_shape]
        patch = fit_patch_up_3d(spacing_mm, wanted)
        if len(pooling_3d(spacing_mm, patch)[0]) < 2:
            break
        patches.add(patch)
        if min(p * s for p, s in zip(patch, spacing_mm, strict=True)) < MIN_PATCH_MM:
            break
    if not patches:
        return patch_ladder_3d(spacing_mm, median_shape)
    return sorted(patches, key=lambda p: (math.prod(p), p))


def fit_2d(size_yx: list[int], divisor: int, minimum: int) -> tuple[int, int]:
    """In-plane patch: the median slice rounded up to the divisor, at least ``minimum``.

    Up, not down: one window then covers a median slice at prediction time, where a patch
    a few voxels short of the slice needs two windows per axis (four per slice).
    """
    return tuple(max(minimum, math.ceil(n / divisor) * divisor) for n in size_yx)
