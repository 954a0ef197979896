"""Postprocessing: probability threshold and removal of small components."""

from __future__ import annotations

import numpy as np
import pytest

from autoseg.inference.postprocess import postprocess, threshold_labels


def test_small_components_are_removed_with_26_connectivity() -> None:
    labels = np.zeros((6, 6, 6), np.uint8)
    labels[0, 0, 0] = labels[1, 1, 1] = 1  # two voxels touching at a corner: one component
    labels[4:6, 4:6, 4:6] = 1  # 8 voxels
    labels[0, 5, 5] = 1  # a lone voxel
    result = postprocess(labels, {"min_component_voxels": 2})
    expected = labels.copy()
    expected[0, 5, 5] = 0
    np.testing.assert_array_equal(result, expected)
    assert postprocess(labels, {"min_component_voxels": 9}).sum() == 0


def test_components_are_judged_per_class() -> None:
    labels = np.zeros((3, 3, 6), np.uint8)
    labels[1, 1, 0:3] = 1
    labels[1, 1, 3] = 2  # touches class 1 but is its own single-voxel component
    result = postprocess(labels, {"min_component_voxels": 2})
    assert result[1, 1, 3] == 0 and result[1, 1, 0:3].tolist() == [1, 1, 1]


def test_threshold_uses_the_foreground_probability() -> None:
    lesion = np.array([0.1, 0.3, 0.5, 0.9], np.float32).reshape(1, 1, 4)
    probabilities = np.stack([1 - lesion, lesion])
    labels = np.argmax(probabilities, 0).astype(np.uint8)
    result = postprocess(labels, {"threshold": 0.25}, probabilities)
    assert result.ravel().tolist() == [0, 1, 1, 1]
    assert postprocess(labels, {}).ravel().tolist() == [0, 0, 0, 1]


def test_threshold_with_several_classes_picks_the_likeliest_foreground() -> None:
    probabilities = np.array([[0.6, 0.9], [0.15, 0.05], [0.25, 0.05]], np.float32)[..., None]
    assert threshold_labels(probabilities, 0.3).ravel().tolist() == [2, 0]


def test_bad_specs_fail_with_the_known_keys() -> None:
    with pytest.raises(ValueError, match="min_component_voxels"):
        postprocess(np.zeros((2, 2, 2), np.uint8), {"min_size": 3})
    with pytest.raises(ValueError, match="needs the probabilities"):
        postprocess(np.zeros((2, 2, 2), np.uint8), {"threshold": 0.5})


def test_components_without_a_confident_voxel_are_removed_whatever_their_size() -> None:
    lesion = np.zeros((1, 4, 8), np.float32)
    lesion[0, 0, 0] = 0.97  # a one-voxel lesion the network is sure of
    lesion[0, 2:4, 2:8] = 0.6  # twelve voxels it only leans towards
    lesion[0, 0, 4] = 0.91  # a lone voxel just above the cut
    probabilities = np.stack([1 - lesion, lesion])
    labels = np.argmax(probabilities, 0).astype(np.uint8)
    result = postprocess(labels, {"min_component_peak": 0.9}, probabilities)
    assert np.argwhere(result).tolist() == [[0, 0, 0], [0, 0, 4]]
    both = postprocess(labels, {"min_component_peak": 0.9, "min_component_voxels": 2},
                       probabilities)  # fmt: skip
    assert both.sum() == 0  # the peak cut first, then the size cut
    with pytest.raises(ValueError, match="min_component_peak"):
        postprocess(labels, {"min_component_peak": 1.5}, probabilities)
    with pytest.raises(ValueError, match="needs the probabilities"):
        postprocess(labels, {"min_component_peak": 0.9})


def test_the_lesion_volume_rule_counts_millilitres_at_the_labels_own_spacing() -> None:
    """The same 0.03 ml limit keeps a 4-voxel lesion at 2 mm (0.032 ml) and drops it at
    1 mm (0.004 ml), where a 32-voxel lesion is kept; the larger of two size rules wins."""
    labels = np.zeros((8, 8, 8), np.uint8)
    labels[0, 0, 0:4] = 1  # 4 voxels
    labels[4:6, 4:8, 4:8] = 1  # 32 voxels
    spec = {"min_lesion_ml": 0.03}
    kept_2mm = postprocess(labels, spec, spacing_mm=(2.0, 2.0, 2.0))
    np.testing.assert_array_equal(kept_2mm, labels)
    kept_1mm = postprocess(labels, spec, spacing_mm=(1.0, 1.0, 1.0))
    assert kept_1mm[0].sum() == 0 and kept_1mm.sum() == 32
    both = {**spec, "min_component_voxels": 5}
    assert postprocess(labels, both, spacing_mm=(2.0, 2.0, 2.0)).sum() == 32
    assert postprocess(labels, {"min_lesion_ml": 0.032}, spacing_mm=(2.0, 2.0, 2.0)).sum() == 36
    with pytest.raises(ValueError, match="voxel size"):
        postprocess(labels, spec)
    with pytest.raises(ValueError, match="min_lesion_ml must be >= 0"):
        postprocess(labels, {"min_lesion_ml": -0.1}, spacing_mm=(1.0,) * 3)
