"""Per-epoch validation pseudo-Dice on held-out patches, and its moving average.

Like nnU-Net, true/false positives and false negatives are summed over every validation
patch before dividing, so patches without lesion cannot produce a 0/0 Dice; voxels
labelled -1 (outside the body) count for nothing.
"""

from __future__ import annotations

import math

import torch

EMA_OLD_WEIGHT = 0.9


def confusion_counts(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """TP, FP, FN per foreground class of the argmax prediction, ``(K-1, 3)`` float64.

    Args:
        logits: ``(B, K, *spatial)``.
        target: ``(B, 1, *spatial)`` integer labels, -1 = ignore.
    """
    prediction = logits.argmax(1)  # (B, *spatial)
    labels = target[:, 0]
    valid = labels >= 0
    rows = []
    for k in range(1, logits.shape[1]):
        predicted, actual = (prediction == k) & valid, (labels == k) & valid
        rows.append(
            [
                (predicted & actual).sum(),
                (predicted & ~actual).sum(),
                (~predicted & actual).sum(),
            ]
        )
    return torch.tensor([[float(v) for v in row] for row in rows], dtype=torch.float64)


def pseudo_dice(counts: torch.Tensor) -> float:
    """Mean foreground Dice ``2TP / (2TP + FP + FN)`` over the classes that occur.

    Returns NaN when no class occurs in reference or prediction (nothing to measure).
    """
    tp, fp, fn = counts[:, 0], counts[:, 1], counts[:, 2]
    denominator = 2 * tp + fp + fn
    present = denominator > 0
    if not present.any():
        return math.nan
    return float((2 * tp[present] / denominator[present]).mean())


def update_ema(old: float | None, new: float) -> float | None:
    """``0.9 * old + 0.1 * new``; the first value starts the average; NaN leaves it."""
    if math.isnan(new):
        return old
    if old is None:
        return new
    return EMA_OLD_WEIGHT * old + (1 - EMA_OLD_WEIGHT) * new
