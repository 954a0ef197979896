"""find_best: the better configuration wins, ensembles are scored, postprocessing only
when it helps, and a plain predict() then uses the winner."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from autoseg.cli.predict import predict_parser
from autoseg.core.atomic import read_json
from autoseg.core.workspace import Workspace
from autoseg.data.io import read_volume
from autoseg.data.layout import RawDataset
from autoseg.inference.choice import resolve_choice
from autoseg.inference.outputs import case_outputs, write_case
from autoseg.pipeline.find_best import find_best, format_table
from autoseg.pipeline.predict_step import PredictOptions, load_models, predict
from autoseg.pipeline.validation import evaluate_cases, validate_fold
from tests.pipeline.model_helpers import (
    BACKGROUND,
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
    choice = read_json(results / "inference.json")
    assert {k: choice[k] for k in ("configurations", "folds", "postprocessing", "checkpoint",
            "convention")} == {"configurations": ["fg"], "folds": [0, 1], "postprocessing": {},
                               "checkpoint": "final", "convention": "isles22"}  # fmt: skip
    assert sorted(choice["calibration"]) == ["bg", "fg"]
    assert read_json(results / "find_best.json") == payload
    table = format_table(payload)
    assert table.splitlines()[2].startswith("*  fg") and "n cases" in table
    out = tmp_path / "predicted"
    predict(
        workspace, DATASET, workspace.raw / DATASET / "imagesTr", out, PredictOptions(device="cpu")
    )
    labels, _ = read_volume(out / "case000.nii.gz")
    assert labels.min() == 1  # the all-lesion "fg" model, not the recommended "bg"


def test_partial_folds_are_used_with_a_note(workspace: Workspace) -> None:
    write_results(workspace, make_plans({"fg": FOREGROUND}))
    validate_fold(workspace, DATASET, "fg", 1, device="cpu", num_processes=1)
    payload = find_best(workspace, DATASET)
    assert payload["best"]["folds"] == [1] and payload["best"]["num_cases"] == 2
    assert any("only folds 1 of 2" in note for note in payload["notes"])


def write_validation(
    workspace: Workspace, name: str, spurious: bool, splits: dict = SPLITS
) -> None:
    """Hand-made validation probabilities: the reference at 0.9, plus isolated voxels at
    0.8 when ``spurious`` (false lesions that removing small components fixes)."""
    raw = RawDataset.open(workspace.raw / DATASET)
    for fold, ids in splits.items():
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


def test_fold_all_alone_chooses_postprocessing_on_its_training_cases(workspace: Workspace):
    """No numbered fold validated: fold all's resubstitution scores stand in, marked as
    such, uncalibrated, and predicting fold all then applies the choice."""
    write_results(workspace, make_plans({"hand": FOREGROUND}), {"hand": []})
    write_validation(workspace, "hand", True, {"all": [f"case00{i}" for i in range(4)]})
    payload = find_best(workspace, DATASET)
    best = payload["best"]
    assert best["folds"] == ["all"] and best["num_cases"] == 4
    assert best["postprocessing"] == {"min_component_voxels": 2}
    tried = [set(row["postprocessing"]) for row in payload["postprocessing_search"]]
    assert len(tried) > 2 and all(keys <= {"min_component_voxels"} for keys in tried)
    assert payload["calibration"] == {}
    assert any("resubstitution" in note for note in payload["notes"])
    results = workspace.results / DATASET
    assert resolve_choice(results, ["hand"], [0], None)[2] == {}
    write_fold(results / "hand", "all", FOREGROUND, make_plans({"hand": FOREGROUND}).plans_id)
    options = PredictOptions(configurations=["hand"], folds=["all"], device="cpu")
    assert load_models(workspace, DATASET, options)[1] == {"min_component_voxels": 2}
    raw_options = PredictOptions(configurations=["hand"], folds=["all"], postprocess=False)
    assert load_models(workspace, DATASET, raw_options)[1] == {}
    flags = predict_parser().parse_args(["-i", "a", "-o", "b", "--no-postprocessing"])
    assert flags.no_postprocessing


def test_the_plans_size_rule_is_the_baseline_and_predict_applies_it(workspace: Workspace):
    """The plans' default (0.006 ml: two voxels of 5.6 mm^3) already removes the one-voxel
    false lesions, so no candidate beats it, and it is what predict applies with or without
    find_best's choice, unless --no-postprocessing."""
    default = {"min_lesion_ml": 0.006}
    plans = make_plans({"hand": FOREGROUND}, postprocessing=default)
    results = write_results(workspace, plans, {"hand": []})
    assert resolve_choice(results, ["hand"], None, None)[2] == default
    write_validation(workspace, "hand", True)
    payload = find_best(workspace, DATASET)
    best = payload["best"]
    assert payload["postprocessing_search"][0]["postprocessing"] == default
    assert best["postprocessing"] == default
    assert best["mean"]["lesion_f1"] == pytest.approx(0.4)
    assert best["mean_after_postprocessing"]["lesion_f1"] == 1.0
    assert all(row["postprocessing"].items() >= default.items()
               for row in payload["postprocessing_search"])  # fmt: skip
    assert resolve_choice(results, ["hand"], [0, 1], None)[2] == default
    write_fold(results / "hand", 0, FOREGROUND, plans.plans_id)
    write_fold(results / "hand", 1, FOREGROUND, plans.plans_id)
    raw_options = PredictOptions(configurations=["hand"], postprocess=False)
    assert load_models(workspace, DATASET, raw_options)[1] == {}


def test_training_case_scores_do_not_rank_configurations(workspace: Workspace) -> None:
    """The second scores higher on its training cases, but resubstitution rewards memorising:
    the plans' recommended configuration stays, and nothing is ensembled."""
    plans = make_plans({"plain": FOREGROUND, "good": FOREGROUND}, recommended="plain")
    write_results(workspace, plans, {"plain": [], "good": []})
    cases = {"all": [f"case00{i}" for i in range(4)]}
    write_validation(workspace, "plain", True, cases)
    write_validation(workspace, "good", False, cases)
    payload = find_best(workspace, DATASET)
    dice = {c["name"]: c["mean"]["dice"] for c in payload["candidates"]}
    assert sorted(dice) == ["good", "plain"] and dice["good"] > dice["plain"]
    assert payload["best"]["name"] == "plain"


def test_cross_validation_outranks_fold_all(workspace: Workspace) -> None:
    write_results(workspace, make_plans({"hand": FOREGROUND}), {"hand": []})
    write_validation(workspace, "hand", True, {"all": [f"case00{i}" for i in range(4)]})
    write_validation(workspace, "hand", False)
    payload = find_best(workspace, DATASET)
    assert payload["best"]["folds"] == [0, 1] and payload["best"]["postprocessing"] == {}
    assert not any("resubstitution" in note for note in payload["notes"])


def test_an_overconfident_model_is_calibrated_and_predict_applies_it(
    workspace: Workspace, tmp_path: Path
) -> None:
    """Validation probabilities of 0.99 that are wrong a fifth of the time: the fitted
    temperature softens them (T > 1), the ECE falls, and predict divides the logits."""
    write_results(workspace, make_plans({"hand": FOREGROUND}), {"hand": []})
    raw = RawDataset.open(workspace.raw / DATASET)
    rng = np.random.default_rng(0)
    for fold, ids in SPLITS.items():
        folder = workspace.results / DATASET / "hand" / f"fold_{fold}" / "validation"
        for case_id in ids:
            reference, meta = read_volume(raw.labels_tr / f"{case_id}.nii.gz")
            wrong = rng.random(reference.shape) < 0.2
            lesion = np.where((reference > 0) ^ wrong, 0.99, 0.01).astype(np.float32)
            write_case(case_outputs(folder, case_id, probabilities=True),
                       np.stack([1 - lesion, lesion]), meta, {})  # fmt: skip
        evaluate_cases(raw, ids, folder, folder / "summary.json", [1], num_processes=1)
    payload = find_best(workspace, DATASET)
    fit = payload["calibration"]["hand"]
    # Honest probabilities would be 0.8: T solves sigmoid(log(99) / T) = 0.8.
    assert fit["temperature"] == pytest.approx(np.log(99) / np.log(4), rel=0.05)
    assert fit["ece_after"] < 0.02 < 0.15 < fit["ece_before"]
    assert read_json(workspace.results / DATASET / "inference.json")["calibration"] == {"hand": fit}
    assert "calibration: hand temperature" in format_table(payload)
    write_results(workspace, make_plans({"hand": FOREGROUND}))  # now with trained folds
    out = tmp_path / "predicted"
    predict(workspace, DATASET, workspace.raw / DATASET / "imagesTr", out,
            PredictOptions(device="cpu", save_probabilities=True, disable_tta=True))  # fmt: skip
    probabilities = np.load(out / "case000.npz")["probabilities"].astype(np.float64)
    expected = 1 / (1 + np.exp(-20.0 / fit["temperature"]))  # bias 20 of FOREGROUND
    assert probabilities[1].mean() == pytest.approx(expected, abs=1e-3)


def test_postprocessing_candidates_include_a_peak_cut_without_a_threshold() -> None:
    from autoseg.pipeline.cv_postprocessing import candidate_specs

    specs = candidate_specs(8.0)  # 2 mm voxels
    assert specs[0] == {}
    assert {"min_component_peak": 0.9} in specs
    assert {"min_component_peak": 0.9, "min_component_voxels": 2} in specs  # 5 mm^3 -> 1 -> 2
    assert not [s for s in specs if "threshold" in s and "min_component_peak" in s]
    assert len(specs) == len({tuple(sorted(s.items())) for s in specs})
