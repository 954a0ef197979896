"""Callbacks: CSV log, progress plot, early stopping, time budget, signal checkpoint."""

from __future__ import annotations

import csv
import os
import signal
from pathlib import Path

import pytest
import torch

from autoseg.training import callbacks as cb
from autoseg.training.callbacks import (
    Callback,
    EarlyStopping,
    ProgressPlot,
    SignalCheckpoint,
    TimeBudget,
)
from autoseg.training.checkpoint import load_checkpoint
from autoseg.training.trainer import EXIT_INTERRUPTED, TrainingInterrupted
from tests.training.trainer_helpers import make_trainer


def test_csv_log_and_progress_plot(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path, "2.5d_unet", epochs=2, iterations=2,
                           callbacks=[ProgressPlot(tmp_path / "progress.png")])  # fmt: skip
    state = trainer.train()
    rows = list(csv.reader((tmp_path / "training_log.csv").open()))
    assert rows[0] == ["epoch", "train_loss", "val_loss", "pseudo_dice", "ema_dice", "lr",
                       "epoch_seconds"]  # fmt: skip
    assert [r[0] for r in rows[1:]] == ["0", "1"]
    assert float(rows[2][1]) == pytest.approx(state.history[1]["train_loss"], rel=1e-5)
    assert float(rows[2][5]) == pytest.approx(0.01 * 0.5**0.9, rel=1e-5)  # poly at epoch 1
    png = (tmp_path / "progress.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000


class FlatDice(Callback):
    """Pretend the EMA never improves after the first epoch."""

    def after_epoch(self) -> None:
        self.trainer.state.ema_dice = 0.5


def test_early_stopping_ends_the_run_and_writes_final(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path, "2.5d_unet", epochs=10, iterations=1,
                           callbacks=[FlatDice(), EarlyStopping(patience=2)])  # fmt: skip
    state = trainer.train()
    assert state.epoch == 3  # epoch 0 sets the best; 1 and 2 do not improve
    assert load_checkpoint(tmp_path / "checkpoint_final.pt")["epoch"] == 3


def test_time_budget_stops_after_the_current_step(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path, "2.5d_unet", epochs=5, iterations=4,
                           callbacks=[TimeBudget(max_minutes=0)])  # fmt: skip
    state = trainer.train()
    assert (state.epoch, state.iteration) == (1, 1)
    assert (tmp_path / "checkpoint_final.pt").is_file()


class TenSecondEpochs(Callback):
    """A clock that advances 10 s per epoch, whatever the machine's speed."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def after_epoch(self) -> None:
        self.now += 10.0


def test_time_budget_fits_the_run_and_its_lr_decay_to_the_budget(tmp_path: Path) -> None:
    clock = TenSecondEpochs()
    budget = TimeBudget(max_minutes=35 / 60, clock=clock)  # room for 3 epochs
    trainer = make_trainer(tmp_path, "2.5d_unet", epochs=20, iterations=1,
                           callbacks=[clock, budget])  # fmt: skip
    state = trainer.train()
    assert state.fitted_epochs == state.epoch == 3
    lrs = [row["lr"] for row in state.history]
    assert lrs[1] == pytest.approx(lrs[0] * (2 / 3) ** 0.9)  # poly over 3 epochs, not 20
    assert (tmp_path / "checkpoint_final.pt").is_file()


class SendSignal(Callback):
    def __init__(self, at_iteration: int):
        self.at = at_iteration

    def after_step(self) -> None:
        if self.trainer.state.iteration == self.at:
            os.kill(os.getpid(), signal.SIGUSR1)


def test_sigusr1_checkpoints_mid_epoch_and_interrupts(tmp_path: Path) -> None:
    handler_before = signal.getsignal(signal.SIGUSR1)
    trainer = make_trainer(tmp_path, "2.5d_unet", epochs=3, iterations=3,
                           callbacks=[SendSignal(4), SignalCheckpoint()])  # fmt: skip
    with pytest.raises(TrainingInterrupted):
        trainer.train()
    latest = load_checkpoint(tmp_path / "checkpoint_latest.pt")
    assert (latest["epoch"], latest["iteration"], latest["epoch_step"]) == (1, 4, 1)
    assert not (tmp_path / "checkpoint_final.pt").exists()
    assert signal.getsignal(signal.SIGUSR1) == handler_before  # handler restored
    assert EXIT_INTERRUPTED not in (0, 1, 2)


def test_yield_to_neighbours_gives_back_the_cores_others_use(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from types import SimpleNamespace

    calls: list[tuple[int, float]] = []

    def record(reserve: int = 0, busy_elsewhere: float = 0.0) -> None:
        calls.append((reserve, busy_elsewhere))

    monkeypatch.setattr(cb, "cpu_threads", record)
    hook = cb.YieldToNeighbours(probe=SimpleNamespace(cores=lambda: 1.3))
    single = SimpleNamespace(world_size=1)
    hook.trainer = SimpleNamespace(
        device=torch.device("cpu"), context=single, batches=SimpleNamespace(num_workers=1)
    )
    hook.before_epoch()
    assert calls == [(1, 1.3)]  # the loader's worker reserved, 1.3 cores yielded
    hook.trainer.context = SimpleNamespace(world_size=2)  # DDP ranks would count each other
    hook.before_epoch()
    hook.trainer.context, hook.trainer.device = SimpleNamespace(world_size=1), torch.device("meta")
    hook.before_epoch()
    assert calls == [(1, 1.3)]
