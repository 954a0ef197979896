"""train_fold: from plans.json and caches to a results folder; resume; plans checks."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from autoseg.core.atomic import write_json
from autoseg.core.checkpoint import load_checkpoint
from autoseg.core.errors import InvalidInputError
from autoseg.core.workspace import Workspace
from autoseg.pipeline import fold_trainer
from autoseg.pipeline.fit_fold import fit_fold, train_fold
from autoseg.pipeline.fold_data import load_fold
from autoseg.pipeline.fold_trainer import TrainOptions, build_trainer
from autoseg.plans import load_plans
from autoseg.preprocessing.cache import SPEC_FILE
from autoseg.training import speed
from autoseg.training.speed import SpeedLevers
from autoseg.training.trainer import Trainer
from tests.networks.conftest import TINY
from tests.training.cache_helpers import lesion_cache

TRAINING = {
    "epochs": 2,
    "iterations_per_epoch": 2,
    "validation_iterations": 1,
    "optimizer": "sgd",
    "lr": 0.01,
    "momentum": 0.99,
    "nesterov": True,
    "weight_decay": 3e-5,
    "schedule": "poly",
    "poly_exponent": 0.9,
    "loss": "dice_ce",
    "oversample_foreground": 0.5,
    "gradient_clip": 12.0,
    "amp": True,
    "deep_supervision_weights": [0.67, 0.33, 0.0],
}


def write_plans(folder: Path, lr: float = 0.01) -> None:
    kwargs = {**TINY["2.5d_unet"][0], "in_channels": 3, "num_classes": 2}
    config = {
        "data_id": "tiny",
        "spacing_mm": [1.0, 1.0, 1.0],
        "patch_size": [12, 20],
        "slice_context": {"slices": 3, "context": 1, "axis": "z"},
        "batch_size": 2,
        "normalization": [{"scheme": "zscore_brain"}],
        "network": {"name": "2.5d_unet", "kwargs": kwargs},
        "parameters": 1,
        "memory_estimate_gb": 0.1,
        "training": {**TRAINING, "lr": lr},
        "augmentation": {"off": True},
        "inference": {},
    }
    plans = {
        "schema_version": 1,
        "plans_id": "",
        "dataset": "TINY",
        "gpu_memory_gb": 1.0,
        "gpu_memory_source": "default",
        "device": "cpu",
        "recommended_configuration": "2.5d_unet",
        "configurations": {"2.5d_unet": config},
    }
    (folder / "plans.json").write_text(json.dumps(plans))


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    ws = Workspace.under(tmp_path)
    folder = ws.preprocessed / "TINY"
    (folder / "tiny").mkdir(parents=True)
    lesion_cache(folder / "tiny", cases=5, shape=(12, 24, 28), lesion=5)
    write_plans(folder)
    (ws.raw / "TINY").mkdir(parents=True)
    (ws.raw / "TINY" / "dataset.json").write_text('{"name": "TINY"}')
    return ws


OPTIONS = TrainOptions(device="cpu", num_workers=0, progress=False, seed=3)


def test_train_fold_writes_the_results_folder_and_resumes(workspace: Workspace) -> None:
    fold = train_fold(workspace, "TINY", "2.5d_unet", 0, OPTIONS)
    assert fold == workspace.results / "TINY" / "2.5d_unet" / "fold_0"
    names = {p.name for p in fold.iterdir()}
    assert {
        "checkpoint_latest.pt",
        "checkpoint_final.pt",
        "training_log.csv",
        "progress.png",
    } <= names
    assert (fold.parent / "plans.json").is_file() and (fold.parent / "dataset.json").is_file()
    splits = json.loads((workspace.preprocessed / "TINY" / "splits.json").read_text())
    assert len(splits) == 5 and splits[0]["val"] == [sorted(splits[0]["val"])[0]]
    rows = list(csv.DictReader((fold / "training_log.csv").open()))
    assert [r["epoch"] for r in rows] == ["0", "1"]
    with pytest.raises(InvalidInputError, match="--continue"):
        train_fold(workspace, "TINY", "2.5d_unet", 0, OPTIONS)
    more = TrainOptions(**{**OPTIONS.__dict__, "epochs": 3, "continue_training": True})
    train_fold(workspace, "TINY", "2.5d_unet", 0, more)
    final = load_checkpoint(fold / "checkpoint_final.pt")
    assert final["epoch"] == 3 and final["iteration"] == 6 and final["fold"] == "0"
    assert len(list(csv.DictReader((fold / "training_log.csv").open()))) == 3


def test_fold_all_is_validated_only_when_asked_alone(
    workspace: Workspace, capsys: pytest.CaptureFixture
) -> None:
    """Trained, fold all skips validation (it has no held-out cases) and says how to ask."""
    assert fit_fold(workspace, "TINY", "2.5d_unet", "all", OPTIONS) is None
    assert "all --val-only validates it on its own training cases" in capsys.readouterr().out
    assert (workspace.results / "TINY" / "2.5d_unet" / "fold_all" / "checkpoint_final.pt").is_file()


def test_checkpoint_of_other_plans_is_refused(workspace: Workspace) -> None:
    train_fold(workspace, "TINY", "2.5d_unet", "all", OPTIONS)
    write_plans(workspace.preprocessed / "TINY", lr=0.02)
    resume = TrainOptions(**{**OPTIONS.__dict__, "continue_training": True})
    with pytest.raises(InvalidInputError, match="plans_id"):
        train_fold(workspace, "TINY", "2.5d_unet", "all", resume)


def test_a_cache_made_with_other_preprocessing_is_refused(workspace: Workspace) -> None:
    """A hand edit of plans.json keeps the old data_id: the cache's spec record tells."""
    folder = workspace.preprocessed / "TINY"
    spec = load_plans(folder / "plans.json").configuration("2.5d_unet").preprocessing_spec
    record = {"data_id": "tiny", "spec_hash": spec.spec_hash, "spec": spec.to_json()}
    write_json(folder / "tiny" / SPEC_FILE, record)
    assert len(load_fold(workspace, "TINY", "2.5d_unet", 0).train_ids) == 4
    other = {**spec.to_json(), "contralateral": True, "n4": True}
    write_json(folder / "tiny" / SPEC_FILE, {**record, "spec_hash": "0" * 16, "spec": other})
    with pytest.raises(InvalidInputError, match=r"\(contralateral, n4 differ\).*--set 2.5d_unet"):
        load_fold(workspace, "TINY", "2.5d_unet", 0)


def _trainer_on_a_bf16_cpu(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch, survives: bool, precision: str
) -> Trainer:
    monkeypatch.setattr(speed, "cpu_bf16_faster", lambda purpose: True)
    monkeypatch.setattr(fold_trainer, "bf16_step_survives", lambda *args: survives)
    options = replace(OPTIONS, levers=SpeedLevers(precision=precision))
    data = load_fold(workspace, "TINY", "2.5d_unet", 0)
    return build_trainer(workspace, data, 0, workspace.results / "probe", options)


def test_a_cpu_run_falls_back_to_float32_where_its_bf16_step_does_not_survive(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    assert _trainer_on_a_bf16_cpu(workspace, monkeypatch, True, "auto").dtype is torch.bfloat16
    trainer = _trainer_on_a_bf16_cpu(workspace, monkeypatch, False, "auto")
    assert trainer.dtype is None and trainer.settings.levers.precision == "fp32"
    assert "(2, 3, 12, 20) batch crashed or hung" in capsys.readouterr().out
    with pytest.raises(InvalidInputError, match=r"--bf16: a bf16 training step of 2\.5d_unet"):
        _trainer_on_a_bf16_cpu(workspace, monkeypatch, False, "bf16")
