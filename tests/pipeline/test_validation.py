"""validate_fold: the fold's validation cases predicted with probabilities and scored."""

from __future__ import annotations

from pathlib import Path

import pytest

from autoseg.core.atomic import read_json
from autoseg.data.io import read_volume
from autoseg.pipeline import validation
from autoseg.pipeline.validation import open_raw, resubstitution_ids, validate_fold
from tests.pipeline.model_helpers import (
    DATASET,
    FOREGROUND,
    affine_network,  # noqa: F401  (a fixture)
    make_plans,
    make_workspace,
    single_thread,  # noqa: F401  (a fixture)
    write_fold,
    write_results,
)

pytestmark = pytest.mark.usefixtures("single_thread", "affine_network")


def test_validate_fold_writes_predictions_probabilities_and_summary(tmp_path: Path) -> None:
    workspace = make_workspace(tmp_path, cases=4, folds=2)
    results = write_results(workspace, make_plans({"fg": FOREGROUND}))
    summary = validate_fold(workspace, DATASET, "fg", 1, device="cpu", num_processes=1)
    folder = results / "fg" / "fold_1" / "validation"
    assert read_json(folder / "summary.json") == summary
    assert [c["case_id"] for c in summary["cases"]] == ["case001", "case003"]
    assert summary["reference_dir"] == str(workspace.raw / DATASET / "labelsTr")
    for case in summary["cases"]:
        reference, _ = read_volume(
            workspace.raw / DATASET / "labelsTr" / f"{case['case_id']}.nii.gz"
        )
        # an all-lesion prediction: Dice = 2|L| / (|L| + all voxels)
        expected = 2 * reference.sum() / (reference.sum() + reference.size)
        assert case["metrics"]["1"]["dice"] == pytest.approx(expected)
        assert (folder / f"{case['case_id']}.npz").is_file()
    assert not (folder / "case000.nii.gz").exists()
    assert not [p for p in folder.iterdir() if p.name.startswith(".partial")]


def test_fold_all_is_validated_on_its_training_cases(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    workspace = make_workspace(tmp_path, cases=4, folds=2)
    results = write_results(workspace, make_plans({"fg": FOREGROUND}), {"fg": []})
    write_fold(results / "fg", "all", FOREGROUND, make_plans({"fg": FOREGROUND}).plans_id)
    summary = validate_fold(workspace, DATASET, "fg", "all", device="cpu", num_processes=1)
    assert [c["case_id"] for c in summary["cases"]] == ["case000", "case001", "case002", "case003"]
    folder = results / "fg" / "fold_all" / "validation"
    assert read_json(folder / "summary.json") == summary
    assert sorted(p.name for p in folder.glob("*.npz")) == [f"case00{i}.npz" for i in range(4)]
    assert "resubstitution" in capsys.readouterr().out


def test_resubstitution_cases_are_capped_and_spread(tmp_path: Path) -> None:
    workspace = make_workspace(tmp_path, cases=4, folds=2)
    raw = open_raw(workspace, DATASET)
    assert resubstitution_ids(raw) == ["case000", "case001", "case002", "case003"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(validation, "RESUBSTITUTION_CASES", 2)
        assert resubstitution_ids(raw) == ["case000", "case002"]
