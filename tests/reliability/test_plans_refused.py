"""Gap 5: plans that cannot run are refused (memory re-estimated; run lengths positive)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autoseg.cli import EXIT_INVALID, plan_main, train_main
from autoseg.planning import planner
from autoseg.plans import Plans, finalize, write_plans
from tests.conftest import write_tiny_dataset
from tests.pipeline.model_helpers import configuration_entry, hybrid_spec
from tests.reliability.helpers import error_lines, run_cli


def _plans(dataset: str = "Tiny") -> Plans:
    """Small schema-valid plans for a 1 GB card: a tiny 3d_hybrid, planned to fit."""
    entry = configuration_entry(hybrid_spec())
    entry["training"] = {"epochs": 2, "iterations_per_epoch": 2, "amp": False}
    payload = {"dataset": dataset, "gpu_memory_gb": 1.0, "gpu_memory_source": "flag",
               "device": "cuda", "recommended_configuration": "3d_hybrid",
               "configurations": {"3d_hybrid": entry}}  # fmt: skip
    return finalize(payload)


@pytest.fixture
def planned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A tiny raw dataset whose planning returns :func:`_plans` (no ladder search)."""
    write_tiny_dataset(tmp_path / "raw" / "Tiny", cases=3)
    monkeypatch.setattr(planner, "plan_from_fingerprint", lambda *_: _plans())
    return tmp_path


def _plan(home: Path, *sets: str) -> list[str]:
    argv = ["-d", "Tiny", "--home", str(home), "--no-progress", "-np", "1", "--plan-only"]
    return argv + [word for assignment in sets for word in ("--set", assignment)]


def test_set_batch_beyond_the_budget_is_refused_naming_the_key(planned: Path, capsys) -> None:
    plans_file = planned / "preprocessed" / "Tiny" / "plans.json"
    assert run_cli(plan_main, _plan(planned), capsys)[0] == 0
    before = plans_file.read_bytes()
    code, err = run_cli(plan_main, _plan(planned, "3d_hybrid.batch_size=20000"), capsys)
    assert code == EXIT_INVALID
    (line,) = error_lines(err)
    assert line.startswith("error: --set 3d_hybrid.batch_size=20000: 3d_hybrid would need an "
                           "estimated ")  # fmt: skip
    assert line.endswith("more than 1.2 x the plans' 1 GB budget (1.2 GB); "
                         "lower batch_size or patch_size")  # fmt: skip
    assert plans_file.read_bytes() == before  # the earlier plans are kept


def test_set_within_the_budget_records_the_new_estimate(planned: Path, capsys) -> None:
    assert run_cli(plan_main, _plan(planned, "3d_hybrid.batch_size=3"), capsys)[0] == 0
    entry = json.loads((planned / "preprocessed" / "Tiny" / "plans.json").read_text())[
        "configurations"
    ]["3d_hybrid"]
    assert entry["batch_size"] == 3
    assert (
        entry["memory_estimate_gb"] != _plans().configurations["3d_hybrid"]["memory_estimate_gb"]
    )  # re-traced for batch 3, not the planner's figure for batch 2


@pytest.mark.parametrize("value", ["-1", "0"])
def test_set_of_non_positive_epochs_is_bad_usage(planned: Path, value: str, capsys) -> None:
    code, err = run_cli(plan_main, _plan(planned, f"3d_hybrid.training.epochs={value}"), capsys)
    assert code == EXIT_INVALID
    assert error_lines(err) == [
        f"error: plans: configurations.3d_hybrid: 'training.epochs' must be a positive "
        f"integer, got {value}"
    ]


def _train(home: Path, *flags: str) -> list[str]:
    return ["Tiny", "3d_hybrid", "0", "--home", str(home), "--no-progress", "--device", "cpu",
            *flags]  # fmt: skip


def _hand_edited(home: Path, key: str, value: object) -> Path:
    payload = _plans().to_json()
    payload["configurations"]["3d_hybrid"] = {**payload["configurations"]["3d_hybrid"]}
    target = payload["configurations"]["3d_hybrid"]
    if key.startswith("training."):
        target["training"][key.split(".", 1)[1]] = value
    else:
        target[key] = value
    path = home / "preprocessed" / "Tiny" / "plans.json"
    write_plans(path, _plans())
    path.write_text(json.dumps(payload))
    return path


def test_hand_edited_batch_beyond_the_budget_is_refused_at_train_start(
    tmp_path: Path, capsys
) -> None:
    plans_file = _hand_edited(tmp_path, "batch_size", 20000)
    code, err = run_cli(train_main, _train(tmp_path), capsys)
    assert code == EXIT_INVALID
    (line,) = error_lines(err)
    edited = "(patch_size, batch_size or network edited)"
    assert line.startswith(
        f"error: {plans_file}: configurations.3d_hybrid {edited}: 3d_hybrid would need an"
    )
    assert not (tmp_path / "results" / "Tiny" / "3d_hybrid").exists()


def test_hand_edited_negative_epochs_are_refused(tmp_path: Path, capsys) -> None:
    plans_file = _hand_edited(tmp_path, "training.epochs", -1)
    code, err = run_cli(train_main, _train(tmp_path), capsys)
    assert code == EXIT_INVALID
    assert error_lines(err) == [
        f"error: {plans_file}: configurations.3d_hybrid: 'training.epochs' must be a positive "
        "integer, got -1"
    ]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--epochs", "0"], "argument --epochs: must be a positive integer, got 0"),
        (["--epochs", "-1"], "argument --epochs: must be a positive integer, got -1"),
        (["--iters-per-epoch", "0"], "argument --iters-per-epoch: must be a positive integer, "
                                     "got 0"),
    ],
)  # fmt: skip
def test_non_positive_run_lengths_are_bad_usage(
    tmp_path: Path, flags: list[str], message: str, capsys
) -> None:
    with pytest.raises(SystemExit) as stop:
        train_main(_train(tmp_path, *flags))
    assert stop.value.code == EXIT_INVALID
    assert capsys.readouterr().err.splitlines() == [
        f"autoseg_train: error: {message} (see autoseg_train --help)"
    ]
