"""Patch sampling: exact regions, padding, foreground oversampling, slice stacks, seeds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from autoseg.core.errors import InvalidInputError
from autoseg.preprocessing.cache import load_case
from autoseg.training.sampling import (
    CaseReader,
    PatchSampler,
    check_cache,
    forced_count,
    read_region,
    stack_slices,
)
from tests.training.cache_helpers import coordinate_volume, lesion_cache, save_arrays


def decode(values: np.ndarray) -> np.ndarray:
    """``(z, y, x)`` voxel indices from :func:`coordinate_volume` values (channel 0)."""
    code = np.rint(values - 1).astype(np.int64)
    return np.stack([code // 10_000 % 100, code // 100 % 100, code % 100])


def sampler(folder: Path, ids: list[str], patch: tuple, **kwargs: object) -> PatchSampler:
    return PatchSampler(folder, tuple(ids), patch, **{"batch_size": 3, **kwargs})


def test_read_region_inside_equals_slicing_and_outside_is_padded() -> None:
    volume = coordinate_volume((6, 7, 8), channels=2)
    inside = read_region(volume, (1, 2, 3), (3, 4, 5), 0.0)
    np.testing.assert_array_equal(inside, volume[:, 1:4, 2:6, 3:8])
    partly = read_region(volume, (-2, 5, 6), (4, 4, 4), -7.0)
    np.testing.assert_array_equal(partly[:, 2:, :2, :2], volume[:, 0:2, 5:7, 6:8])
    assert (partly[:, :2] == -7).all() and (partly[:, :, 2:] == -7).all()
    assert (partly[:, :, :, 2:] == -7).all()
    assert (read_region(volume, (10, 0, 0), (2, 2, 2), 5.0) == 5).all()


def test_a_3d_patch_is_one_contiguous_block_of_the_volume(tmp_path: Path) -> None:
    ids = lesion_cache(tmp_path, cases=2, shape=(20, 24, 22))
    patches = sampler(tmp_path, ids, (6, 8, 10)).sample(
        CaseReader(tmp_path), np.random.default_rng(0)
    )
    for data, case_id in zip(patches["data"], patches["case_ids"], strict=True):
        start = decode(data[0, 0, 0, 0])
        expected = load_case(tmp_path, case_id).data
        region = tuple(slice(s, s + n) for s, n in zip(start, (6, 8, 10), strict=True))
        np.testing.assert_array_equal(data, expected[(slice(None), *region)])
    assert patches["seg"].dtype == np.int8 and patches["seg"].shape == (3, 1, 6, 8, 10)


def test_a_patch_larger_than_the_volume_holds_it_whole_padded_with_0_and_minus_1(
    tmp_path: Path,
) -> None:
    ids = lesion_cache(tmp_path, cases=1, shape=(6, 8, 7), lesion=2)
    batch = sampler(tmp_path, ids, (10, 8, 12)).sample(
        CaseReader(tmp_path), np.random.default_rng(3)
    )
    case = load_case(tmp_path, ids[0])
    for data, seg in zip(batch["data"], batch["seg"], strict=True):
        inside = data[0] > 0
        assert inside.sum() == 6 * 8 * 7
        np.testing.assert_array_equal(np.sort(data[0][inside]), np.sort(case.data[0].ravel()))
        assert (seg[0][~inside] == -1).all() and (data[0][~inside] == 0).all()


def test_forced_count_rounds_up_so_the_fraction_is_a_floor() -> None:
    assert [forced_count(2, 0.33), forced_count(3, 0.33), forced_count(4, 0.33)] == [1, 1, 2]
    assert forced_count(5, 0.0) == 0 and forced_count(2, 1.0) == 2


def test_forced_patches_always_hold_foreground_and_reach_the_requested_fraction(
    tmp_path: Path,
) -> None:
    ids = lesion_cache(tmp_path, cases=3, shape=(24, 28, 26), lesion=2)
    patches = sampler(tmp_path, ids, (8, 8, 8), oversample_foreground=0.33)
    reader, rng = CaseReader(tmp_path), np.random.default_rng(1)
    has_lesion = np.array(
        [(patches.sample(reader, rng)["seg"] == 1).any(axis=(1, 2, 3, 4)) for _ in range(150)]
    )
    assert has_lesion[:, -1].all()  # the last of 3 is the forced one
    assert has_lesion.mean() >= 0.33
    assert has_lesion[:, :2].mean() < 0.5  # the others are random: mostly background


def random_hit_probability(case_seg: np.ndarray, patch: tuple[int, int, int]) -> float:
    """Exact chance that a uniformly placed patch overlaps the (box-shaped) lesion."""
    where = np.argwhere(case_seg == 1)
    chance = 1.0
    for axis, length in enumerate(patch):
        extent = case_seg.shape[axis]
        low, high = where[:, axis].min(), where[:, axis].max()
        starts = np.arange(0, extent - length + 1)
        chance *= np.mean((starts <= high) & (starts + length > low))
    return chance


def test_without_oversampling_the_foreground_rate_is_that_of_random_patches(
    tmp_path: Path,
) -> None:
    ids = lesion_cache(tmp_path, cases=2, shape=(20, 20, 20), lesion=4)
    patch = (8, 8, 8)
    expected = np.mean([random_hit_probability(load_case(tmp_path, i).seg[0], patch) for i in ids])
    patches = sampler(tmp_path, ids, patch, batch_size=4, oversample_foreground=0.0)
    reader, rng = CaseReader(tmp_path), np.random.default_rng(2)
    hits = [(patches.sample(reader, rng)["seg"] == 1).any(axis=(1, 2, 3, 4)) for _ in range(250)]
    rate, n = np.mean(hits), 1000
    assert abs(rate - expected) < 4 * np.sqrt(expected * (1 - expected) / n)


def test_cases_without_foreground_fall_back_to_random_patches(tmp_path: Path) -> None:
    ids = lesion_cache(tmp_path, cases=2, empty=(0, 1))
    batch = sampler(tmp_path, ids, (6, 6, 6), oversample_foreground=1.0).sample(
        CaseReader(tmp_path), np.random.default_rng(0)
    )
    assert batch["data"].shape == (3, 1, 6, 6, 6) and not (batch["seg"] == 1).any()


def test_slice_stacks_are_slice_major_with_the_centre_slice_in_the_middle(tmp_path: Path) -> None:
    shape = (9, 12, 10)
    seg = np.zeros((1, *shape), np.int8)
    seg[0, 4, 5:7, 5:7] = 1
    save_arrays(tmp_path, "a", coordinate_volume(shape, channels=2), seg)
    stacks = sampler(tmp_path, ["a"], (8, 8), context=2, oversample_foreground=1.0)
    batch = stacks.sample(CaseReader(tmp_path), np.random.default_rng(0))
    assert batch["data"].shape == (3, 10, 8, 8) and batch["seg"].shape == (3, 1, 8, 8)
    for data, target in zip(batch["data"], batch["seg"], strict=True):
        z_of = [decode(data[s * 2, 0, 0])[0] for s in range(5)]
        assert z_of == [2, 3, 4, 5, 6]  # forced onto the lesion's slice z = 4
        np.testing.assert_allclose(data[2 * 2 + 1] - data[2 * 2], 1e6)  # channel 1 of slice 4
        assert (target == 1).any() and target.dtype == np.int8


def test_stack_edges_are_zero_padded_and_the_target_is_the_centre_slice(tmp_path: Path) -> None:
    shape = (5, 8, 8)
    seg = np.zeros((1, *shape), np.int8)
    seg[0, 0, 2:5, 2:5] = 1  # lesion only on the first slice
    seg[0, 1] = -1
    save_arrays(tmp_path, "edge", coordinate_volume(shape), seg)
    stacks = sampler(tmp_path, ["edge"], (8, 8), batch_size=1, context=2, oversample_foreground=1)
    batch = stacks.sample(CaseReader(tmp_path), np.random.default_rng(0))
    data = batch["data"][0]
    assert (data[:2] == 0).all() and (decode(data[2])[0] == 0).all()
    np.testing.assert_array_equal(batch["seg"][0, 0], seg[0, 0])


def test_stack_slices_orders_channels_slice_major() -> None:
    data = np.arange(2 * 3 * 1 * 1).reshape(2, 3, 1, 1)  # (C=2, k=3)
    assert stack_slices(data)[:, 0, 0].tolist() == [0, 3, 1, 4, 2, 5]


def test_the_same_seed_gives_the_same_batch(tmp_path: Path) -> None:
    ids = lesion_cache(tmp_path, cases=3)
    patches = sampler(tmp_path, ids, (6, 6, 6))
    first, again, other = (
        patches.sample(CaseReader(tmp_path), np.random.default_rng(s)) for s in (5, 5, 6)
    )
    np.testing.assert_array_equal(first["data"], again["data"])
    assert first["case_ids"] == again["case_ids"]
    assert not np.array_equal(first["data"], other["data"])


def test_missing_cache_files_are_named_before_sampling(tmp_path: Path) -> None:
    ids = lesion_cache(tmp_path, cases=2)
    (tmp_path / "case001.json").unlink()
    with pytest.raises(InvalidInputError, match=r"case001\.json"):
        check_cache(tmp_path, [*ids, "nope"])
    with pytest.raises(InvalidInputError, match=r"nope\.npz"):
        check_cache(tmp_path, ["nope"])


def test_per_lesion_sampling_centres_small_lesions_as_often_as_large_ones(
    tmp_path: Path,
) -> None:
    from autoseg.training.sampling import foreground_voxel

    seg = np.zeros((1, 20, 24, 22), np.int8)
    seg[0, 2:12, 2:12, 2:12] = 1  # 1000 voxels
    seg[0, 16:18, 18:20, 18:20] = 1  # 8 voxels
    save_arrays(tmp_path, "a", coordinate_volume(seg.shape[1:]), seg)
    reader = CaseReader(tmp_path)
    case, ids = reader.case("a"), reader.lesion_ids("a")
    assert sorted(np.unique(ids[1], return_counts=True)[1].tolist()) == [8, 992]  # capped 1000
    rng = np.random.default_rng(0)

    def small_share(per_lesion: float) -> float:
        voxels = [foreground_voxel(rng, case, ids, per_lesion) for _ in range(2000)]
        return float(np.mean([v[0] >= 16 for v in voxels]))

    assert small_share(0.0) < 0.02  # a voxel draw: 8 / 1000 of the time
    assert small_share(1.0) == pytest.approx(0.5, abs=0.05)  # a lesion draw: half
    assert small_share(0.5) == pytest.approx(0.25, abs=0.05)
