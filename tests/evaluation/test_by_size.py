"""Results by lesion size: per-case Dice bins and per-lesion recall bins."""

from __future__ import annotations

import numpy as np
import pytest

from autoseg.evaluation.by_size import case_table, lesion_table, score_case


def test_small_lesion_missed_large_found_and_bins_count_them() -> None:
    reference = np.zeros((20, 20, 20), np.uint8)
    reference[1:11, 1:11, 1:11] = 1  # 1000 voxels = 8 ml at 2 mm
    reference[15:17, 15:17, 15:17] = 1  # 8 voxels = 0.064 ml
    prediction = np.zeros_like(reference)
    prediction[1:11, 1:11, 1:6] = 1  # half of the large lesion, nothing of the small one
    row, hits = score_case("a", reference, prediction, voxel_ml=0.008, connectivity=26)
    assert row.reference_ml == pytest.approx(8.064) and row.predicted_ml == pytest.approx(4.0)
    assert row.dice == pytest.approx(2 * 500 / (1008 + 500))
    assert sorted((h.volume_ml, h.detected) for h in hits) == [(0.064, False), (8.0, True)]
    recall = {r["bin"]: (r["lesions"], r["recall"]) for r in lesion_table(hits)}
    assert recall == {"< 1.5 ml": (1, 0.0), "1.5-10 ml": (1, 1.0), "> 10 ml": (0, None)}
    empty, _ = score_case("b", np.zeros_like(reference), prediction, 0.008, 26)
    dice = {r["bin"]: (r["cases"], r["mean_dice"]) for r in case_table([row, empty])}
    assert dice["1.5-10 ml"] == (1, pytest.approx(row.dice))  # the empty case is left out
    assert sum(cases for cases, _ in dice.values()) == 1
