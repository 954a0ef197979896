"""Augmentation: labels stay aligned and integer, the enlarged cut hides all padding."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from autoseg.training.augmentation import resolve, sample_size
from autoseg.training.cpu_augmentation import build_transforms

SPATIAL_ONLY = {
    "probability": 1.0,
    "probabilities": {},
    "gaussian_noise_variance": None,
    "gaussian_blur_sigma": None,
    "brightness": None,
    "contrast": None,
    "low_resolution": None,
    "gamma": None,
    "mirror_axes": [],
}
NOTHING = {**SPATIAL_ONLY, "rotation_deg": None, "scale": None}


def run(
    settings: dict[str, Any],
    patch: tuple,
    dim: int,
    data: np.ndarray,
    seg: np.ndarray,
    seed: int = 0,
) -> dict:
    rng = np.random.default_rng(seed)
    return build_transforms(settings, patch, dim)(data.copy(), seg.copy(), rng)


def centre_crop(array: np.ndarray, patch: tuple) -> np.ndarray:
    starts = [(n - p) // 2 for n, p in zip(array.shape[2:], patch, strict=True)]
    return array[(..., *[slice(s, s + p) for s, p in zip(starts, patch, strict=True)])]


def blob_labels(shape: tuple) -> np.ndarray:
    """``(1, 1, *shape)`` labels around the centre: -1 on the low-x side, two boxes of 1
    in the 0 background, all inside the centre crop of any patch of >= 14 voxels."""
    seg = np.zeros((1, 1, *shape), np.float32)
    centre = [n // 2 for n in shape]
    seg[..., : centre[-1] - 5] = -1
    seg[(0, 0, *[slice(c - 3, c + 1) for c in centre])] = 1
    seg[(0, 0, *[slice(c + 3, c + 6) for c in centre])] = 1
    return seg


def test_without_augmentation_the_cut_is_the_patch() -> None:
    assert sample_size((8, 10, 12), NOTHING, 3) == (8, 10, 12)
    assert sample_size((16, 16), NOTHING, 2) == (16, 16)


def test_the_cut_grows_evenly_and_in_plane_leaves_z_alone() -> None:
    full = sample_size((20, 24, 16), None, 3)
    assert all(s > p and (s - p) % 2 == 0 for s, p in zip(full, (20, 24, 16), strict=True))
    in_plane = sample_size((20, 24, 16), {"rotation_axes": "in_plane"}, 3)
    assert in_plane[0] == 20 and in_plane[1] > 24
    # 2D defaults rotate by up to 180 degrees: the cut covers the zoomed-out diagonal.
    assert sample_size((32, 32), None, 2)[0] >= 31 * np.sqrt(2) * 1.4


@pytest.mark.parametrize(
    ("patch", "dim", "extra"),
    [((8, 10, 12), 3, {}), ((12, 10), 2, {}), ((6, 12, 10), 3, {"rotation_axes": "in_plane"})],
)
def test_no_padding_shows_after_the_strongest_rotation_and_zoom_out(
    patch: tuple, dim: int, extra: dict
) -> None:
    settings = {**SPATIAL_ONLY, "scale": [1.4, 1.4], **extra}
    cut = sample_size(patch, settings, dim)
    data = np.ones((2, 1, *cut), np.float32)
    seg = np.zeros((2, 1, *cut), np.float32)
    for seed in range(6):
        out = run(settings, patch, dim, data, seg, seed)
        assert out["data"].shape == (2, 1, *patch)
        assert np.allclose(out["data"], 1.0, atol=1e-3) and (out["seg"] == 0).all()


def test_with_every_probability_zero_the_output_is_the_exact_centre_crop() -> None:
    settings = {**SPATIAL_ONLY, "probability": 0.0}
    cut = sample_size((6, 8, 10), settings | {"probability": 1.0}, 3)
    data = np.random.default_rng(0).normal(size=(2, 1, *cut)).astype(np.float32)
    seg = blob_labels(cut).repeat(2, axis=0)
    out = run(settings, (6, 8, 10), 3, data, seg)
    np.testing.assert_array_equal(out["data"], centre_crop(data, (6, 8, 10)))
    np.testing.assert_array_equal(out["seg"], centre_crop(seg, (6, 8, 10)))


@pytest.mark.parametrize(("patch", "dim"), [((16, 20, 18), 3), ((28, 24), 2)])
def test_spatial_transforms_keep_image_and_labels_aligned(patch: tuple, dim: int) -> None:
    cut = sample_size(patch, SPATIAL_ONLY, dim)
    seg = blob_labels(cut).repeat(2, axis=0)
    out = run(SPATIAL_ONLY, patch, dim, seg * 10.0, seg, seed=3)
    labels, image = out["seg"], out["data"]
    assert set(np.unique(labels)) <= {-1.0, 0.0, 1.0} and (labels == 1).any()
    assert (labels == -1).any() and np.array_equal(labels, np.round(labels))
    agreement = np.mean(np.clip(np.round(image / 10.0), -1, 1) == labels)
    assert agreement > 0.97
    bright, lesion = image > 5, labels == 1
    assert (
        2 * np.sum(bright & lesion) / (bright.sum() + lesion.sum()) > 0.9
    )  # a 2-voxel shift: ~0.5
    assert np.all(image[labels == -1] < 0)  # the -1 region stays where the image says it is


def test_mirroring_moves_labels_with_the_image() -> None:
    settings = {**NOTHING, "mirror_axes": [0, 1, 2]}
    seg = blob_labels((10, 12, 14)).repeat(4, axis=0)
    out = run(settings, (10, 12, 14), 3, seg * 10.0, seg, seed=1)
    np.testing.assert_array_equal(out["data"], out["seg"] * 10.0)
    assert not np.array_equal(out["seg"], seg)  # at least one sample was flipped


def test_a_slice_stack_moves_as_one_image() -> None:
    cut = sample_size((20, 20), SPATIAL_ONLY, 2)
    base = np.random.default_rng(0).normal(size=cut).astype(np.float32)
    stack = np.stack([base * (s + 1) for s in range(5)])[None]  # (1, k=5, Y, X)
    out = run(SPATIAL_ONLY, (20, 20), 2, stack, np.zeros((1, 1, *cut), np.float32), seed=2)
    for s in range(5):
        np.testing.assert_allclose(out["data"][0, s], out["data"][0, 0] * (s + 1), atol=1e-4)


def test_in_plane_3d_never_mixes_slices() -> None:
    settings = {**SPATIAL_ONLY, "rotation_axes": "in_plane"}
    cut = sample_size((6, 12, 10), settings, 3)
    data = np.broadcast_to(np.arange(cut[0], dtype=np.float32)[:, None, None], cut)
    out = run(settings, (6, 12, 10), 3, data[None, None], np.zeros((1, 1, *cut), np.float32))
    per_slice = out["data"][0, 0].reshape(6, -1)
    np.testing.assert_allclose(
        per_slice, np.arange(6)[:, None] * np.ones_like(per_slice), atol=1e-4
    )


def test_intensity_transforms_leave_labels_untouched() -> None:
    settings = {**resolve(None, 3), "probability": 1.0, "rotation_deg": None, "scale": None}
    settings.update(probabilities={}, mirror_axes=[])
    seg = blob_labels((8, 8, 8)).repeat(2, axis=0)
    data = np.random.default_rng(1).normal(size=seg.shape).astype(np.float32)
    out = run(settings, (8, 8, 8), 3, data, seg, seed=4)
    assert not np.allclose(out["data"], data, atol=0.05)
    np.testing.assert_array_equal(out["seg"], seg)


def test_plans_keys_override_the_defaults() -> None:
    settings = resolve({"rotation_deg": [-10, 10], "probabilities": {"gamma": 0.5}}, 2)
    assert settings["rotation_deg"] == [-10, 10] and settings["probabilities"]["gamma"] == 0.5
    assert settings["probabilities"]["noise"] == 0.1 and settings["mirror_axes"] == [0, 1]


@pytest.mark.parametrize("image_channels", [1, 2])
def test_a_channel_and_its_mirror_copy_share_their_intensity_draws(image_channels: int) -> None:
    """With contralateral copies a left-right difference must stay a difference of the
    image, not of the augmentation: identical copies stay identical."""
    settings = {**resolve(None, 3), "probability": 1.0, "rotation_deg": None, "scale": None}
    settings.update(probabilities={}, mirror_axes=[], gaussian_noise_variance=None)
    image = np.random.default_rng(2).normal(size=(1, image_channels, 8, 8, 8))
    data = np.concatenate([image, image], axis=1).astype(np.float32)
    seg = np.zeros((1, 1, 8, 8, 8), np.float32)
    rng = np.random.default_rng(5)
    shared = build_transforms(settings, (8, 8, 8), 3, channel_copies=2)(data, seg, rng)["data"]
    np.testing.assert_array_equal(shared[:, :image_channels], shared[:, image_channels:])
    assert not np.allclose(shared, data, atol=0.05)
    rng = np.random.default_rng(5)
    apart = build_transforms(settings, (8, 8, 8), 3)(data, seg, rng)["data"]
    assert not np.allclose(apart[:, :image_channels], apart[:, image_channels:], atol=0.01)
