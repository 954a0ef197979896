"""Figures of the report that are not overlays, and turning any figure into bytes.

Figures are :class:`matplotlib.figure.Figure` objects drawn with the Agg renderer and no
pyplot state, so they need no display and leave no global figure behind.
"""

from __future__ import annotations

import base64
import io
import math
from pathlib import Path

from matplotlib.figure import Figure

from autoseg.core.atomic import atomic_path

REPORT_DPI = 80
CURVE_COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")


def png_bytes(figure: Figure, dpi: int = REPORT_DPI) -> bytes:
    """The figure rendered as PNG bytes (Agg)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def data_uri(png: bytes) -> str:
    """A ``data:image/png;base64,...`` URI: the page needs no file beside it."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def figure_uri(figure: Figure, dpi: int = REPORT_DPI) -> str:
    """A figure as an inline PNG data URI."""
    return data_uri(png_bytes(figure, dpi))


def save_figure(figure: Figure, path: Path, dpi: int) -> Path:
    """Write the figure as a PNG, atomically (a reader never sees half a file)."""
    with atomic_path(path) as temp:
        temp.write_bytes(png_bytes(figure, dpi))
    return path


def lesion_volume_histogram(volumes_ml: list[float]) -> Figure:
    """Histogram of the total lesion volume per case (log-spaced bins: stroke lesions span
    three orders of magnitude); cases without a lesion are counted in the title."""
    figure = Figure(figsize=(6.0, 3.2), layout="constrained")
    axes = figure.subplots()
    positive = [v for v in volumes_ml if v > 0]
    if positive:
        low, high = math.log10(min(positive)), math.log10(max(positive))
        bins = [10 ** (low + (high - low + 1e-9) * i / 15) for i in range(16)]
        axes.hist(positive, bins=bins, color="tab:blue", edgecolor="white")
        axes.set_xscale("log")
    axes.set_xlabel("lesion volume per case (ml)")
    axes.set_ylabel("cases")
    empty = len(volumes_ml) - len(positive)
    axes.set_title(f"{len(volumes_ml)} cases, {empty} without lesion", fontsize=10)
    return figure


def _series(rows: list[dict[str, float]], key: str) -> list[float]:
    return [row.get(key, math.nan) for row in rows]


def training_curves(configuration: str, folds: dict[str, list[dict[str, float]]]) -> Figure:
    """Losses (left) and EMA pseudo-Dice (right) over epochs, one colour per fold.

    Args:
        configuration: configuration name, for the title.
        folds: ``{fold name: rows of training_log.csv}`` (rows map column to float).
    """
    figure = Figure(figsize=(10.0, 3.4), layout="constrained")
    losses, dice = figure.subplots(1, 2)
    for index, (fold, rows) in enumerate(sorted(folds.items())):
        color = CURVE_COLORS[index % len(CURVE_COLORS)]
        epochs = _series(rows, "epoch")
        losses.plot(epochs, _series(rows, "train_loss"), "-", color=color, label=f"{fold} train")
        losses.plot(epochs, _series(rows, "val_loss"), "--", color=color, label=f"{fold} val")
        dice.plot(epochs, _series(rows, "ema_dice"), "-", color=color, label=f"{fold} EMA")
        dice.plot(epochs, _series(rows, "pseudo_dice"), ":", color=color, alpha=0.6)
    losses.set_xlabel("epoch")
    losses.set_ylabel("loss")
    losses.legend(fontsize=7)
    dice.set_xlabel("epoch")
    dice.set_ylabel("pseudo-Dice (dotted) / EMA (solid)")
    dice.legend(fontsize=7)
    figure.suptitle(configuration, fontsize=11)
    return figure
