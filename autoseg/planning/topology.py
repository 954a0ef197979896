"""Network topologies and size levels of the built-in configurations.

Pooling follows the data's anisotropy (nnU-Net's rule, written anew): an axis is pooled
only while its feature map stays at least ``MIN_FEATURE_SIZE`` voxels and its current
spacing is at most twice the finest; kernels are 1 along an axis that is still more than
twice as coarse as the finest, so thick slices are not blended before the in-plane
resolution has caught up.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

ANISOTROPY_RATIO = 3.0
MIN_FEATURE_SIZE = 4
MAX_STAGES_3D = 5
# 3d_hybrid sizes, smallest first: (first-stage width, width cap, transformer depth, heads).
# 5 stages give ~0.45 M parameters at the first rung and ~18-22 M at (32, 320, 1, 4).
HYBRID_LEVELS = (
    (4, 64, 1, 4),
    (6, 96, 1, 4),
    (8, 128, 1, 4),
    (12, 192, 1, 4),
    (16, 256, 1, 4),
    (24, 320, 1, 4),
    (32, 320, 1, 4),
    (32, 384, 2, 8),
)
UNET25D_LEVELS = (8, 12, 16, 24, 32, 48, 64)
# 2d_lcnn sizes: (local widths, ResNeXt blocks per layer, ResNeXt stem width, groups).
LCNN_LEVELS = (
    ((8, 16, 32, 64), (1, 1, 1, 1), 16, 8),
    ((16, 32, 64, 128), (1, 1, 1, 1), 32, 16),
    ((16, 32, 64, 128), (2, 2, 2, 2), 32, 32),
    ((24, 48, 96, 192), (2, 2, 2, 2), 64, 32),
    ((32, 64, 128, 256), (3, 4, 6, 3), 64, 32),
)


def is_anisotropic(spacing_mm: Sequence[float]) -> bool:
    """Thick slices: the coarsest axis is more than ANISOTROPY_RATIO times the finest."""
    return max(spacing_mm) / min(spacing_mm) > ANISOTROPY_RATIO


def pooling_3d(
    spacing_mm: Sequence[float], patch: Sequence[int], max_stages: int = MAX_STAGES_3D
) -> tuple[list[list[int]], list[list[int]]]:
    """Per-stage strides and kernels for a 3D patch at a spacing (first stride all ones).

    Returns:
        ``(strides, kernel_sizes)``, one ``[z, y, x]`` entry per stage.
    """
    spacing, size = list(spacing_mm), list(patch)
    strides, kernels = [[1, 1, 1]], [[3 if s <= 2 * min(spacing) else 1 for s in spacing]]
    while len(strides) < max_stages:
        finest = min(spacing)
        stride = [
            2 if size[a] >= 2 * MIN_FEATURE_SIZE and spacing[a] <= 2 * finest else 1
            for a in range(3)
        ]
        if stride == [1, 1, 1]:
            break
        size = [n // s for n, s in zip(size, stride, strict=True)]
        spacing = [sp * s for sp, s in zip(spacing, stride, strict=True)]
        strides.append(stride)
        kernels.append([3 if sp <= 2 * min(spacing) else 1 for sp in spacing])
    return strides, kernels


def divisors_of(strides: Sequence[Sequence[int]]) -> list[int]:
    """The factor each axis must be a multiple of: the product of its strides."""
    return [math.prod(s[a] for s in strides) for a in range(len(strides[0]))]


def fit_patch_3d(spacing_mm: Sequence[float], patch: Sequence[int]) -> list[int]:
    """Round a 3D patch down to what its own pooling plan can divide (at least one step)."""
    strides, _ = pooling_3d(spacing_mm, patch)
    divisors = divisors_of(strides)
    fitted = [max(d, (n // d) * d) for n, d in zip(patch, divisors, strict=True)]
    strides, _ = pooling_3d(spacing_mm, fitted)
    return [max(d, (n // d) * d) for n, d in zip(fitted, divisors_of(strides), strict=True)]


def fit_patch_up_3d(spacing_mm: Sequence[float], wanted: Sequence[int]) -> tuple[int, ...]:
    """Round a 3D patch up until its own pooling plan divides it, so it still covers ``wanted``.

    Each pass only grows the patch and a multiple of the largest divisor (16) is always
    divisible, so the loop ends.
    """
    patch = list(wanted)
    while True:
        divisors = divisors_of(pooling_3d(spacing_mm, patch)[0])
        rounded = [math.ceil(n / d) * d for n, d in zip(patch, divisors, strict=True)]
        if rounded == patch:
            return tuple(patch)
        patch = rounded


def hybrid_groups(base_features: int) -> int:
    """Cardinality of the 3d_hybrid's grouped convolutions: 4, or 1 (dense) below width 16.

    Under 4 channels per group a grouped convolution is nearly depthwise: it learns slowly
    (a width-8 network with 4 groups found no lesion in 650 iterations, dense found it in
    250) and on a CPU it is no cheaper than a dense one (0.44 vs 0.37 s per iteration).
    """
    return 4 if base_features >= 16 else 1


def hybrid_kwargs(
    level: int, spacing_mm: Sequence[float], patch: Sequence[int], channels: int, classes: int
) -> dict[str, Any]:
    """3d_hybrid keyword arguments for a size level, a spacing and a patch."""
    base, cap, depth, heads = HYBRID_LEVELS[level]
    strides, kernels = pooling_3d(spacing_mm, patch)
    features = [min(base * 2**s, cap) for s in range(len(strides))]
    return {
        "in_channels": channels,
        "num_classes": classes,
        "stage_features": features,
        "kernel_sizes": kernels,
        "strides": strides,
        "blocks_per_stage": [1] + [2] * (len(strides) - 1),
        "groups": hybrid_groups(base),
        "se": True,
        "attention_gates": True,
        "transformer_depth": depth,
        "transformer_heads": heads if features[-1] % heads == 0 else 1,
        "deep_supervision": True,
    }


def levels_2d(patch_yx: Sequence[int], max_levels: int = 5) -> int:
    """U-Net levels for an in-plane patch: pool while the map stays >= MIN_FEATURE_SIZE."""
    levels = 1
    while levels < max_levels and min(patch_yx) // 2**levels >= MIN_FEATURE_SIZE:
        levels += 1
    return levels


def unet25d_kwargs(level: int, patch_yx: Sequence[int], channels: int, classes: int) -> dict:
    """2.5d_unet keyword arguments (``channels`` = image channels x slices)."""
    return {
        "in_channels": channels,
        "num_classes": classes,
        "base_features": UNET25D_LEVELS[level],
        "num_levels": levels_2d(patch_yx),
        "attention_gates": True,
        "deep_supervision": True,
    }


def lcnn_kwargs(level: int, image_channels: int, slices: int, classes: int) -> dict:
    """2d_lcnn keyword arguments for a size level and a slice stack of ``slices``."""
    local, layers, stem, groups = LCNN_LEVELS[level]
    return {
        "in_channels": image_channels * slices,
        "num_classes": classes,
        "num_slices": slices,
        "local_features": list(local),
        "attention_heads": 4,
        "global_layers": list(layers),
        "global_groups": groups,
        "global_width_per_group": 4,
        "global_base_channels": stem,
        "global_decoder_features": min(64, 2 * stem),
        "deep_supervision": True,
    }
