"""Normalisation statistics per scheme, and N4 removing a smooth bias field."""

from __future__ import annotations

import numpy as np
import pytest

from autoseg.plans.preprocessing import ChannelNormalization
from autoseg.preprocessing.normalize import n4_correct, normalize, normalize_channel


def brain_image(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.meshgrid(*[np.linspace(-1, 1, n) for n in (16, 20, 18)], indexing="ij")
    mask = zz**2 + yy**2 + xx**2 < 0.7
    image = np.where(mask, rng.normal(400.0, 60.0, mask.shape), 0.0).astype(np.float32)
    return image, mask


def test_zscore_brain_is_standard_inside_and_zero_outside() -> None:
    image, mask = brain_image()
    out = normalize_channel(image, ChannelNormalization("zscore_brain"), mask)
    assert out.dtype == np.float32
    assert abs(out[mask].mean()) < 1e-5 and abs(out[mask].std() - 1.0) < 1e-4
    assert np.all(out[~mask] == 0.0)


def test_whole_image_zscore_includes_the_background() -> None:
    image, mask = brain_image()
    out = normalize_channel(image, ChannelNormalization("zscore"), mask)
    assert abs(out.mean()) < 1e-5 and abs(out.std() - 1.0) < 1e-4
    assert out[~mask][0] < -0.5  # background is far below the mean, not 0


def test_ct_clips_then_uses_the_dataset_statistics() -> None:
    hu = np.array([-1000.0, -20.0, 40.0, 80.0, 3000.0], np.float32).reshape(1, 1, 5)
    spec = ChannelNormalization("ct", clip_low=-20.0, clip_high=80.0, mean=40.0, std=20.0)
    out = normalize_channel(hu, spec)
    np.testing.assert_allclose(out.ravel(), [-3.0, -3.0, 0.0, 2.0, 2.0])


def test_rescale_and_none_and_channel_count() -> None:
    data = np.array([[[[2.0, 4.0, 6.0]]], [[[-1.0, 0.0, 5.0]]]], np.float32)
    specs = (ChannelNormalization("rescale_0_1"), ChannelNormalization("none"))
    out = normalize(data, specs)
    np.testing.assert_allclose(out[0].ravel(), [0.0, 0.5, 1.0])
    np.testing.assert_array_equal(out[1], data[1])
    with pytest.raises(ValueError, match="2 normalisation entries for 1 channels"):
        normalize(data[:1], specs)


def test_n4_flattens_a_smooth_multiplicative_field() -> None:
    image, mask = brain_image()
    image = np.where(mask, 400.0, 0.0).astype(np.float32)
    ramp = np.linspace(0.7, 1.3, image.shape[2], dtype=np.float32)[None, None, :]
    corrected = n4_correct(image * ramp, (1.0, 1.0, 1.0), mask, shrink=2)
    before = (image * ramp)[mask].std() / (image * ramp)[mask].mean()
    after = corrected[mask].std() / corrected[mask].mean()
    assert corrected.shape == image.shape and after < 0.5 * before
