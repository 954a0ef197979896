"""Window layout and importance weights."""

from __future__ import annotations

import itertools

import pytest
import torch

from autoseg.inference.tiles import (
    gaussian_factor,
    importance_factors,
    outer_product,
    tile_positions,
    weight_sum,
    window_starts,
)


@pytest.mark.parametrize(
    ("size", "patch", "step", "expected"),
    [
        (100, 64, 0.5, [0, 18, 36]),
        (65, 64, 0.5, [0, 1]),
        (64, 64, 0.5, [0]),
        (30, 64, 0.5, [0]),
        (96, 64, 0.5, [0, 32]),
        (97, 64, 0.5, [0, 17, 33]),
        (100, 64, 1.0, [0, 36]),
    ],
)
def test_window_starts_are_minimal_and_even(
    size: int, patch: int, step: float, expected: list[int]
) -> None:
    assert window_starts(size, patch, step) == expected


@pytest.mark.parametrize("step", [0.25, 0.5, 0.75, 1.0])
def test_windows_cover_every_voxel_with_the_promised_overlap(step: float) -> None:
    patch = 16
    for size in range(patch, 90):
        starts = window_starts(size, patch, step)
        assert starts[0] == 0 and starts[-1] + patch == size
        gaps = [b - a for a, b in itertools.pairwise(starts)]
        assert all(gap <= patch * step for gap in gaps), (size, starts)
        # one window fewer could not keep every gap within patch * step: the count is minimal
        if len(starts) > 2:
            assert (size - patch) / (len(starts) - 2) > patch * step
        assert (len(starts) == 1) == (size == patch)


def test_tile_positions_are_the_grid_of_axis_starts() -> None:
    positions = tile_positions((100, 64, 65), (64, 64, 64), 0.5)
    assert len(positions) == 3 * 1 * 2
    assert positions[0] == (0, 0, 0) and positions[-1] == (36, 0, 1)


def test_gaussian_is_symmetric_positive_and_peaks_at_one() -> None:
    for patch in (1, 2, 7, 16):
        factor = gaussian_factor(patch, 0.125)
        assert torch.equal(factor, factor.flip(0))
        assert factor.max() == 1.0 and factor.min() > 0
    tiny_sigma = gaussian_factor(32, 0.01)
    assert tiny_sigma.min() > 0  # the floor keeps corner voxels countable


def test_separable_weight_sum_equals_summed_windows() -> None:
    shape, patch, step = (11, 20, 9), (4, 8, 9), 0.5
    factors = importance_factors(patch, True, 0.125)
    importance = outer_product(factors)
    brute = torch.zeros(shape)
    for start in tile_positions(shape, patch, step):
        region = tuple(slice(s, s + p) for s, p in zip(start, patch, strict=True))
        brute[region] += importance
    fast = weight_sum(shape, patch, step, factors)
    assert fast.min() > 0
    torch.testing.assert_close(fast, brute, rtol=1e-6, atol=0)
