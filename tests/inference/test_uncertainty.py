"""Uncertainty maps and per-lesion confidence (``--save-uncertainty``)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from autoseg.core.atomic import read_json
from autoseg.data.io import read_meta, read_volume
from autoseg.data.records import ImageMeta, matrix_to_tuple
from autoseg.inference.uncertainty import (
    fold_disagreement,
    lesion_report,
    predictive_entropy,
)
from autoseg.pipeline.predict_step import PredictOptions, predict
from tests.pipeline.model_helpers import (
    BACKGROUND,
    DATASET,
    FOREGROUND,
    affine_network,  # noqa: F401  (a fixture)
    make_plans,
    make_workspace,
    single_thread,  # noqa: F401  (a fixture)
    write_results,
)

pytestmark = pytest.mark.usefixtures("single_thread", "affine_network")


def test_entropy_is_zero_when_certain_and_one_when_uniform() -> None:
    probabilities = np.zeros((3, 1, 1, 2), np.float32)
    probabilities[1, 0, 0, 0] = 1.0
    probabilities[:, 0, 0, 1] = 1 / 3
    np.testing.assert_allclose(predictive_entropy(probabilities)[0, 0], [0.0, 1.0], atol=1e-5)
    half = np.full((2, 1, 1, 1), 0.5, np.float32)
    assert predictive_entropy(half).item() == pytest.approx(1.0)
    skewed = np.array([0.9, 0.1], np.float32).reshape(2, 1, 1, 1)
    expected = -(0.9 * math.log(0.9) + 0.1 * math.log(0.1)) / math.log(2)
    assert predictive_entropy(skewed).item() == pytest.approx(expected, rel=1e-5)


def test_disagreement_counts_members_voting_otherwise() -> None:
    lesion = np.array([0.2, 0.8], np.float32).reshape(2, 1, 1, 1)
    background = lesion[::-1].copy()
    labels = np.ones((1, 1, 1), np.uint8)
    assert fold_disagreement([lesion], labels).item() == 0.0
    assert fold_disagreement([lesion, background], labels).item() == 0.5
    assert fold_disagreement([lesion, background, background, background], labels).item() == 0.75


def test_lesion_report_sizes_centroids_and_confidence() -> None:
    affine = np.diag([2.0, 1.0, 3.0, 1.0])  # x 2 mm, y 1 mm, z 3 mm
    affine[:3, 3] = (10.0, -5.0, 7.0)
    meta = ImageMeta((6, 6, 6), (3.0, 1.0, 2.0), matrix_to_tuple(affine))
    labels = np.zeros((6, 6, 6), np.uint8)
    labels[0:2, 0:2, 0:2] = 1  # 8 voxels
    labels[4, 4, 4] = labels[5, 5, 5] = 1  # diagonal neighbours: one 26-connected lesion
    lesion = np.where(labels > 0, 0.75, 0.0).astype(np.float32)
    lesion[0, 0, 0] = 0.95
    probabilities = np.stack([1 - lesion, lesion])
    entropy = np.full(labels.shape, 0.25, np.float32)
    report = lesion_report(labels, probabilities, entropy, np.zeros_like(entropy), meta)
    assert [(r["id"], r["voxels"]) for r in report] == [(1, 8), (2, 2)]
    first, second = report
    assert first["volume_ml"] == pytest.approx(8 * 6.0 / 1000)
    assert first["centroid_voxel_zyx"] == [0.5, 0.5, 0.5]
    assert first["centroid_world_ras"] == [11.0, -4.5, 8.5]  # (x, y, z) = (0.5, 0.5, 0.5)
    assert first["mean_foreground_probability"] == pytest.approx((7 * 0.75 + 0.95) / 8)
    assert first["min_foreground_probability"] == pytest.approx(0.75)
    assert first["mean_entropy"] == pytest.approx(0.25)
    assert second["centroid_voxel_zyx"] == [4.5, 4.5, 4.5]
    assert lesion_report(np.zeros_like(labels), probabilities, entropy, entropy, meta) == []


@pytest.mark.parametrize("second_fold", ["agree", "disagree"])
def test_predict_writes_uncertainty_in_the_input_geometry(tmp_path: Path, second_fold: str):
    workspace = make_workspace(tmp_path / "ws", cases=1, oblique=True)
    other = FOREGROUND if second_fold == "agree" else BACKGROUND
    write_results(workspace, make_plans({"fg": FOREGROUND}), {"fg": [FOREGROUND, other]})
    images = workspace.raw / DATASET / "imagesTr"
    out = tmp_path / "out"
    predict(workspace, DATASET, images, out, PredictOptions(device="cpu", save_uncertainty=True))
    input_meta = read_meta(images / "case000_0000.nii.gz")
    entropy, meta = read_volume(out / "case000_uncertainty.nii.gz")
    disagreement, disagreement_meta = read_volume(out / "case000_disagreement.nii.gz")
    labels, _ = read_volume(out / "case000.nii.gz")
    assert meta == disagreement_meta == input_meta
    assert entropy.dtype == disagreement.dtype == np.float32
    report = read_json(out / "case000_lesions.json")
    assert report["members"] == 2 and report["connectivity"] == 26
    if second_fold == "agree":  # both folds certain of lesion everywhere
        np.testing.assert_allclose(entropy, 0.0, atol=1e-5)
        assert disagreement.max() == 0.0 and labels.min() == 1
        [lesion] = report["lesions"]
        assert lesion["voxels"] == labels.size
        assert lesion["mean_foreground_probability"] == pytest.approx(1.0, abs=1e-5)
    else:  # 50/50 everywhere: maximal entropy, the folds split
        np.testing.assert_allclose(entropy, 1.0, atol=1e-4)
        np.testing.assert_allclose(disagreement, 0.5)
        assert report["lesions"] == [] and labels.max() == 0
