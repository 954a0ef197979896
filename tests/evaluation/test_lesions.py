"""Lesion-wise detection under the ISLES'22 and ATLAS conventions."""

from __future__ import annotations

import numpy as np
import pytest

from autoseg.core.errors import InvalidInputError
from autoseg.evaluation.lesions import LesionCounts, count_lesions, get_convention
from autoseg.evaluation.metrics import evaluate_case


def _diagonal_3d() -> np.ndarray:
    mask = np.zeros((3, 3, 3), bool)
    mask[0, 0, 0] = mask[1, 1, 1] = True
    return mask


def test_diagonal_voxels_are_one_lesion_under_26_and_two_under_6() -> None:
    mask = _diagonal_3d()
    assert count_lesions(mask, mask, 26).reference_lesions == 1
    assert count_lesions(mask, mask, 6).reference_lesions == 2


def test_conventions_pick_connectivity_by_dimension() -> None:
    assert get_convention("isles22").connectivity(3) == 26
    assert get_convention("isles22").connectivity(2) == 8
    assert get_convention("atlas").connectivity(3) == 6
    assert get_convention("atlas").connectivity(2) == 4
    with pytest.raises(InvalidInputError, match="isles22"):
        get_convention("brats")


def test_diagonal_pixels_in_2d() -> None:
    mask = np.zeros((3, 3), bool)
    mask[0, 0] = mask[1, 1] = True
    assert evaluate_case(mask, mask, (1.0, 1.0), "isles22")["lesion_f1"] == 1.0
    assert count_lesions(mask, mask, 8).reference_lesions == 1
    assert count_lesions(mask, mask, 4).reference_lesions == 2


def test_convention_changes_lesion_f1() -> None:
    reference = _diagonal_3d()
    prediction = np.zeros_like(reference)
    prediction[0, 0, 0] = True
    isles = evaluate_case(reference, prediction, (1.0, 1.0, 1.0), "isles22")
    atlas = evaluate_case(reference, prediction, (1.0, 1.0, 1.0), "atlas")
    assert isles["lesion_f1"] == 1.0
    assert isles["abs_lesion_count_diff"] == 0.0
    assert atlas["lesion_f1"] == pytest.approx(1 / (1 + 0.5))  # TP 1, FN 1
    assert atlas["abs_lesion_count_diff"] == 1.0
    # Voxel metrics do not depend on the convention.
    assert isles["dice"] == atlas["dice"] == pytest.approx(2 / 3)


def test_f1_arithmetic_with_hits_misses_and_false_positives() -> None:
    reference = np.zeros((1, 20), bool)
    reference[0, [0, 1, 5, 6, 10]] = True  # lesions {0,1}, {5,6}, {10}
    prediction = np.zeros((1, 20), bool)
    prediction[0, [1, 6, 7, 14, 18]] = True  # hits two lesions, FPs at 14 and 18
    counts = count_lesions(reference, prediction, 8)
    assert counts == LesionCounts(2, 2, 1, 3, 4)
    assert counts.f1 == pytest.approx(2 / (2 + (2 + 1) / 2))
    assert counts.abs_count_difference == 1


def test_one_prediction_bridging_two_lesions_detects_both() -> None:
    reference = np.zeros((1, 10), bool)
    reference[0, [2, 6]] = True
    prediction = np.zeros((1, 10), bool)
    prediction[0, 2:7] = True
    counts = count_lesions(reference, prediction, 8)
    assert counts == LesionCounts(2, 0, 0, 2, 1)
    assert counts.f1 == 1.0
    assert counts.abs_count_difference == 1


def test_empty_lesion_conventions() -> None:
    empty, blob = np.zeros((4, 4, 4), bool), np.zeros((4, 4, 4), bool)
    blob[1:3, 1:3, 1:3] = True
    assert count_lesions(empty, empty, 26).f1 == 1.0
    assert count_lesions(empty, blob, 26) == LesionCounts(0, 1, 0, 0, 1)
    assert count_lesions(empty, blob, 26).f1 == 0.0
    assert count_lesions(blob, empty, 26).f1 == 0.0
