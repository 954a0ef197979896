"""Synthetic batches with a learnable pattern and tiny trainers, for the trainer tests."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

from autoseg.training.batches import Batch
from autoseg.training.callbacks import Callback, Checkpointer, CSVLog
from autoseg.training.losses import DeepSupervisionLoss, build_loss
from autoseg.training.optim import build_optimizer, build_schedule
from autoseg.training.trainer import Trainer, TrainSettings
from tests.networks.conftest import TINY, tiny_network

METADATA = {"plans_id": "plans-a", "configuration": "3d_hybrid", "network": {"name": "x"}}


def synthetic_batch(name: str, index: int, seed: int = 0, batch_size: int = 2) -> Batch:
    """Batch ``index``: foreground where a smooth random field is high; the image shows
    it brighter under noise, so a network can learn it in a few steps."""
    kwargs, patch, _ = TINY[name]
    generator = torch.Generator().manual_seed(seed * 100_003 + index)
    field = torch.rand(batch_size, 1, *[max(1, p // 4) for p in patch], generator=generator)
    mode = "trilinear" if len(patch) == 3 else "bilinear"
    field = torch.nn.functional.interpolate(field, size=patch, mode=mode, align_corners=False)
    target = (field > 0.6).long()  # (B, 1, *patch)
    noise = torch.randn(batch_size, kwargs["in_channels"], *patch, generator=generator)
    data = 0.5 * noise + 2.0 * target.float()
    return {"data": data, "target": target, "case_ids": [f"c{index}"] * batch_size}


class SyntheticBatches:
    """A provider whose batch ``n`` depends only on ``(seed, n)``, like the real loader."""

    def __init__(self, name: str, seed: int = 0, fail_at: int | None = None):
        self.name, self.seed, self.fail_at = name, seed, fail_at
        self.requests: list[tuple[int, int]] = []

    def for_epoch(self, epoch: int, start: int) -> Iterator[Batch]:
        self.requests.append((epoch, start))
        index = start
        while True:
            if index == self.fail_at:
                raise RuntimeError(f"synthetic failure at batch {index}")
            yield synthetic_batch(self.name, index, self.seed)
            index += 1

    def close(self) -> None:
        pass


def make_trainer(
    folder: Path | None,
    name: str = "3d_hybrid",
    epochs: int = 2,
    iterations: int = 3,
    callbacks: Sequence[Callback] = (),
    fail_at: int | None = None,
    optimizer: str = "sgd",
    lr: float = 1e-2,
    metadata: dict | None = None,
) -> Trainer:
    """A tiny trainer; with a folder it also checkpoints and logs there."""
    torch.manual_seed(0)
    model = tiny_network(name)
    loss = DeepSupervisionLoss(build_loss("dice_ce"))
    opt = build_optimizer(optimizer, model.parameters(), lr=lr)
    schedule = build_schedule("poly", epochs)
    validation = [synthetic_batch(name, 10_000 + i, seed=1) for i in range(2)]
    # full precision: the loop's tests must not depend on whether this CPU computes bf16
    settings = TrainSettings(epochs, iterations, amp=False, metadata=metadata or METADATA)
    extra = []
    if folder is not None:
        extra = [Checkpointer(folder, every_minutes=None), CSVLog(folder / "training_log.csv")]
    return Trainer(
        model,
        loss,
        opt,
        schedule,
        SyntheticBatches(name, fail_at=fail_at),
        validation,
        settings,
        torch.device("cpu"),
        callbacks=[*callbacks, *extra],
    )
