"""nnU-Net v2 trainer that trains for a wall-clock budget on the CPU (autoseg's peer).

This module runs inside nnU-Net's own environment, not autoseg's: ``nnunet_peer.py``
copies it into nnU-Net's package folder ``nnunetv2/training/nnUNetTrainer/``, where
nnU-Net looks for trainer classes, and selects it with ``nnUNetv2_train -tr
nnUNetTrainerTimeBudget``. nnU-Net's CLI has no time limit, so the budget comes from the
environment:

``NNUNET_BUDGET_MINUTES`` (required)
    training minutes, counted from the end of ``on_train_start`` (data loaders running,
    like autoseg's ``TimeBudget.before_train``) to the last training step.
``NNUNET_BUDGET_ITERATIONS`` / ``NNUNET_BUDGET_VAL_ITERATIONS`` (50 / 10)
    the per-epoch shape autoseg's CPU plans use, instead of nnU-Net's 250 / 50.
``NNUNET_BUDGET_EPOCH_CAP`` (1000)
    the most epochs a budget may be fitted to (nnU-Net's and autoseg's default length).
``NNUNET_BUDGET_FINAL_VALIDATION`` (0)
    1 runs nnU-Net's full sliding-window validation after training; by default it is
    skipped so that the budget buys training only.

The budget rule is autoseg's ``--max-minutes`` rule: after every epoch ``num_epochs``
becomes the epochs that the time left allows at the median epoch time so far, and the
poly LR schedule is stretched or shrunk to it, so the LR decays to its end inside the
budget instead of being cut off high. If time still runs out mid-epoch, training stops
after the current step and the final checkpoint is written at once; that last partial
epoch is neither validated nor logged (nnU-Net's loop cannot be shortened, and running
out its steps would still wait for its augmented batches, minutes per epoch on two
cores). ``budget_report.json`` in the fold folder records what the budget bought.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path

import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

BUDGET_ENV = "NNUNET_BUDGET_MINUTES"
ITERATIONS_ENV = "NNUNET_BUDGET_ITERATIONS"
VAL_ITERATIONS_ENV = "NNUNET_BUDGET_VAL_ITERATIONS"
EPOCH_CAP_ENV = "NNUNET_BUDGET_EPOCH_CAP"
FINAL_VALIDATION_ENV = "NNUNET_BUDGET_FINAL_VALIDATION"
REPORT_NAME = "budget_report.json"
CPU = torch.device("cpu")


class BudgetSpent(Exception):
    """Raised when the budget is spent (mid-epoch, or at an epoch end when no further
    epoch fits); ends nnU-Net's epoch loop, whose ranges are fixed when they start."""


def _env_number(name: str, default: float | None = None) -> float:
    """A number from the environment, failing loudly: nnU-Net's CLI cannot pass it."""
    value = os.environ.get(name)
    if value is None:
        if default is None:
            raise RuntimeError(f"{name} is not set: nnUNetTrainerTimeBudget needs a budget")
        return default
    return float(value)


def fitted_epochs(done: int, cap: int, seconds_left: float, epoch_seconds: list[float]) -> int:
    """The run's length in epochs that the time left allows at the median epoch time.

    The median, not the mean, so that one slow epoch (another job on the machine, the
    first epoch's warm-up) does not shorten the run; never more than ``cap`` and never
    fewer than the epochs already done (equal to ``done`` means: stop now).
    """
    per_epoch = statistics.median(epoch_seconds)
    return min(cap, done + max(0, int(seconds_left // per_epoch)))


class nnUNetTrainerTimeBudget(nnUNetTrainer):
    """nnUNetTrainer on the CPU whose epochs are fitted to ``NNUNET_BUDGET_MINUTES``."""

    def __init__(
        self,
        plans: dict,
        configuration: str,
        fold: int,
        dataset_json: dict,
        device: torch.device = CPU,
    ):
        # The comparison is on the CPU: a trainer that moved to a GPU when one appeared
        # would not be an equal-budget peer, so the device argument is overridden.
        super().__init__(plans, configuration, fold, dataset_json, CPU)
        self.budget_seconds = 60.0 * _env_number(BUDGET_ENV)
        self.num_iterations_per_epoch = int(_env_number(ITERATIONS_ENV, 50))
        self.num_val_iterations_per_epoch = int(_env_number(VAL_ITERATIONS_ENV, 10))
        self.num_epochs = int(_env_number(EPOCH_CAP_ENV, 1000))
        self.epoch_cap = self.num_epochs
        self.final_validation = _env_number(FINAL_VALIDATION_ENV, 0) == 1
        self.budget_started: float | None = None
        self.epoch_started = 0.0
        self.loop_end = self.num_epochs
        self.epoch_seconds: list[float] = []
        self.step_seconds: list[float] = []
        self.fitted_history: list[int] = []
        self.steps_done = 0
        self.partial_epoch_steps = 0
        self.stop_reason = "epoch_cap"

    def elapsed(self) -> float:
        """Seconds of the budget used so far (0 before training starts)."""
        return 0.0 if self.budget_started is None else time.monotonic() - self.budget_started

    def on_train_start(self) -> None:
        """Start the budget once the loaders run, as autoseg does, so both count training."""
        super().on_train_start()
        # nnU-Net's epoch loop is ``range(current_epoch, num_epochs)`` evaluated once, so
        # shortening num_epochs later cannot end it; remember where it ends.
        self.loop_end = self.num_epochs
        self.budget_started = time.monotonic()

    def on_epoch_start(self) -> None:
        self.epoch_started = time.monotonic()
        self.partial_epoch_steps = 0
        super().on_epoch_start()

    def train_step(self, batch: dict) -> dict:
        """One optimiser step (timed), unless the budget is spent: then stop training, as
        autoseg's TimeBudget does after the step that crosses it."""
        if self.elapsed() >= self.budget_seconds:
            self.stop_reason = "budget"
            raise BudgetSpent
        started = time.monotonic()
        result = super().train_step(batch)
        self.step_seconds.append(time.monotonic() - started)
        self.steps_done += 1
        self.partial_epoch_steps += 1
        return result

    def on_epoch_end(self) -> None:
        """nnU-Net's epoch end, then fit the run's length to the time left."""
        super().on_epoch_end()  # logs, checkpoints, increments current_epoch
        self.partial_epoch_steps = 0
        self.epoch_seconds.append(time.monotonic() - self.epoch_started)
        done = self.current_epoch
        left = self.budget_seconds - self.elapsed()
        fitted = fitted_epochs(done, self.epoch_cap, left, self.epoch_seconds)
        self.fitted_history.append(fitted)
        if fitted > done:
            self.num_epochs = fitted
            # PolyLRScheduler keeps its own copy of the length it decays over.
            self.lr_scheduler.max_steps = fitted
            return
        if done < self.epoch_cap:
            self.stop_reason = "budget"
        if done < self.loop_end:  # else nnU-Net's loop ends by itself
            raise BudgetSpent

    def run_training(self) -> None:
        """nnU-Net's loop, ended early by :class:`BudgetSpent` into the usual train end."""
        try:
            super().run_training()
        except BudgetSpent:
            self.on_train_end()

    def on_train_end(self) -> None:
        """nnU-Net's train end (final checkpoint), then what the budget bought."""
        train_seconds = self.elapsed()
        super().on_train_end()
        if self.local_rank == 0:
            self.write_report(train_seconds)

    def write_report(self, train_seconds: float) -> None:
        """``budget_report.json``: read by nnunet_peer.py's summary; atomic, so a reader
        never sees half a file."""
        dice = [float(v) for v in self.logger.get_value("mean_fg_dice", step=None)]
        ema = [float(v) for v in self.logger.get_value("ema_fg_dice", step=None)]
        report = {
            "budget_minutes": self.budget_seconds / 60.0,
            "train_seconds": train_seconds,
            "train_minutes": train_seconds / 60.0,
            "stop_reason": self.stop_reason,
            "epochs": self.current_epoch,
            "partial_epoch_iterations": self.partial_epoch_steps,
            "epoch_cap": self.epoch_cap,
            "iterations_per_epoch": self.num_iterations_per_epoch,
            "val_iterations_per_epoch": self.num_val_iterations_per_epoch,
            "iterations": self.steps_done,
            "epoch_seconds": self.epoch_seconds,
            "epoch_seconds_median": _median(self.epoch_seconds),
            "step_seconds_median": _median(self.step_seconds),
            "fitted_epochs_after_each_epoch": self.fitted_history,
            "final_lr": float(self.optimizer.param_groups[0]["lr"]),
            "pseudo_dice": dice,
            "ema_pseudo_dice": ema,
            "torch_threads": torch.get_num_threads(),
        }
        path = Path(self.output_folder) / REPORT_NAME
        temp = path.with_name(path.name + ".tmp")
        temp.write_text(json.dumps(report, indent=2))
        os.replace(temp, path)

    def perform_actual_validation(self, save_probabilities: bool = False) -> None:
        """Skipped unless asked for: a full sliding-window pass over every training case
        (fold ``all`` validates on the training set) would cost minutes outside the
        budget and measure nothing the benchmark uses."""
        if self.final_validation:
            super().perform_actual_validation(save_probabilities)
        else:
            self.print_to_log_file("final validation skipped (NNUNET_BUDGET_FINAL_VALIDATION)")


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None
