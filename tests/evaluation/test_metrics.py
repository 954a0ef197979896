"""Per-case metrics: hand-computed overlap and volume values, empty masks, multi-class."""

from __future__ import annotations

import math

import numpy as np
import pytest

from autoseg.core.errors import InvalidInputError
from autoseg.evaluation.metrics import (
    METRIC_KEYS,
    both_empty_metrics,
    evaluate_case,
    evaluate_labels,
)


def _pair_2d() -> tuple[np.ndarray, np.ndarray]:
    reference, prediction = np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.uint8)
    reference[0, 0:4] = 1  # 4 voxels
    prediction[0, 2:4] = prediction[3, 3] = 1  # 3 voxels, 2 overlapping
    return reference, prediction


def test_overlap_metrics_2d_by_hand() -> None:
    metrics = evaluate_case(*_pair_2d(), spacing_mm=(1.0, 1.0))
    assert tuple(metrics) == METRIC_KEYS
    # TP 2, FP 1, FN 2, TN 11
    assert metrics["dice"] == pytest.approx(4 / 7)
    assert metrics["iou"] == pytest.approx(2 / 5)
    assert metrics["precision"] == pytest.approx(2 / 3)
    assert metrics["sensitivity"] == pytest.approx(1 / 2)
    assert metrics["specificity"] == pytest.approx(11 / 12)
    assert metrics["abs_volume_diff_voxels"] == 1.0
    assert metrics["lesion_f1"] == pytest.approx(1 / (1 + 1 / 2))  # TP 1, FP 1 ({3,3})
    assert metrics["abs_lesion_count_diff"] == 1.0


def test_volume_and_distance_in_3d_with_anisotropic_spacing() -> None:
    reference, prediction = np.zeros((4, 5, 6), bool), np.zeros((4, 5, 6), bool)
    reference[1, 1, 1:4] = True  # 3 voxels
    prediction[1, 1, 1:4] = True
    prediction[2, 1, 1:6] = True  # 8 voxels
    metrics = evaluate_case(reference, prediction, (3.0, 2.0, 2.0))
    assert metrics["abs_volume_diff_voxels"] == 5.0
    assert metrics["abs_volume_diff_ml"] == pytest.approx(5 * 12.0 / 1000)
    assert metrics["dice"] == pytest.approx(6 / 11)
    # Predicted voxels (2, 1, 4) and (2, 1, 5) are 3 mm down and 2 / 4 mm along x from (1, 1, 3).
    far = math.hypot(3.0, 4.0)
    prediction_side = np.sort([0, 0, 0, 3, 3, 3, math.hypot(3, 2), far])
    assert metrics["hd95_mm"] == pytest.approx(np.percentile(prediction_side, 95))
    assert metrics["assd_mm"] == pytest.approx(prediction_side.sum() / 11)
    assert metrics["lesion_f1"] == 1.0


def test_both_empty_is_perfect() -> None:
    empty = np.zeros((3, 4, 5), np.uint8)
    metrics = evaluate_case(empty, empty, (1.0, 1.0, 1.0))
    assert metrics == both_empty_metrics()
    assert metrics["dice"] == metrics["lesion_f1"] == 1.0
    assert metrics["hd95_mm"] == metrics["assd_mm"] == 0.0


def test_empty_prediction_with_a_lesion() -> None:
    reference = np.zeros((3, 4, 5), np.uint8)
    reference[1, 1, 1] = 1
    metrics = evaluate_case(reference, np.zeros_like(reference), (1.0, 1.0, 1.0))
    assert metrics["dice"] == metrics["iou"] == 0.0
    assert metrics["precision"] == metrics["sensitivity"] == 0.0
    assert metrics["specificity"] == 1.0
    assert math.isnan(metrics["hd95_mm"]) and math.isnan(metrics["assd_mm"])
    assert metrics["lesion_f1"] == 0.0
    assert metrics["abs_lesion_count_diff"] == 1.0


def test_false_positive_on_empty_reference() -> None:
    prediction = np.zeros((3, 4, 5), np.uint8)
    prediction[0, 0, 0:2] = 1
    metrics = evaluate_case(np.zeros_like(prediction), prediction, (1.0, 1.0, 1.0))
    assert metrics["dice"] == metrics["sensitivity"] == metrics["precision"] == 0.0
    assert metrics["specificity"] == pytest.approx(58 / 60)
    assert metrics["abs_volume_diff_voxels"] == 2.0


def test_full_reference_has_specificity_one() -> None:
    full = np.ones((2, 2, 2), np.uint8)
    assert evaluate_case(full, full, (1.0, 1.0, 1.0))["specificity"] == 1.0


def test_multi_class_scores_each_label_as_binary() -> None:
    reference = np.zeros((2, 4, 4), np.uint8)
    prediction = np.zeros((2, 4, 4), np.uint8)
    reference[0, 0, 0:2] = 1
    reference[1, 2:4, 2:4] = 2
    prediction[0, 0, 0:2] = 1
    prediction[1, 2, 2:4] = 2
    per_label = evaluate_labels(reference, prediction, (1.0, 1.0, 1.0))
    assert list(per_label) == [1, 2]
    assert per_label[1]["dice"] == 1.0
    assert per_label[2]["dice"] == pytest.approx(2 * 2 / (4 + 2))
    chosen = evaluate_labels(reference, prediction, (1.0, 1.0, 1.0), labels=[3, 1])
    assert list(chosen) == [1, 3]
    assert chosen[3] == both_empty_metrics()


def test_binary_is_label_one() -> None:
    reference, prediction = _pair_2d()
    assert evaluate_labels(reference, prediction, (1.0, 1.0))[1] == evaluate_case(
        reference, prediction, (1.0, 1.0)
    )


def test_bad_input_is_rejected() -> None:
    with pytest.raises(InvalidInputError, match="shape"):
        evaluate_case(np.zeros((2, 3)), np.zeros((3, 2)), (1.0, 1.0))
    with pytest.raises(InvalidInputError, match="spacing"):
        evaluate_case(np.zeros((2, 3, 4)), np.zeros((2, 3, 4)), (1.0, 1.0))


def test_float_label_maps_are_rounded() -> None:
    reference = np.zeros((2, 3, 3), np.float32)
    reference[0, 0, 0:2] = 0.9999
    per_label = evaluate_labels(reference, (reference > 0).astype(np.uint8), (1.0, 1.0, 1.0))
    assert list(per_label) == [1]
    assert per_label[1]["dice"] == 1.0
