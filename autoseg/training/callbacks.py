"""Trainer hooks: checkpoints, CSV log, progress plot, early stopping, budgets, signals.

Every callback may implement ``before_train``, ``before_epoch``, ``before_step``,
``after_step``, ``after_epoch``, ``after_train`` (success only) and ``teardown`` (always,
also after an error); ``self.trainer`` is set when the Trainer is built. Callbacks run in
list order: flag-setting ones (signal, time budget, early stopping) go before the
checkpointing one so that it sees the flags in the same step. Only rank 0 gets the
file-writing callbacks; the flag-setting ones run on every rank and agree across ranks.
"""

from __future__ import annotations

import csv
import math
import signal
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from autoseg.core.atomic import atomic_path
from autoseg.core.checkpoint import save_checkpoint
from autoseg.core.cpu import cpu_threads
from autoseg.core.resources import BusyElsewhere
from autoseg.core.run_layout import FoldLayout
from autoseg.training.distributed import all_reduce_sum, any_rank

LOG_COLUMNS = ("epoch", "train_loss", "val_loss", "pseudo_dice", "ema_dice", "lr",
               "epoch_seconds")  # fmt: skip
GPU_COLUMN = "gpu_memory_gb"


class Callback:
    """No-op hooks; subclasses override what they need."""

    trainer: Any = None

    def before_train(self) -> None: ...
    def before_epoch(self) -> None: ...
    def before_step(self) -> None: ...
    def after_step(self) -> None: ...
    def after_epoch(self) -> None: ...
    def after_train(self) -> None: ...
    def teardown(self) -> None: ...


class Checkpointer(Callback):
    """``checkpoint_latest.pt`` every epoch, every ``every_minutes`` mid-epoch and on an
    interrupt; ``checkpoint_best.pt`` when the EMA pseudo-Dice improves;
    ``checkpoint_final.pt`` at the end.

    Args:
        folder: the fold folder.
        every_minutes: wall-clock interval of mid-epoch saves (None: epoch ends only).
    """

    def __init__(self, folder: Path, every_minutes: float | None = 30.0):
        self.folder = Path(folder)
        self.every_seconds = None if every_minutes is None else 60.0 * every_minutes
        self.last_save = time.monotonic()

    def save(self, name: str) -> None:
        save_checkpoint(FoldLayout(self.folder).checkpoint(name), self.trainer.state_dict())
        self.last_save = time.monotonic()

    def after_step(self) -> None:
        due = self.every_seconds is not None
        due = due and time.monotonic() - self.last_save >= self.every_seconds
        if self.trainer.state.interrupt or due:
            self.save("latest")

    def after_epoch(self) -> None:
        state = self.trainer.state
        ema = state.ema_dice
        if ema is not None and (state.best_ema_dice is None or ema > state.best_ema_dice):
            state.best_ema_dice = ema
            self.save("best")
        self.save("latest")

    def after_train(self) -> None:
        self.save("final")


class CSVLog(Callback):
    """``training_log.csv``, rewritten from the run's history after every epoch, so a
    resumed run's log holds exactly the epochs its checkpoint knows about."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def after_epoch(self) -> None:
        history = self.trainer.state.history
        columns = list(LOG_COLUMNS) + ([GPU_COLUMN] if GPU_COLUMN in history[-1] else [])
        with atomic_path(self.path) as temp, temp.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(columns)
            for row in history:
                writer.writerow([_cell(column, row.get(column)) for column in columns])


def _cell(column: str, value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(int(value)) if column == "epoch" else f"{value:.6g}"


class ProgressPlot(Callback):
    """``progress.png``: losses with pseudo-Dice and its EMA, the LR, the epoch time."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def after_epoch(self) -> None:
        from autoseg.training.plotting import plot_progress

        plot_progress(self.trainer.state.history, self.path)


class EarlyStopping(Callback):
    """Stop when the EMA pseudo-Dice has not improved by ``min_delta`` for ``patience``
    epochs (the run then ends normally and writes its final checkpoint)."""

    def __init__(self, patience: int = 50, min_delta: float = 0.0):
        self.patience, self.min_delta = patience, min_delta
        self.best: float | None = None
        self.stale = 0

    def after_epoch(self) -> None:
        ema = self.trainer.state.ema_dice
        if ema is not None and (self.best is None or ema > self.best + self.min_delta):
            self.best, self.stale = ema, 0
        else:
            self.stale += 1
        if self.stale >= self.patience:
            self.trainer.state.stop = True


class TimeBudget(Callback):
    """Fit the run to ``max_minutes`` of training.

    After every epoch the run's length is set to the epochs that the time left allows at
    the median epoch time so far (never more than the run's epochs), so the LR schedule decays to
    its end inside the budget instead of being cut off at a high LR. If time still runs
    out, the current epoch stops after this step, is validated and logged, and the final
    checkpoint is written.
    """

    def __init__(self, max_minutes: float, clock: Callable[[], float] = time.monotonic):
        self.seconds, self.clock = 60.0 * max_minutes, clock
        self.started = clock()
        self.epoch_started = self.started
        self.durations: list[float] = []

    def before_train(self) -> None:
        self.started = self.clock()

    def before_epoch(self) -> None:
        self.epoch_started = self.clock()

    def after_step(self) -> None:
        over = self.clock() - self.started >= self.seconds
        if any_rank(over, self.trainer.context):
            self.trainer.state.stop = True

    def after_epoch(self) -> None:
        self.durations.append(self.clock() - self.epoch_started)
        left = self.seconds - (self.clock() - self.started)
        per_epoch = mean_over_ranks(statistics.median(self.durations), self.trainer.context)
        state, planned = self.trainer.state, self.trainer.settings.epochs
        state.fitted_epochs = min(planned, state.epoch + max(0, int(left // per_epoch)))


class YieldToNeighbours(Callback):
    """Before each epoch on the CPU, give back to other busy processes the cores they use.

    A training job beside another CPU-heavy job runs its OpenMP pool on cores the
    scheduler shares, and every parallel region spins for the thread set aside (measured:
    a 3d_hybrid step 15x slower beside a 2-thread matmul, 2x with one thread fewer). The
    loader's workers are this job's own children, counted out and reserved for already.
    Single-process runs only: DDP ranks on one CPU host would each count the others.
    """

    def __init__(self, probe: BusyElsewhere | None = None) -> None:
        self.probe = probe if probe is not None else BusyElsewhere(children=True)

    def before_epoch(self) -> None:
        trainer = self.trainer
        if trainer.device.type != "cpu" or getattr(trainer.context, "world_size", 1) > 1:
            return
        workers = int(getattr(trainer.batches, "num_workers", 0))
        cpu_threads(reserve=workers, busy_elsewhere=self.probe.cores())


def mean_over_ranks(value: float, context: Any) -> float:
    """Ranks must agree on the run's length, so they share one epoch time."""
    total = all_reduce_sum(torch.tensor([value], dtype=torch.float64), context)
    return float(total.item()) / max(1, getattr(context, "world_size", 1))


class SignalCheckpoint(Callback):
    """Checkpoint and stop on SIGUSR1 / SIGTERM (SLURM's warning before a time limit or
    preemption): the handler only sets a flag; after the current step the Checkpointer
    saves ``checkpoint_latest.pt`` and the Trainer raises TrainingInterrupted."""

    def __init__(self, signals: tuple[int, ...] = (signal.SIGUSR1, signal.SIGTERM)):
        self.signals = signals
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, _frame: object) -> None:
        self.received = signum

    def before_train(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # handlers can only be installed from the main thread
        for signum in self.signals:
            self._previous[signum] = signal.signal(signum, self._handle)

    def after_step(self) -> None:
        if any_rank(self.received is not None, self.trainer.context):
            self.trainer.state.interrupt = True

    def teardown(self) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()


class ProgressBar(Callback):
    """A tqdm bar per epoch and a one-line summary after it."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self.bar: tqdm | None = None

    def before_epoch(self) -> None:
        state, settings = self.trainer.state, self.trainer.settings
        self.bar = tqdm(
            total=settings.iterations_per_epoch,
            initial=state.epoch_step,
            desc=f"epoch {state.epoch + 1}/{self.trainer.epochs}",
            disable=not self.enabled,
            leave=False,
        )

    def after_step(self) -> None:
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{self.trainer.state.epoch_losses[-1]:.4f}")

    def after_epoch(self) -> None:
        self.bar.close()
        m = self.trainer.metrics
        if self.enabled:
            tqdm.write(
                f"epoch {int(m['epoch'])}: train {m['train_loss']:.4f} val {m['val_loss']:.4f} "
                f"pseudo-Dice {m['pseudo_dice']:.4f} EMA {m['ema_dice']:.4f} "
                f"lr {m['lr']:.2e} {m['epoch_seconds']:.1f}s"
            )

    def teardown(self) -> None:
        if self.bar is not None:
            self.bar.close()
