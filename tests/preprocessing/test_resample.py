"""Separable resampling: equal to scipy's 3D spline, thick-axis rule, label preservation."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from autoseg.preprocessing.resample import (
    resample_image,
    resample_labels,
    resample_volume,
    source_coordinates,
    target_shape,
    thick_axis,
)


def test_target_shape_rounds_and_never_drops_an_axis() -> None:
    assert target_shape((197, 233, 189), (1.0, 1.0, 1.0), (2.0, 2.0, 2.0)) == (98, 116, 94)
    assert target_shape((3, 10, 10), (1.0, 1.0, 1.0), (10.0, 1.0, 1.0)) == (1, 10, 10)


def test_per_axis_products_equal_a_3d_cubic_spline() -> None:
    rng = np.random.default_rng(0)
    volume = rng.normal(size=(7, 11, 9)).astype(np.float32)
    out_shape = (4, 17, 6)
    coords = np.meshgrid(
        *[source_coordinates(n, m) for n, m in zip(volume.shape, out_shape, strict=True)],
        indexing="ij",
    )
    reference = ndimage.map_coordinates(volume.astype(np.float64), coords, order=3, mode="reflect")
    result = resample_volume(volume, out_shape, (3, 3, 3))
    np.testing.assert_allclose(result, reference, atol=1e-5)


def test_same_shape_is_left_untouched() -> None:
    volume = np.random.default_rng(1).normal(size=(5, 6, 7)).astype(np.float32)
    np.testing.assert_array_equal(resample_volume(volume, (5, 6, 7), (3, 3, 3)), volume)


def test_thick_axis_rule_source_first_then_target() -> None:
    assert thick_axis((5.0, 0.9, 0.9), (5.0, 0.9, 0.9)) == 0
    assert thick_axis((1.0, 1.0, 1.0), (1.0, 1.0, 4.0)) == 2
    assert thick_axis((1.0, 1.0, 2.0), (1.0, 1.0, 2.0)) is None
    assert thick_axis((4.0, 4.0, 1.0), (4.0, 4.0, 1.0)) is None  # two thick axes: no rule


def test_thick_axis_slices_are_never_blended() -> None:
    # Each slice has its own constant value; upsampling the thick axis must only repeat them.
    data = np.broadcast_to(np.array([0.0, 10.0, 20.0, 30.0])[:, None, None], (4, 6, 6))
    out = resample_image(data[None].astype(np.float32), (8, 9, 9), thick=0)[0]
    assert set(np.unique(np.round(out, 3))) == {0.0, 10.0, 20.0, 30.0}
    np.testing.assert_allclose(out[:, 0, 0], [0, 0, 10, 10, 20, 20, 30, 30], atol=1e-4)
    blended = resample_image(data[None].astype(np.float32), (8, 9, 9), thick=None)[0]
    assert len(np.unique(np.round(blended[:, 0, 0], 3))) == 8


def test_labels_keep_thin_structures_and_values() -> None:
    labels = np.zeros((20, 20, 20), np.uint8)
    labels[:, 8:10, 8:10] = 1  # a 2-voxel-thick tube, one output voxel wide after halving
    labels[2:6, 2:6, 2:6] = 3
    out = resample_labels(labels, (10, 10, 10))
    assert out.dtype == np.int8 and set(np.unique(out)) == {0, 1, 3}
    assert out[:, 4:6, 4:6].any(axis=(1, 2)).all()  # the tube survives in every slice
    assert abs(int((out == 3).sum()) - 8) <= 4


def test_multiclass_labels_use_the_running_argmax() -> None:
    labels = np.zeros((8, 8, 8), np.int8)
    labels[:4] = 1
    labels[4:, :4] = 2
    out = resample_labels(labels, (16, 16, 16))
    np.testing.assert_array_equal(out[::2, ::2, ::2], labels)
