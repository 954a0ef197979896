"""The fit_fold step: train one fold, tear down DDP, then validate it (``autoseg_train``).

Training and inference do not import each other: this pipeline step is where the trained
fold (:func:`train_fold`) meets the sliding-window validation
(:func:`~autoseg.pipeline.validation.validate_fold`). ``train_fold`` writes
``results/<NAME>/<CONFIG>/{plans.json, dataset.json}`` and ``fold_<k>/`` (checkpoints,
``training_log.csv``, ``progress.png``); validation writes ``fold_<k>/validation/``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from autoseg.core.checkpoint import load_checkpoint
from autoseg.core.errors import InvalidInputError
from autoseg.core.paths import ensure_writable_dir
from autoseg.core.run_layout import FoldLayout
from autoseg.core.workspace import Workspace
from autoseg.inference.model import fold_id
from autoseg.pipeline.fold_data import load_fold, prepare_results, result_folder
from autoseg.pipeline.fold_trainer import DEFAULT_TRAIN_OPTIONS, TrainOptions, build_trainer
from autoseg.pipeline.validation import validate_fold
from autoseg.training.distributed import shutdown_distributed


class InterruptedTraining(KeyboardInterrupt):
    """Ctrl-C while the fold trained (not while it was validated): the run can resume."""


def check_fold_folder(folder: Path, options: TrainOptions) -> Path | None:
    """The checkpoint to resume from, or None; refuses to silently restart a started run."""
    latest = FoldLayout(folder).checkpoint("latest")
    if options.continue_training:
        if not latest.is_file():
            print(f"--continue: no {latest} yet, starting from the beginning")
            return None
        return latest
    if latest.is_file() and not options.overwrite:
        raise InvalidInputError(
            f"{folder}: a run exists; use --continue to resume it or --overwrite to restart"
        )
    return None


def train_fold(
    workspace: Workspace,
    dataset_name: str,
    configuration: str,
    fold: int | str,
    options: TrainOptions = DEFAULT_TRAIN_OPTIONS,
) -> Path:
    """Train (or resume) fold ``fold`` (``0..4`` or ``"all"``) of a configuration.

    Args:
        workspace: raw / preprocessed / results roots.
        dataset_name: ``ATLAS`` (also ``Dataset012_ATLAS`` / ``12``).
        configuration: a configuration of the plans (``3d_hybrid``, ``2.5d_unet``, ``2d_lcnn``).
        fold: fold index of splits.json, or ``"all"`` (train on every case).
        options: flags that do not change the plans.

    Returns:
        The fold folder ``results/<NAME>/<CONFIG>/fold_<k>``; the caller runs the
        end-of-fold validation (``validate_fold``) on it.

    Raises:
        InvalidInputError: missing plans/caches, unknown configuration or fold, a resumed
            checkpoint from other plans, an existing run without --continue/--overwrite.
        TrainingInterrupted: a signal arrived; ``checkpoint_latest.pt`` was written.
    """
    ensure_writable_dir(workspace.results, "results folder")
    data = load_fold(workspace, dataset_name, configuration, fold)
    folder = ensure_writable_dir(result_folder(workspace, data, fold), "fold folder")
    if options.distributed.is_main:
        prepare_results(workspace, data, fold)
    resume = check_fold_folder(folder, options)
    trainer = build_trainer(workspace, data, fold, folder, options)
    if resume is not None:
        trainer.load_state_dict(load_checkpoint(resume, data.plans.plans_id, trainer.device))
    trainer.train()
    return folder


def fit_fold(
    workspace: Workspace,
    dataset_name: str,
    configuration: str,
    fold: int | str,
    options: TrainOptions = DEFAULT_TRAIN_OPTIONS,
    train: bool = True,
    validate: bool = True,
) -> dict[str, Any] | None:
    """Train a fold (unless ``train`` is False: ``--val-only``), end DDP, then validate it.

    Only rank 0 validates, after every rank has left the process group, so the other
    ranks exit while it predicts. Fold ``all`` has no held-out cases: it is validated on
    its own training cases only when asked alone (``--val-only``), since what that buys
    (postprocessing chosen on those cases) trades small lesions for fewer false ones.

    Returns:
        The validation summary, or None (not validated, another rank, or fold ``all``
        trained and not asked alone).

    Raises:
        InvalidInputError: see :func:`train_fold` and
            :func:`~autoseg.pipeline.validation.validate_fold`.
        TrainingInterrupted: a signal arrived during training (checkpoint written).
        InterruptedTraining: Ctrl-C during training.
    """
    try:
        if train:
            folder = train_fold(workspace, dataset_name, configuration, fold, options)
            print(f"trained -> {folder}")
    except KeyboardInterrupt as interrupt:
        raise InterruptedTraining() from interrupt
    finally:
        shutdown_distributed()
    if not validate or options.distributed.rank != 0:
        return None
    if train and fold_id(fold) == "all":
        print(
            "fold 'all' has no held-out cases; autoseg_train ... all --val-only validates it "
            "on its own training cases, for autoseg_find_best to choose postprocessing on"
        )
        return None
    return validate_fold(workspace, dataset_name, configuration, fold, device=options.device,
                         progress=options.progress)  # fmt: skip
