"""The training loop: epochs of steps, with callbacks around each (detectron2-style).

The Trainer only runs the loop and one optimisation step; the network, loss, optimiser,
LR schedule and batches are built elsewhere (``autoseg.pipeline.fold_trainer``) and passed
in, and checkpointing, logging, plotting, early stopping, time budgets, signals and
trackers are :mod:`~autoseg.training.callbacks`. A run is resumable at any step: the state
records the global iteration, and batch ``n`` of the loader depends only on ``(seed, n)``.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from autoseg.core import checkpoint
from autoseg.core.cpu import flushed_denormals
from autoseg.networks.base import channels_last
from autoseg.plans import TrainingSchedule
from autoseg.training.batches import Batch, BatchProvider
from autoseg.training.distributed import SINGLE, DistContext, all_reduce_sum, unwrap
from autoseg.training.metrics import confusion_counts, pseudo_dice, update_ema
from autoseg.training.optim import LRSchedule
from autoseg.training.speed import (
    DEFAULT_LEVERS,
    CompiledOrEager,
    SpeedLevers,
    autocast_dtype,
    backend_flags,
)

EXIT_INTERRUPTED = 75  # EX_TEMPFAIL: checkpointed on a signal, run again with --continue

SCHEDULE = TrainingSchedule()  # the plans' defaults, declared in autoseg.plans


class TrainingInterrupted(Exception):
    """Raised after a signal-triggered checkpoint; the CLI exits with EXIT_INTERRUPTED."""


@dataclass
class TrainState:
    """Everything about progress that a checkpoint must carry to resume the same curve."""

    epoch: int = 0  # finished epochs
    iteration: int = 0  # optimiser steps done (= next batch number)
    epoch_step: int = 0  # steps done in the unfinished epoch
    epoch_losses: list[float] = field(default_factory=list)
    ema_dice: float | None = None
    best_ema_dice: float | None = None
    history: list[dict[str, float]] = field(default_factory=list)
    fitted_epochs: int | None = None  # the run's length once fitted to a time budget
    stop: bool = False  # finish this epoch, then end the run (early stop, time budget)
    interrupt: bool = False  # end right after this step (signal)

    def to_dict(self) -> dict[str, Any]:
        keys = ("epoch", "iteration", "epoch_step", "epoch_losses", "ema_dice", "best_ema_dice",
                "fitted_epochs")  # fmt: skip
        return {**{k: getattr(self, k) for k in keys}, "history": list(self.history)}


@dataclass(frozen=True)
class TrainSettings:
    """Loop settings (from the plans' ``training`` entry and the flags).

    Attributes:
        epochs: epochs of the run.
        iterations_per_epoch: optimiser steps per epoch.
        amp: mixed precision on CUDA (bf16 where supported, else fp16 with a GradScaler).
        gradient_clip: max gradient norm (None: no clipping).
        auxiliary_weight: weight of the network's ``auxiliary_loss()`` when it has one.
        channels_last: 3D batches in channels-last memory order (the model's 3D weights
            must be so too; see :func:`~autoseg.networks.base.channels_last`).
        metadata: plain values every checkpoint records (plans_id, configuration, network).
        levers: how fast a step runs (precision, cuDNN autotuning, compile); the caller
            builds the optimiser, loader and channels-last weights to match.
    """

    epochs: int
    iterations_per_epoch: int
    amp: bool = SCHEDULE.amp
    gradient_clip: float | None = SCHEDULE.gradient_clip
    auxiliary_weight: float = SCHEDULE.auxiliary_loss_weight
    channels_last: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)
    levers: SpeedLevers = DEFAULT_LEVERS


def amp_dtype(
    device: torch.device, enabled: bool, levers: SpeedLevers = DEFAULT_LEVERS
) -> torch.dtype | None:
    """bf16 on CUDA when supported (no loss scaling needed), else fp16; on a CPU bf16 where
    it is faster than float32; the ``precision`` lever can force a type, or full precision."""
    return autocast_dtype(levers, device, enabled)


class Trainer:
    """Runs epochs of ``iterations_per_epoch`` steps, validating after each epoch.

    Args:
        model: the network (DDP-wrapped when distributed), on ``device``.
        loss: ``loss(outputs, target)``, e.g. a DeepSupervisionLoss; its ``.loss`` (when
            present) scores the validation logits.
        optimizer: over the trainable parameters.
        schedule: LR factor per epoch.
        batches: training batches (``for_epoch(epoch, start)``).
        validation: held-out batches, the same every epoch.
        settings: loop settings.
        device: where the model lives.
        callbacks: hooks called in order (see :class:`~autoseg.training.callbacks.Callback`).
        context: this process's place in a DDP run.
        batch_transform: applied to each training batch after its host-to-device copy
            (e.g. :func:`~autoseg.training.device_augmentation.augment_on_device`).
    """

    def __init__(
        self,
        model: nn.Module,
        loss: nn.Module,
        optimizer: torch.optim.Optimizer,
        schedule: LRSchedule,
        batches: BatchProvider,
        validation: Iterable[Batch],
        settings: TrainSettings,
        device: torch.device,
        callbacks: Sequence[Any] = (),
        context: DistContext = SINGLE,
        batch_transform: Callable[[Batch], Batch] | None = None,
    ):
        self.batch_transform = batch_transform
        self.model, self.loss, self.optimizer, self.schedule = model, loss, optimizer, schedule
        self.batches, self.validation, self.settings = batches, validation, settings
        self.device, self.context = device, context
        self.network = unwrap(model)
        self.dtype = amp_dtype(device, settings.amp, settings.levers)
        self.compiled = CompiledOrEager(model, settings.levers.compile)
        use_scaler = self.dtype == torch.float16
        self.scaler = torch.amp.GradScaler(device.type, enabled=use_scaler)
        self.state = TrainState()
        self.metrics: dict[str, float] = {}
        self.lr = 0.0
        self.callbacks = list(callbacks)
        for callback in self.callbacks:
            callback.trainer = self

    @property
    def epochs(self) -> int:
        """The run's length: the planned epochs, or fewer when fitted to a time budget."""
        return self.state.fitted_epochs or self.settings.epochs

    def call(self, hook: str) -> None:
        for callback in self.callbacks:
            getattr(callback, hook)()

    def train(self) -> TrainState:
        """Run (or continue) the remaining epochs; ``after_train`` runs on success only, so
        a crashed run keeps its last ``checkpoint_latest.pt`` and writes no final one."""
        self.call("before_train")
        try:
            with flushed_denormals(self.device), backend_flags(self.settings.levers, self.device):
                while self.state.epoch < self.epochs and not self.state.stop:
                    self.run_epoch()
            self.call("after_train")
        finally:
            self.batches.close()
            self.call("teardown")
        return self.state

    def run_epoch(self) -> None:
        """One epoch: steps (from ``epoch_step`` on a resume), validation, epoch hooks."""
        self.call("before_epoch")
        self.lr = self.schedule.apply(self.optimizer, self.state.epoch, self.epochs)
        started = time.perf_counter()
        batches = self.batches.for_epoch(self.state.epoch, self.state.iteration)
        while self.state.epoch_step < self.settings.iterations_per_epoch:
            self.call("before_step")
            self.state.epoch_losses.append(self.train_step(next(batches)))
            self.state.iteration += 1
            self.state.epoch_step += 1
            self.call("after_step")
            if self.state.interrupt:  # flags are agreed across ranks by the callbacks
                raise TrainingInterrupted(f"checkpointed at iteration {self.state.iteration}")
            if self.state.stop:
                break
        self.metrics = {**self._epoch_summary(started), **self.evaluate()}
        self.state.ema_dice = update_ema(self.state.ema_dice, self.metrics["pseudo_dice"])
        self.metrics["ema_dice"] = _nan_if_none(self.state.ema_dice)
        self.state.history.append(dict(self.metrics))
        self.state.epoch += 1
        self.state.epoch_step, self.state.epoch_losses = 0, []
        self.call("after_epoch")

    def _epoch_summary(self, started: float) -> dict[str, float]:
        losses = torch.tensor([sum(self.state.epoch_losses), len(self.state.epoch_losses)])
        total, count = all_reduce_sum(losses.double(), self.context).tolist()
        summary = {
            "epoch": float(self.state.epoch),
            "train_loss": total / max(count, 1),
            "lr": float(self.lr),
            "epoch_seconds": time.perf_counter() - started,
        }
        if self.device.type == "cuda":
            summary["gpu_memory_gb"] = torch.cuda.max_memory_allocated(self.device) / 2**30
            torch.cuda.reset_peak_memory_stats(self.device)
        return summary

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def train_step(self, batch: Batch) -> float:
        """Forward, deep-supervision loss (+ auxiliary loss), backward, clip, step (on the
        compiled model when the ``compile`` lever is on and compiling works)."""
        return self.compiled.run(lambda model: self._step(model, batch))

    def _step(self, model: nn.Module, batch: Batch) -> float:
        self.model.train()
        batch = {**batch, "data": batch["data"].to(self.device, non_blocking=True),
                 "target": batch["target"].to(self.device, non_blocking=True)}  # fmt: skip
        if self.batch_transform is not None:
            batch = self.batch_transform(batch)
        data = self._inputs(batch["data"])  # (B, C, *patch)
        target = batch["target"]  # (B, 1, *patch)
        self.optimizer.zero_grad(set_to_none=True)
        with self.autocast():
            loss = self.loss(model(data), target)
            auxiliary = getattr(self.network, "auxiliary_loss", None)
            if auxiliary is not None and self.settings.auxiliary_weight:
                loss = loss + self.settings.auxiliary_weight * auxiliary()
        self.scaler.scale(loss).backward()
        if self.settings.gradient_clip:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.settings.gradient_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return float(loss.detach())

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Validation loss and pseudo-Dice over this rank's share of the held-out batches,
        summed over ranks."""
        self.network.eval()
        score = getattr(self.loss, "loss", self.loss)
        counts, loss_sum, seen = None, 0.0, 0
        for index, batch in enumerate(self.validation):
            if index % self.context.world_size != self.context.rank:
                continue
            data, target = self._inputs(batch["data"]), batch["target"].to(self.device)
            with self.autocast():
                logits = self.network(data)  # (B, K, *patch)
            loss_sum += float(score(logits.float(), target))
            seen += 1
            batch_counts = confusion_counts(logits, target)
            counts = batch_counts if counts is None else counts + batch_counts
        self.network.train()
        losses = all_reduce_sum(
            torch.tensor([loss_sum, float(seen)], dtype=torch.float64), self.context
        )
        if counts is None:
            counts = torch.zeros(self._classes() - 1, 3, dtype=torch.float64)
        counts = all_reduce_sum(counts, self.context)
        val_loss = float(losses[0] / losses[1]) if losses[1] > 0 else math.nan
        return {"val_loss": val_loss, "pseudo_dice": pseudo_dice(counts)}

    def _inputs(self, data: torch.Tensor) -> torch.Tensor:
        data = data.to(self.device, non_blocking=True)
        return channels_last(data) if self.settings.channels_last else data

    def _classes(self) -> int:
        return int(getattr(self.network, "num_classes", 2))

    def state_dict(self) -> dict[str, Any]:
        """The checkpoint payload: tensors and plain types only."""
        return {
            "model": self.network.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "grad_scaler": self.scaler.state_dict(),
            "scheduler": {"name": self.schedule.name, "epoch": self.state.epoch},
            "rng": checkpoint.rng_state(),
            **self.state.to_dict(),
            **self.settings.metadata,
        }

    def load_state_dict(self, payload: dict[str, Any]) -> None:
        """Continue from a checkpoint written by :meth:`state_dict`."""
        self.network.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        if payload.get("grad_scaler"):
            self.scaler.load_state_dict(payload["grad_scaler"])
        checkpoint.set_rng_state(payload["rng"])
        fields = TrainState().to_dict()
        self.state = TrainState(**{k: payload.get(k, v) for k, v in fields.items()})


def _nan_if_none(value: float | None) -> float:
    return math.nan if value is None else float(value)
