"""Cropping to the nonzero region and its exact inverse."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from autoseg.preprocessing.crop import CropBox, bounding_box, crop, fill_holes, nonzero_mask, uncrop


def hollow_ball(shape: tuple[int, int, int] = (12, 14, 16)) -> np.ndarray:
    zz, yy, xx = np.meshgrid(*[np.arange(n) - (n - 1) / 2 for n in shape], indexing="ij")
    radius = np.sqrt(zz**2 + yy**2 + xx**2)
    return (radius < 5) & (radius > 2.5)


def test_fill_holes_matches_scipy_and_fills_the_dark_interior() -> None:
    shell = hollow_ball()
    shell[0, 0, 0] = True  # a border-touching speck must not change the background
    filled = fill_holes(shell)
    np.testing.assert_array_equal(filled, ndimage.binary_fill_holes(shell))
    assert filled[6, 7, 8] and not shell[6, 7, 8]


def test_nonzero_mask_is_the_union_over_channels() -> None:
    data = np.zeros((2, 6, 6, 6), np.float32)
    data[0, 1, 1, 1] = 5.0
    data[1, 4, 4, 4] = -3.0  # negative intensities count as nonzero
    mask = nonzero_mask(data)
    assert mask[1, 1, 1] and mask[4, 4, 4] and mask.sum() == 2


def test_bounding_box_is_tight_and_crop_uncrop_round_trips() -> None:
    mask = np.zeros((10, 12, 14), bool)
    mask[2:5, 3:9, 7:8] = True
    box = bounding_box(mask)
    assert box.start == (2, 3, 7) and box.stop == (5, 9, 8) and box.shape == (3, 6, 1)
    data = np.arange(2 * 10 * 12 * 14, dtype=np.float32).reshape(2, 10, 12, 14)
    restored = uncrop(crop(data, box), box, fill_value=-7.0)
    inside = np.zeros(data.shape, bool)
    inside[(..., *box.slices)] = True
    np.testing.assert_array_equal(restored[inside], data[inside])
    assert np.all(restored[~inside] == -7.0)
    assert CropBox.from_json(box.to_json()) == box


def test_empty_mask_keeps_the_whole_grid() -> None:
    box = bounding_box(np.zeros((3, 4, 5), bool))
    assert box == CropBox.full((3, 4, 5)) and box.shape == (3, 4, 5)


def test_foreground_mask_crops_the_air_of_a_head_without_zero_background() -> None:
    from autoseg.preprocessing.crop import foreground_mask
    from autoseg.synthetic.generate import SynthOptions, atlas_case

    case = atlas_case(1, 0, SynthOptions(size="tiny"))
    assert (case.image > 0).all()  # a noise floor everywhere: the nonzero mask is the grid
    mask = foreground_mask(case.image[None])
    head = case.tissue > 0
    assert mask[head].all()  # nothing of the head is cut
    assert mask.mean() < 0.8 * np.ones_like(mask).mean()  # the air is
    assert bounding_box(mask).shape < case.image.shape


def test_foreground_mask_keeps_the_nonzero_mask_when_nothing_looks_like_air() -> None:
    from autoseg.preprocessing.crop import foreground_mask

    rng = np.random.default_rng(0)
    noise = rng.uniform(1.0, 2.0, (1, 10, 12, 14)).astype(np.float32)  # tissue to the edges
    assert foreground_mask(noise).all()
    stripped = np.zeros((1, 10, 12, 14), np.float32)
    stripped[0, 2:8, 3:9, 4:10] = 5.0
    np.testing.assert_array_equal(foreground_mask(stripped), nonzero_mask(stripped))


@pytest.mark.parametrize("background", ["rician", "zero", "gaussian"])
def test_the_crop_follows_the_head_whatever_the_air_holds(background: str) -> None:
    """Zero-mean noise in the air (its minimum far below the air's median) used to defeat
    the air test, and the crop kept the whole grid: prediction then cost the noise."""
    from autoseg.preprocessing.crop import foreground_mask
    from autoseg.synthetic.generate import SynthOptions, atlas_case

    case = atlas_case(1, 0, SynthOptions(size="small", background=background))
    head = case.tissue > 0
    box = bounding_box(foreground_mask(case.image[None]))
    head_box = bounding_box(head)
    assert foreground_mask(case.image[None])[head].all()
    # a few voxels of margin per side around the head's own box (smoothing, dilation)
    assert all(a - 3 <= b <= a for a, b in zip(head_box.start, box.start, strict=True))
    assert all(a <= b <= a + 3 for a, b in zip(head_box.stop, box.stop, strict=True))


def test_two_overlapping_noise_clouds_are_not_taken_for_head_and_air() -> None:
    from autoseg.preprocessing.crop import is_air_around

    rng = np.random.default_rng(0)
    channel = rng.normal(1.0, 0.5, (20, 20, 20)).astype(np.float32)
    channel[:, :, 10:] += 0.5  # a brighter half, one noise sigma above the other
    half = np.zeros(channel.shape, bool)
    half[:, :, 10:] = True
    assert not is_air_around(channel, half)
    channel[:, :, 10:] += 5.0  # now it stands ten sigmas above: that is a head in air
    assert is_air_around(channel, half)
