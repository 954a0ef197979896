"""RunLayout: every artefact path where the rest of the package (and the docs) expect it."""

from __future__ import annotations

from pathlib import Path

import pytest

from autoseg.core.errors import InvalidInputError
from autoseg.core.run_layout import ConfigLayout, RunLayout, configurations_in
from autoseg.core.workspace import Workspace


def test_paths_of_a_run(tmp_path: Path) -> None:
    layout = RunLayout(Workspace.under(tmp_path), "ATLAS")
    home = tmp_path
    assert layout.plans == home / "preprocessed/ATLAS/plans.json"
    assert layout.splits == home / "preprocessed/ATLAS/splits.json"
    assert layout.fingerprint == home / "preprocessed/ATLAS/fingerprint.json"
    assert layout.cache("3d_1mm") == home / "preprocessed/ATLAS/3d_1mm"
    assert layout.report == home / "results/ATLAS/report.html"
    assert layout.find_best_json == home / "results/ATLAS/find_best.json"
    assert layout.test_metrics == home / "results/ATLAS/test/metrics.json"
    config = layout.configuration("3d_hybrid")
    assert config.plans == home / "results/ATLAS/3d_hybrid/plans.json"
    assert config.dataset_json == home / "results/ATLAS/3d_hybrid/dataset.json"
    fold = layout.fold("3d_hybrid", 0)
    assert fold.folder == home / "results/ATLAS/3d_hybrid/fold_0"
    assert fold.checkpoint("latest").name == "checkpoint_latest.pt"
    assert fold.training_log.name == "training_log.csv"
    assert fold.validation_summary == fold.folder / "validation/summary.json"
    assert fold.fold == "0"


def test_folds_and_configurations_found_on_disk(tmp_path: Path) -> None:
    config = ConfigLayout(tmp_path / "3d_hybrid")
    for name in ("fold_10", "fold_2", "fold_all", "fold_x"):
        (config.folder / name).mkdir(parents=True)
    config.fold(2).checkpoint("final").write_bytes(b"")
    assert list(config.folds()) == ["2", "10", "all"]
    assert config.trained_folds("final") == ["2"]
    assert configurations_in(tmp_path) == []
    config.plans.write_text("{}")
    assert configurations_in(tmp_path) == ["3d_hybrid"]


def test_results_found_by_nnunet_name(tmp_path: Path) -> None:
    workspace = Workspace.under(tmp_path)
    (workspace.raw / "Dataset012_Foo").mkdir(parents=True)
    (workspace.results / "Dataset012_Foo").mkdir(parents=True)
    assert RunLayout.of_results(workspace, "12").dataset == "Dataset012_Foo"
    with pytest.raises(InvalidInputError, match="train it first"):
        RunLayout.of_results(workspace, "Bar")
