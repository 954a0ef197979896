"""find_best: the better configuration wins, ensembles are scored, postprocessing only
when it helps, and a plain predict() then uses the winner."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from autoseg.data.atomic import read_json
from autoseg.data.io import read_volume
from autoseg.data.layout import RawDataset
from autoseg.data.workspace import Workspace
from autoseg.inference.outputs import case_outputs, write_case
from autoseg.pipeline.find_best import find_best, format_table
from autoseg.pipeline.predict import predict
from autoseg.pipeline.validation import evaluate_cases, validate_fold
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
SPLITS = {0: ["case000", "case002"], 1: ["case001", "case003"]}


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    return make_workspace(tmp_path, cases=4, folds=2)


def test_the_better_configuration_wins_and_predict_uses_it(workspace: Workspace, tmp_path):
    results = write_results(workspace, make_plans({"bg": BACKGROUND, "fg": FOREGROUND}))
    for name in ("bg", "fg"):
        for fold in (0, 1):
            validate_fold(workspace, DATASET, name, fold, device="cpu", num_processes=1)
    payload = find_best(workspace, DATASET)
    names = [c["name"] for c in payload["candidates"]]
    assert names == ["bg", "fg", "bg+fg"]
    means = {c["name"]: c["mean"]["dice"] for c in payload["candidates"]}
    assert means["bg"] == 0.0 and means["fg"] > 0.0
    assert payload["best"]["name"] == "fg" and payload["best"]["postprocessing"] == {}
    assert (results / "ensembles" / "bg+fg" / "fold_1" / "summary.json").is_file()
    assert read_json(results / "inference.json") == {
        "configurations": ["fg"], "folds": [0, 1], "postprocessing": {}, "checkpoint": "final",
    }  # fmt: skip
    assert read_json(results / "find_best.json") == payload
    table = format_table(payload)
    assert table.splitlines()[2].startswith("*  fg") and "n cases" in table
    out = tmp_path / "predicted"
    predict(workspace, DATASET, workspace.raw / DATASET / "imagesTr", out, device="cpu")
    labels, _ = read_volume(out / "case000.nii.gz")
    assert labels.min() == 1  # the all-lesion "fg" model, not the recommended "bg"


def test_partial_folds_are_used_with_a_note(workspace: Workspace) -> None:
    write_results(workspace, make_plans({"fg": FOREGROUND}))
    validate_fold(workspace, DATASET, "fg", 1, device="cpu", num_processes=1)
    payload = find_best(workspace, DATASET)
    assert payload["best"]["folds"] == [1] and payload["best"]["num_cases"] == 2
    assert any("only folds 1 of 2" in note for note in payload["notes"])


def write_validation(workspace: Workspace, name: str, spurious: bool) -> None:
    """Hand-made validation probabilities: the reference at 0.9, plus isolated voxels at
    0.8 when ``spurious`` (false lesions that removing small components fixes)."""
    raw = RawDataset.open(workspace.raw / DATASET)
    for fold, ids in SPLITS.items():
        folder = workspace.results / DATASET / name / f"fold_{fold}" / "validation"
        for case_id in ids:
            reference, meta = read_volume(raw.labels_tr / f"{case_id}.nii.gz")
            lesion = np.where(reference > 0, 0.9, 0.05).astype(np.float32)
            if spurious:
                lesion[7, 0, 0] = lesion[0, 11, 9] = lesion[7, 11, 0] = 0.8
            probabilities = np.stack([1 - lesion, lesion])
            write_case(case_outputs(folder, case_id, probabilities=True), probabilities, meta, {})
        evaluate_cases(raw, ids, folder, folder / "summary.json", [1], num_processes=1)


@pytest.mark.parametrize("spurious", [True, False])
def test_postprocessing_is_chosen_only_when_it_helps(workspace: Workspace, spurious: bool):
    write_results(workspace, make_plans({"hand": FOREGROUND}), {"hand": []})
    write_validation(workspace, "hand", spurious)
    best = find_best(workspace, DATASET)["best"]
    if spurious:
        assert best["postprocessing"] == {"min_component_voxels": 2}
        assert best["mean"]["lesion_f1"] == pytest.approx(0.4)  # 1 TP, 3 FP
        assert best["mean_after_postprocessing"]["lesion_f1"] == 1.0
        assert best["mean_after_postprocessing"]["dice"] == 1.0 > best["mean"]["dice"]
    else:
        assert best["postprocessing"] == {}
        assert best["mean_after_postprocessing"]["dice"] == best["mean"]["dice"] == 1.0
