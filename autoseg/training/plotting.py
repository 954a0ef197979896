"""``progress.png``: the training curves of a run, drawn off-screen (Agg backend)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers; must precede pyplot
import matplotlib.pyplot as plt

from autoseg.core.atomic import atomic_path


def _column(history: list[dict[str, float]], key: str) -> list[float]:
    return [row.get(key, float("nan")) for row in history]


def plot_progress(history: list[dict[str, float]], path: Path) -> None:
    """Three panels over epochs: train/val loss with pseudo-Dice and EMA (right axis),
    the learning rate, and seconds per epoch. Written atomically."""
    epochs = _column(history, "epoch")
    figure, (top, middle, bottom) = plt.subplots(3, 1, figsize=(10, 11), sharex=True)
    top.plot(epochs, _column(history, "train_loss"), "b-", label="train loss")
    top.plot(epochs, _column(history, "val_loss"), "r-", label="val loss")
    top.set_ylabel("loss")
    dice = top.twinx()
    dice.plot(epochs, _column(history, "pseudo_dice"), "g:", label="pseudo-Dice")
    dice.plot(epochs, _column(history, "ema_dice"), "g-", label="pseudo-Dice (EMA)")
    dice.set_ylabel("pseudo-Dice")
    top.legend(loc="center left")
    dice.legend(loc="center right")
    middle.plot(epochs, _column(history, "lr"), "k-")
    middle.set_ylabel("learning rate")
    bottom.plot(epochs, _column(history, "epoch_seconds"), "m-")
    bottom.set_ylabel("seconds per epoch")
    bottom.set_xlabel("epoch")
    figure.tight_layout()
    with atomic_path(path) as temp:
        figure.savefig(temp, dpi=80)
    plt.close(figure)
