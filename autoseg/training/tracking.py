"""Experiment trackers (MLflow, Weights & Biases) as Trainer callbacks.

The local ``training_log.csv`` stays the source of truth; trackers mirror it. Both are
imported lazily, so autoseg works without them installed. MLflow defaults to a
``sqlite:///`` database in the results folder (no server needed); W&B runs offline (no
network or account needed; ``wandb sync`` uploads later).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from autoseg.core.errors import InvalidInputError
from autoseg.core.run_layout import MLRUNS_DB, FoldLayout
from autoseg.training.callbacks import Callback

TRACKERS = ("mlflow", "wandb")
RUN_ID_FILE = "tracker_run_id.txt"


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested plans entries as ``{"training.lr": "0.01", ...}`` (tracker params are flat)."""
    flat: dict[str, str] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = str(value)
    return flat


def default_tracking_uri(results_folder: Path) -> str:
    """``sqlite:///<results>/mlruns.db``: a local store that needs no server."""
    return f"sqlite:///{Path(results_folder).resolve() / MLRUNS_DB}"


def _finite(metrics: Mapping[str, float]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if k != "epoch" and math.isfinite(v)}


class MLflowTracker(Callback):
    """Params (the plans configuration, flattened), per-epoch metrics, and artifacts.

    Args:
        tracking_uri: e.g. ``sqlite:///results/ATLAS/mlruns.db`` or ``http://host:5000``.
        experiment: experiment name (the dataset).
        run_name: e.g. ``3d_hybrid_fold_0``.
        params: the plans configuration (nested dicts are flattened).
        fold_folder: where the run id is kept (a resumed run continues the same MLflow
            run) and the artifacts are found.
    """

    def __init__(
        self,
        tracking_uri: str,
        experiment: str,
        run_name: str,
        params: Mapping[str, Any],
        fold_folder: Path,
    ):
        self.tracking_uri, self.experiment, self.run_name = tracking_uri, experiment, run_name
        self.params, self.folder = dict(params), Path(fold_folder)
        self.mlflow: Any = None
        self.run_id: str | None = None

    def before_train(self) -> None:
        import mlflow

        self.mlflow = mlflow
        mlflow.set_tracking_uri(self.tracking_uri)
        if mlflow.get_experiment_by_name(self.experiment) is None:
            mlflow.create_experiment(self.experiment, artifact_location=self.artifact_location())
        mlflow.set_experiment(self.experiment)
        id_file = self.folder / RUN_ID_FILE
        previous = id_file.read_text().strip() if id_file.is_file() else None
        if previous and self.trainer.state.epoch > 0:
            run = mlflow.start_run(run_id=previous)
        else:
            run = mlflow.start_run(run_name=self.run_name)
            mlflow.log_params(flatten(self.params))
        self.run_id = run.info.run_id
        self.folder.mkdir(parents=True, exist_ok=True)
        id_file.write_text(self.run_id + "\n")

    def artifact_location(self) -> str | None:
        """Beside a local sqlite database (MLflow's default is ``./mlruns`` in the current
        directory, which would scatter artifacts wherever training was started)."""
        if not self.tracking_uri.startswith("sqlite:///"):
            return None
        database = Path(self.tracking_uri.removeprefix("sqlite:///"))
        return (database.parent / "mlartifacts").resolve().as_uri()

    def after_epoch(self) -> None:
        metrics = _finite(self.trainer.metrics)
        self.mlflow.log_metrics(metrics, step=int(self.trainer.metrics["epoch"]))

    def after_train(self) -> None:
        fold = FoldLayout(self.folder)
        paths = [fold.progress_plot, fold.training_log, fold.checkpoint("final"),
                 fold.validation_summary]  # fmt: skip
        for path in paths:
            if path.is_file():
                self.mlflow.log_artifact(str(path))
        self.mlflow.end_run()
        self.run_id = None

    def teardown(self) -> None:
        if self.run_id is not None and self.mlflow.active_run() is not None:
            self.mlflow.end_run(status="KILLED")


class WandbTracker(Callback):
    """Weights & Biases in offline mode: files under ``<fold>/wandb``."""

    def __init__(self, project: str, run_name: str, params: Mapping[str, Any], fold_folder: Path):
        self.project, self.run_name = project, run_name
        self.params, self.folder = dict(params), Path(fold_folder)
        self.run: Any = None

    def before_train(self) -> None:
        import wandb

        self.folder.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(
            project=self.project,
            name=self.run_name,
            config=flatten(self.params),
            dir=str(self.folder),
            mode="offline",
        )

    def after_epoch(self) -> None:
        self.run.log(_finite(self.trainer.metrics), step=int(self.trainer.metrics["epoch"]))

    def after_train(self) -> None:
        self.run.finish()
        self.run = None

    def teardown(self) -> None:
        if self.run is not None:
            self.run.finish(exit_code=1)


def build_tracker(
    name: str | None,
    *,
    tracking_uri: str | None,
    experiment: str,
    run_name: str,
    params: Mapping[str, Any],
    fold_folder: Path,
    results_folder: Path,
) -> Callback | None:
    """The tracker callback for ``--tracker`` (None: no tracker).

    Raises:
        InvalidInputError: an unknown tracker name, or its package is not installed.
    """
    if name is None:
        return None
    if name not in TRACKERS:
        raise InvalidInputError(f"unknown tracker '{name}'; known: {', '.join(TRACKERS)}")
    try:
        __import__(name)
    except ImportError as error:
        raise InvalidInputError(
            f"--tracker {name}: package '{name}' is not installed (pip install {name})"
        ) from error
    if name == "mlflow":
        uri = tracking_uri or default_tracking_uri(results_folder)
        return MLflowTracker(uri, experiment, run_name, params, fold_folder)
    return WandbTracker(experiment, run_name, params, fold_folder)
