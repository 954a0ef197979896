"""Gap 8: quieter traps: no-signal images, flipped axes, empty-vs-empty scores, Ctrl-C,
datasets too small for cross-validation."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from autoseg import cli
from autoseg.cli import EXIT_INVALID
from autoseg.core.workspace import Workspace
from autoseg.data.io import write_label, write_volume
from autoseg.data.records import ImageMeta, matrix_to_tuple
from autoseg.pipeline import fit_fold, fold_data
from autoseg.planning import planner
from autoseg.plans import write_plans
from tests.conftest import tiny_meta, write_tiny_dataset
from tests.reliability.helpers import error_lines, run_cli
from tests.reliability.test_plans_refused import _plans


def _verify(home: Path, capsys) -> tuple[int, list[str]]:
    argv = ["-d", "Tiny", "--home", str(home), "--no-progress", "-np", "1"]
    code, err = run_cli(cli.verify_main, argv, capsys)
    return code, error_lines(err)


@pytest.mark.parametrize("value", [0.0, 7.0])
def test_constant_image_has_no_signal(tmp_path: Path, value: float, capsys) -> None:
    root = write_tiny_dataset(tmp_path / "raw" / "Tiny", cases=2)
    image = root / "imagesTr" / "case001_0000.nii.gz"
    write_volume(image, np.full(tiny_meta().shape, value, np.float32), tiny_meta())
    assert _verify(tmp_path, capsys) == (
        EXIT_INVALID,
        [f"error: {image}: no signal: every voxel is {value:g} (an empty scan or a failed "
         "export?)"],
    )  # fmt: skip


def _flipped_x(meta: ImageMeta) -> ImageMeta:
    """The same grid mirrored left-right: x runs to the left, the origin at the far end."""
    affine = meta.affine_array.copy()
    affine[:3, 3] += affine[:3, 0] * (meta.shape[2] - 1)
    affine[:3, 0] *= -1
    return ImageMeta(meta.shape, meta.spacing_mm, matrix_to_tuple(affine), qform_code=1,
                     sform_code=1)  # fmt: skip


def test_flipped_axis_names_the_orientations(tmp_path: Path, capsys) -> None:
    root = write_tiny_dataset(tmp_path / "raw" / "Tiny", cases=2)
    label = root / "labelsTr" / "case001.nii.gz"
    mask = np.zeros(tiny_meta().shape, np.uint8)
    mask[2:4, 2:4, 2:4] = 1
    write_label(label, mask, _flipped_x(tiny_meta()))
    assert _verify(tmp_path, capsys) == (
        EXIT_INVALID,
        [f"error: {label}: not on the grid of case001_0000.nii.gz: orientation differs "
         "(LAS vs RAS)"],
    )  # fmt: skip


def test_empty_versus_empty_without_dataset_json_scores_dice_one(tmp_path: Path, capsys) -> None:
    for folder in ("reference", "prediction"):
        for case in ("a", "b"):
            write_label(tmp_path / folder / f"{case}.nii.gz", np.zeros((4, 5, 6), np.uint8),
                        tiny_meta((4, 5, 6)))  # fmt: skip
    output = tmp_path / "summary.json"
    argv = ["-r", str(tmp_path / "reference"), "-p", str(tmp_path / "prediction"), "-o",
            str(output), "-np", "1"]  # fmt: skip
    assert run_cli(cli.evaluate_main, argv, capsys)[0] == 0
    summary = json.loads(output.read_text())
    assert summary["labels"] == [1]
    assert summary["mean"]["dice"] == 1.0
    assert [case["metrics"]["1"]["dice"] for case in summary["cases"]] == [1.0, 1.0]


def test_ctrl_c_in_training_prints_the_continue_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    def interrupted(*_: object, **__: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(fit_fold, "train_fold", interrupted)
    argv = ["Tiny", "3d_hybrid", "0", "--home", str(tmp_path), "--overwrite", "--device", "cpu"]
    code, err = run_cli(cli.train_main, argv, capsys)
    assert code == 130
    assert err.strip().splitlines()[-1] == (
        f"interrupted; resume with: autoseg_train Tiny 3d_hybrid 0 --home {tmp_path} "
        "--device cpu --continue"
    )


def _one_case_cache(home: Path) -> Path:
    """preprocessed/Tiny with plans and one cached case (what plan leaves for one case)."""
    plans = _plans()
    folder = home / "preprocessed" / "Tiny"
    write_plans(folder / "plans.json", plans)
    cache = folder / plans.configurations["3d_hybrid"]["data_id"]
    cache.mkdir()
    (cache / "case000.npz").write_bytes(b"")
    return folder


def test_numbered_fold_of_a_one_case_dataset_suggests_all(tmp_path: Path, capsys) -> None:
    folder = _one_case_cache(tmp_path)
    argv = ["Tiny", "3d_hybrid", "0", "--home", str(tmp_path), "--device", "cpu"]
    code, err = run_cli(cli.train_main, argv, capsys)
    assert (code, error_lines(err)) == (EXIT_INVALID, [
        f"error: {folder / 'splits.json'}: 1 training case(s) cannot make cross-validation "
        "folds (need >= 2); train on every case instead: autoseg_train Tiny 3d_hybrid all"
    ])  # fmt: skip


def test_fold_all_of_a_one_case_dataset_needs_no_splits(tmp_path: Path) -> None:
    folder = _one_case_cache(tmp_path)
    workspace = Workspace.under(tmp_path)
    data = fold_data.load_fold(workspace, "Tiny", "3d_hybrid", "all")
    assert (data.train_ids, data.val_ids) == (["case000"], [])
    assert not (folder / "splits.json").exists()


def test_fold_beyond_the_splits_lists_the_folds(tmp_path: Path, capsys) -> None:
    folder = _one_case_cache(tmp_path)
    (folder / _plans().configurations["3d_hybrid"]["data_id"] / "case001.npz").write_bytes(b"")
    argv = ["Tiny", "3d_hybrid", "4", "--home", str(tmp_path), "--device", "cpu"]
    code, err = run_cli(cli.train_main, argv, capsys)
    assert (code, error_lines(err)) == (EXIT_INVALID, [
        "error: fold 4 does not exist (splits have 2 folds: 0..1, or 'all' to train on every "
        "case)"
    ])  # fmt: skip
    assert len(json.loads((folder / "splits.json").read_text())) == 2


def test_planning_a_one_case_dataset_says_why_there_are_no_splits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog, capsys
) -> None:
    write_tiny_dataset(tmp_path / "raw" / "Tiny", cases=1)
    monkeypatch.setattr(planner, "plan_from_fingerprint", lambda *_: _plans())
    argv = ["-d", "Tiny", "--home", str(tmp_path), "--no-progress", "-np", "1", "--plan-only"]
    with caplog.at_level(logging.WARNING):
        assert run_cli(cli.plan_main, argv, capsys)[0] == 0
    splits = tmp_path / "preprocessed" / "Tiny" / "splits.json"
    assert not splits.exists()
    assert (
        f"1 training case: too few for cross-validation, so no {splits}; train on every case "
        "with fold 'all' (autoseg_train Tiny CONFIG all)"
    ) in caplog.text
