"""Trackers: MLflow for real against a temporary sqlite store; flattening; unknown names."""

from __future__ import annotations

from pathlib import Path

import pytest

from autoseg.core.errors import InvalidInputError
from autoseg.training.callbacks import ProgressPlot
from autoseg.training.tracking import build_tracker, default_tracking_uri, flatten
from tests.training.trainer_helpers import make_trainer


def test_flatten_and_unknown_tracker(tmp_path: Path) -> None:
    assert flatten({"a": {"b": 1, "c": [1, 2]}, "d": "x"}) == {"a.b": "1", "a.c": "[1, 2]",
                                                               "d": "x"}  # fmt: skip
    assert default_tracking_uri(tmp_path).startswith("sqlite:////")
    with pytest.raises(InvalidInputError, match="mlflow, wandb"):
        build_tracker("tensorboard", tracking_uri=None, experiment="e", run_name="r",
                      params={}, fold_folder=tmp_path, results_folder=tmp_path)  # fmt: skip


@pytest.mark.slow  # importing mlflow and creating its sqlite tables: ~15-40 s
def test_mlflow_logs_params_metrics_and_artifacts(tmp_path: Path) -> None:
    mlflow = pytest.importorskip("mlflow")
    fold = tmp_path / "fold_0"
    params = {"patch_size": [12, 20], "training": {"lr": 0.01, "loss": "dice_ce"}}
    tracker = build_tracker("mlflow", tracking_uri=None, experiment="TINY", run_name="run",
                            params=params, fold_folder=fold, results_folder=tmp_path)  # fmt: skip
    trainer = make_trainer(fold, "2.5d_unet", epochs=2, iterations=1,
                           callbacks=[ProgressPlot(fold / "progress.png")])  # fmt: skip
    trainer.callbacks.append(tracker)
    tracker.trainer = trainer
    trainer.train()
    assert (tmp_path / "mlruns.db").is_file()
    client = mlflow.tracking.MlflowClient(default_tracking_uri(tmp_path))
    run_id = (fold / "tracker_run_id.txt").read_text().strip()
    run = client.get_run(run_id)
    assert run.data.params["training.lr"] == "0.01" and run.info.status == "FINISHED"
    history = client.get_metric_history(run_id, "train_loss")
    assert [m.step for m in history] == [0, 1]
    assert history[1].value == pytest.approx(trainer.state.history[1]["train_loss"])
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"progress.png", "checkpoint_final.pt", "training_log.csv"} <= artifacts
    assert (tmp_path / "mlartifacts").is_dir() and not Path("mlruns").exists()
