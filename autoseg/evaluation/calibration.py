"""How well predicted probabilities match observed frequencies (numpy only).

Expected calibration error (ECE, Guo et al. 2017) over voxels: voxels are binned by the
confidence of their predicted class (the largest probability) into equal-width bins;
ECE = sum over bins of (bin share of voxels) * |accuracy in bin - mean confidence in bin|.
0 is perfect; a network that says 0.99 where it is right 80 % of the time scores about
0.19 on those voxels. :class:`CalibrationBins` accumulates case by case, so a whole
cross-validation set never has to be in memory at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

DEFAULT_BINS = 15


@dataclass
class CalibrationBins:
    """Running per-bin voxel counts, confidence sums and correct counts."""

    bins: int = DEFAULT_BINS
    counts: np.ndarray = field(init=False)
    confidence: np.ndarray = field(init=False)
    correct: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.counts = np.zeros(self.bins, np.int64)
        self.confidence = np.zeros(self.bins, np.float64)
        self.correct = np.zeros(self.bins, np.float64)

    def add(self, probabilities: np.ndarray, labels: np.ndarray) -> None:
        """Add voxels: ``probabilities (K, N)`` summing to 1 over K, ``labels (N,)``."""
        confidence = probabilities.max(axis=0).astype(np.float64)
        hit = np.argmax(probabilities, axis=0) == labels
        index = np.clip((confidence * self.bins).astype(np.int64), 0, self.bins - 1)
        self.counts += np.bincount(index, minlength=self.bins)
        self.confidence += np.bincount(index, weights=confidence, minlength=self.bins)
        self.correct += np.bincount(index, weights=hit.astype(np.float64), minlength=self.bins)

    @property
    def ece(self) -> float:
        """The expected calibration error of the voxels added (NaN when none were)."""
        total = self.counts.sum()
        if total == 0:
            return float("nan")
        used = self.counts > 0
        gap = np.abs(self.correct[used] - self.confidence[used]) / self.counts[used]
        return float((self.counts[used] / total * gap).sum())


def expected_calibration_error(
    probabilities: np.ndarray, labels: np.ndarray, bins: int = DEFAULT_BINS
) -> float:
    """ECE of ``probabilities (K, ...)`` against integer ``labels (...)``."""
    accumulator = CalibrationBins(bins)
    accumulator.add(probabilities.reshape(probabilities.shape[0], -1), labels.reshape(-1))
    return accumulator.ece


def negative_log_likelihood(log_probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Mean ``-log p(label)`` of ``log_probabilities (K, N)`` (normalised) and ``labels (N,)``."""
    picked = np.take_along_axis(log_probabilities, labels[None].astype(np.int64), axis=0)
    return float(-picked.mean())
