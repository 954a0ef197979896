"""evaluate_folders: pairing, checks before work, summary.json and per-case CSV."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from autoseg.core.errors import InvalidInputError
from autoseg.data.io import write_volume
from autoseg.data.layout import DatasetJson, write_dataset_json
from autoseg.data.records import ImageMeta, matrix_to_tuple
from autoseg.evaluation.folders import evaluate_folders
from autoseg.evaluation.metrics import METRIC_KEYS
from tests.conftest import tiny_meta

SPACING = (3.0, 1.5, 1.25)  # tiny_meta's default: one voxel is 5.625 mm^3


def _write_pairs(root: Path, meta: ImageMeta) -> tuple[Path, Path]:
    """Cases: 'a' perfect, 'b' both empty, 'c' half the lesion missed plus one FP voxel."""
    reference_dir, prediction_dir = root / "labelsTs", root / "preds"
    lesion = np.zeros(meta.shape, np.uint8)
    lesion[2:4, 3:7, 2:6] = 1  # 32 voxels
    half = lesion.copy()
    half[3] = 0  # 16 voxels
    half[7, 11, 9] = 1  # a false-positive lesion
    empty = np.zeros(meta.shape, np.uint8)
    for case_id, reference, prediction in (
        ("a", lesion, lesion),
        ("b", empty, empty),
        ("c", lesion, half),
    ):
        write_volume(reference_dir / f"{case_id}.nii.gz", reference, meta)
        write_volume(prediction_dir / f"{case_id}.nii.gz", prediction, meta)
    return reference_dir, prediction_dir


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    return _write_pairs(tmp_path, tiny_meta())


def test_summary_and_csv(folders: tuple[Path, Path], tmp_path: Path) -> None:
    output = tmp_path / "out" / "metrics.json"
    summary = evaluate_folders(*folders, output, num_processes=1, progress=False)
    assert json.loads(output.read_text()) == summary
    assert summary["labels"] == [1]
    assert summary["num_cases"] == 3
    dice_c = 2 * 16 / (32 + 17)
    assert summary["mean"]["dice"] == pytest.approx((1 + 1 + dice_c) / 3)
    assert summary["median"]["dice"] == 1.0
    assert summary["std"]["dice"] == pytest.approx(np.std([1, 1, dice_c]))
    assert summary["mean_nonempty_reference"]["dice"] == pytest.approx((1 + dice_c) / 2)
    assert summary["per_label"]["1"]["num_nonempty_reference"] == 2
    assert summary["mean"]["lesion_f1"] == pytest.approx((1 + 1 + 1 / 1.5) / 3)
    assert summary["mean"]["abs_volume_diff_ml"] == pytest.approx(15 * 5.625 / 1000 / 3)
    assert set(summary["mean"]) == set(METRIC_KEYS)
    case_c = summary["cases"][2]
    assert case_c["case_id"] == "c" and case_c["reference_voxels"] == {"1": 32}
    with (tmp_path / "out" / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [row["case_id"] for row in rows] == ["a", "b", "c"]
    assert float(rows[2]["dice"]) == pytest.approx(dice_c)


def test_processes_give_the_same_summary(folders: tuple[Path, Path], tmp_path: Path) -> None:
    one = evaluate_folders(*folders, tmp_path / "one.json", num_processes=1, progress=False)
    two = evaluate_folders(*folders, tmp_path / "two.json", num_processes=2, progress=False)
    assert one == two


def test_atlas_convention_is_recorded(folders: tuple[Path, Path], tmp_path: Path) -> None:
    summary = evaluate_folders(
        *folders, tmp_path / "m.json", convention="atlas", num_processes=1, progress=False
    )
    assert (summary["convention"], summary["connectivity_3d"]) == ("atlas", 6)


def test_missing_prediction_names_the_case(folders: tuple[Path, Path], tmp_path: Path) -> None:
    reference_dir, prediction_dir = folders
    (prediction_dir / "c.nii.gz").unlink()
    (prediction_dir / "a.nii.gz").unlink()
    with pytest.raises(InvalidInputError) as caught:
        evaluate_folders(reference_dir, prediction_dir, tmp_path / "m.json", progress=False)
    assert len(caught.value.problems) == 2
    assert "'a'" in caught.value.problems[0] and "a.nii.gz" in caught.value.problems[0]
    assert not (tmp_path / "m.json").exists()


def test_geometry_mismatches_are_listed(folders: tuple[Path, Path], tmp_path: Path) -> None:
    reference_dir, prediction_dir = folders
    write_volume(prediction_dir / "a.nii.gz", np.zeros((8, 12, 9), np.uint8), tiny_meta((8, 12, 9)))
    shifted = np.diag([1.25, 1.5, 3.0, 1.0])
    shifted[:3, 3] = 5.0
    meta = ImageMeta((8, 12, 10), SPACING, matrix_to_tuple(shifted))
    write_volume(prediction_dir / "b.nii.gz", np.zeros(meta.shape, np.uint8), meta)
    with pytest.raises(InvalidInputError) as caught:
        evaluate_folders(reference_dir, prediction_dir, tmp_path / "m.json", progress=False)
    shape_problem, affine_problem = caught.value.problems
    assert "a.nii.gz" in shape_problem and "shape" in shape_problem
    assert "b.nii.gz" in affine_problem and "affine" in affine_problem


def test_mixed_file_types_pair_by_case_id(folders: tuple[Path, Path], tmp_path: Path) -> None:
    reference_dir, prediction_dir = folders
    lesion = np.zeros(tiny_meta().shape, np.uint8)
    lesion[2:4, 3:7, 2:6] = 1
    (prediction_dir / "a.nii.gz").unlink()
    write_volume(prediction_dir / "a.mha", lesion, tiny_meta())
    summary = evaluate_folders(reference_dir, prediction_dir, tmp_path / "m.json", progress=False)
    assert summary["cases"][0]["metrics"]["1"]["dice"] == 1.0


def test_labels_from_dataset_json_and_overwrite(folders: tuple[Path, Path], tmp_path: Path) -> None:
    reference_dir, prediction_dir = folders
    labels = {"background": 0, "lesion": 1, "edema": 2}
    write_dataset_json(tmp_path, DatasetJson("T", {"0": "DWI"}, labels, 3))
    output = tmp_path / "m.json"
    summary = evaluate_folders(reference_dir, prediction_dir, output, progress=False)
    assert summary["labels"] == [1, 2]
    assert summary["per_label"]["2"]["mean"]["dice"] == 1.0  # absent everywhere: both empty
    assert summary["per_label"]["2"]["mean_nonempty_reference"] is None
    with pytest.raises(InvalidInputError, match="exists"):
        evaluate_folders(reference_dir, prediction_dir, output, progress=False)


def test_nan_distances_become_null(tmp_path: Path) -> None:
    meta = tiny_meta()
    reference = np.zeros(meta.shape, np.uint8)
    reference[1, 1, 1] = 1
    write_volume(tmp_path / "r" / "x.nii.gz", reference, meta)
    write_volume(tmp_path / "p" / "x.nii.gz", np.zeros(meta.shape, np.uint8), meta)
    summary = evaluate_folders(tmp_path / "r", tmp_path / "p", tmp_path / "m.json", progress=False)
    assert summary["mean"]["hd95_mm"] is None
    assert summary["n_finite"]["hd95_mm"] == 0
    assert summary["cases"][0]["metrics"]["1"]["hd95_mm"] is None
    assert "NaN" not in (tmp_path / "m.json").read_text()
