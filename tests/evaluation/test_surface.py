"""HD95 and ASSD: surface definition, hand-computed distances, empty conventions."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from scipy import ndimage

from autoseg.evaluation.surface import boundary, directed_distances, hd95_and_assd, union_crop


def test_boundary_uses_face_connectivity_erosion() -> None:
    plus = np.zeros((5, 5), bool)
    plus[2, 1:4] = plus[1:4, 2] = True
    # The centre has all four face neighbours inside, so it is interior (a full 3x3
    # structuring element would have put it on the boundary).
    assert boundary(plus).sum() == 4
    assert not boundary(plus)[2, 2]
    cube = np.zeros((5, 5, 5), bool)
    cube[1:4, 1:4, 1:4] = True
    assert boundary(cube).sum() == 26


def test_boundary_counts_image_edge_as_background() -> None:
    assert boundary(np.ones((3, 3), bool)).sum() == 8


def test_single_voxels_in_2d_with_anisotropic_spacing() -> None:
    reference, prediction = np.zeros((4, 6), bool), np.zeros((4, 6), bool)
    reference[0, 0] = prediction[0, 3] = True
    assert hd95_and_assd(reference, prediction, (2.0, 0.5)) == (1.5, 1.5)


def test_single_voxels_in_3d_with_anisotropic_spacing() -> None:
    reference, prediction = np.zeros((3, 3, 3), bool), np.zeros((3, 3, 3), bool)
    reference[0, 0, 0] = prediction[1, 1, 0] = True
    hd95, assd = hd95_and_assd(reference, prediction, (3.0, 2.0, 1.0))
    assert hd95 == pytest.approx(math.sqrt(13.0))
    assert assd == pytest.approx(math.sqrt(13.0))


def test_hd95_is_max_of_directed_percentiles_and_assd_pools_both_directions() -> None:
    reference, prediction = np.zeros((1, 12), bool), np.zeros((1, 12), bool)
    reference[0, 0] = True
    prediction[0, 0] = prediction[0, 10] = True
    hd95, assd = hd95_and_assd(reference, prediction, (1.0, 1.0))
    # prediction -> reference: [0, 10] (95th percentile 9.5); reference -> prediction: [0].
    assert hd95 == pytest.approx(9.5)
    # pooled mean of [0, 10, 0], not the mean of the two directed means (2.5)
    assert assd == pytest.approx(10.0 / 3.0)


def test_concentric_cubes() -> None:
    reference, prediction = np.zeros((9, 9, 9), bool), np.zeros((9, 9, 9), bool)
    reference[3:6, 3:6, 3:6] = True
    prediction[2:7, 2:7, 2:7] = True
    hd95, assd = hd95_and_assd(reference, prediction, (1.0, 1.0, 1.0))
    # Outer shell: 54 face voxels at 1, 36 edge voxels at sqrt 2, 8 corners at sqrt 3;
    # each of the 26 inner boundary voxels is 1 from the outer shell.
    assert hd95 == pytest.approx(math.sqrt(3.0))
    expected = (26 + 54 + 36 * math.sqrt(2) + 8 * math.sqrt(3)) / (26 + 98)
    assert assd == pytest.approx(expected)
    doubled = hd95_and_assd(reference, prediction, (2.0, 2.0, 2.0))
    assert doubled == pytest.approx((2 * hd95, 2 * assd))


def test_empty_conventions() -> None:
    empty, blob = np.zeros((4, 4, 4), bool), np.zeros((4, 4, 4), bool)
    blob[1, 1, 1] = True
    assert hd95_and_assd(empty, empty, (1.0, 1.0, 1.0)) == (0.0, 0.0)
    for pair in ((empty, blob), (blob, empty)):
        assert all(math.isnan(v) for v in hd95_and_assd(*pair, (1.0, 1.0, 1.0)))


def test_distances_equal_dense_distance_transform() -> None:
    rng = np.random.default_rng(3)
    source = boundary(ndimage.gaussian_filter(rng.random((12, 14, 10)), 1.5) > 0.52)
    target = boundary(ndimage.gaussian_filter(rng.random((12, 14, 10)), 1.5) > 0.52)
    spacing = (3.0, 0.9, 1.1)
    dense = ndimage.distance_transform_edt(~target, sampling=spacing)[source]
    np.testing.assert_allclose(directed_distances(source, target, spacing), dense)


def test_union_crop_keeps_margin_and_clips_at_edges() -> None:
    reference, prediction = np.zeros((10, 10), bool), np.zeros((10, 10), bool)
    reference[0, 4] = prediction[3, 6] = True
    cropped_reference, cropped_prediction = union_crop(reference, prediction)
    assert cropped_reference.shape == (5, 5)
    assert cropped_reference.sum() == cropped_prediction.sum() == 1


def test_atlas_sized_volume_is_fast() -> None:
    reference = np.zeros((197, 233, 189), bool)
    reference[60:100, 80:130, 70:110] = True
    prediction = np.roll(reference, 3, axis=2)
    start = time.perf_counter()
    hd95, _ = hd95_and_assd(reference, prediction, (1.0, 1.0, 1.0))
    assert time.perf_counter() - start < 1.0
    assert hd95 == pytest.approx(3.0)
