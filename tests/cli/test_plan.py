"""autoseg_plan end to end on a tiny dataset: plans, splits, caches, overrides, errors."""

from __future__ import annotations

import json
from pathlib import Path
from unittest import mock

from autoseg.cli import EXIT_INVALID, EXIT_OK, plan_main
from tests.conftest import write_tiny_dataset


def _home(tmp_path: Path) -> list[str]:
    return ["--home", str(tmp_path), "--no-progress", "-np", "1"]


def test_plan_writes_plans_splits_and_one_shared_cache(tmp_path: Path) -> None:
    write_tiny_dataset(tmp_path / "raw" / "Tiny", cases=5)
    assert plan_main(["-d", "Tiny", *_home(tmp_path), "--set", "3d_hybrid.batch_size=3"]) == 0
    folder = tmp_path / "preprocessed" / "Tiny"
    plans = json.loads((folder / "plans.json").read_text())
    assert plans["configurations"]["3d_hybrid"]["batch_size"] == 3
    assert plans["overrides"] == ["3d_hybrid.batch_size=3"]
    splits = json.loads((folder / "splits.json").read_text())
    assert len(splits) == 5 and sorted(c for f in splits for c in f["val"]) == [
        f"case{i:03d}" for i in range(5)
    ]
    data_ids = {config["data_id"] for config in plans["configurations"].values()}
    caches = sorted(p.name for p in folder.iterdir() if p.is_dir() and p.name.startswith("3d_"))
    assert caches == sorted(data_ids)
    assert len(list((folder / caches[0]).glob("case*.npz"))) == 5


def test_plan_only_writes_no_cache_and_same_input_gives_same_plans(tmp_path: Path) -> None:
    write_tiny_dataset(tmp_path / "raw" / "Tiny", cases=3)
    plans_file = tmp_path / "preprocessed" / "Tiny" / "plans.json"
    assert plan_main(["-d", "Tiny", "--plan-only", *_home(tmp_path)]) == EXIT_OK
    first = plans_file.read_bytes()
    assert plan_main(["-d", "Tiny", "--plan-only", *_home(tmp_path)]) == EXIT_OK
    assert plans_file.read_bytes() == first
    assert not any(p.name.startswith("3d_") for p in plans_file.parent.iterdir())


def test_plan_says_when_it_planned_for_bf16(tmp_path: Path, capsys) -> None:
    write_tiny_dataset(tmp_path / "raw" / "Tiny", cases=3)
    args = ["-d", "Tiny", "--plan-only", "--device", "cpu", *_home(tmp_path)]
    assert plan_main(args) == EXIT_OK
    assert "bf16" not in capsys.readouterr().out
    with mock.patch("autoseg.planning.device.cpu_bf16_faster", return_value=True):
        assert plan_main(args) == EXIT_OK
    assert "planned for bf16 training" in capsys.readouterr().out
    plans = json.loads((tmp_path / "preprocessed" / "Tiny" / "plans.json").read_text())
    assert plans["cpu_budget"]["bf16"] is True


def test_invalid_dataset_is_refused_before_planning(tmp_path: Path, capsys) -> None:
    root = write_tiny_dataset(tmp_path / "raw" / "Tiny", cases=3)
    (root / "labelsTr" / "case002.nii.gz").unlink()
    assert plan_main(["-d", "Tiny", *_home(tmp_path)]) == EXIT_INVALID
    assert "case002" in capsys.readouterr().err
    assert not (tmp_path / "preprocessed" / "Tiny" / "plans.json").exists()
