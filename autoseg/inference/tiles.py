"""Where sliding windows go and how much each voxel of a window counts.

Windows are laid out axis by axis (the grid of window positions is the Cartesian product of
per-axis starts) and the Gaussian importance map is a product of per-axis factors. Both
being separable lets :func:`weight_sum` build the normalising map from 1D sums instead of
adding one full window of weights per tile.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch

# Per-axis floor of the Gaussian factor: voxels at a window's corner must keep a positive
# weight (a voxel covered only by corners would otherwise divide 0 by 0), yet stay far
# below the centre's weight so they barely count where other windows cover them better.
GAUSSIAN_FLOOR = 1e-4


def window_starts(size: int, patch: int, step: float) -> list[int]:
    """Start indices of the windows along one axis.

    The fewest windows whose neighbours overlap by at least ``1 - step`` of the patch,
    spread evenly from the first voxel to the last: ``n = ceil((size - patch) /
    (patch * step)) + 1``. A size of at most one patch gets one window at 0 (the caller
    pads smaller images up to the patch).

    Args:
        size: voxels along the axis.
        patch: window size along the axis.
        step: window stride as a fraction of the patch, in ``(0, 1]``.

    Returns:
        Sorted starts; the last window ends exactly at ``size``.
    """
    if patch < 1 or not 0 < step <= 1:
        raise ValueError(f"need patch >= 1 and 0 < step <= 1, got patch {patch}, step {step}")
    if size <= patch:
        return [0]
    count = math.ceil((size - patch) / (patch * step)) + 1
    span = size - patch
    # i * span / (count - 1) rounded half up, in integers (no float ties).
    return [(2 * i * span + count - 1) // (2 * (count - 1)) for i in range(count)]


def tile_positions(
    shape: Sequence[int], patch: Sequence[int], step: float
) -> list[tuple[int, ...]]:
    """Start corner of every window covering ``shape`` (all axes), in C order."""
    starts = [window_starts(s, p, step) for s, p in zip(shape, patch, strict=True)]
    return list(itertools.product(*starts))


def gaussian_factor(patch: int, sigma_scale: float) -> torch.Tensor:
    """One axis of the importance map: a Gaussian centred on the window, maximum 1.

    Centred at ``(patch - 1) / 2`` so the map is mirror-symmetric: a flipped window gets the
    same weights, which keeps mirroring TTA an exact average.

    Args:
        patch: window size along the axis.
        sigma_scale: sigma as a fraction of the patch (nnU-Net's 1/8).

    Returns:
        float32 ``(patch,)`` with values in ``[GAUSSIAN_FLOOR, 1]``.
    """
    if patch == 1:
        return torch.ones(1)
    position = torch.arange(patch, dtype=torch.float64) - (patch - 1) / 2
    sigma = max(patch * sigma_scale, 1e-6)
    values = torch.exp(-0.5 * (position / sigma) ** 2)
    return (values / values.max()).clamp_min(GAUSSIAN_FLOOR).float()


def importance_factors(
    patch: Sequence[int], gaussian: bool, sigma_scale: float
) -> list[torch.Tensor]:
    """Per-axis factors of the importance map (all ones when ``gaussian`` is off)."""
    if not gaussian:
        return [torch.ones(p) for p in patch]
    return [gaussian_factor(p, sigma_scale) for p in patch]


def outer_product(factors: Sequence[torch.Tensor]) -> torch.Tensor:
    """The full map ``(*lengths)`` whose entry is the product of the factors' entries."""
    result = factors[0]
    for factor in factors[1:]:
        result = result[..., None] * factor
    return result


def axis_weight_sum(size: int, starts: Sequence[int], factor: torch.Tensor) -> torch.Tensor:
    """Sum along one axis of the factor placed at every start: ``(size,)`` float32."""
    total = torch.zeros(size, dtype=torch.float32)
    for start in starts:
        total[start : start + len(factor)] += factor
    return total


def weight_sum(
    shape: Sequence[int], patch: Sequence[int], step: float, factors: Sequence[torch.Tensor]
) -> torch.Tensor:
    """Summed importance of all windows at every voxel, ``(*shape)`` float32.

    Because the windows form a grid and the map is separable, the sum over windows factors
    into a product of per-axis sums (exact up to float rounding).
    """
    axis_sums = [
        axis_weight_sum(s, window_starts(s, p, step), f)
        for s, p, f in zip(shape, patch, factors, strict=True)
    ]
    return outer_product(axis_sums)
