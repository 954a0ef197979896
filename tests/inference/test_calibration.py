"""Temperature scaling recovers a known temperature; ECE falls when it is applied."""

from __future__ import annotations

import numpy as np
import pytest

from autoseg.evaluation.calibration import CalibrationBins, expected_calibration_error
from autoseg.inference.calibration import (
    fit_temperature,
    log_probabilities,
    rescale_probabilities,
)


def synthetic(temperature: float, voxels: int = 200_000, classes: int = 2, seed: int = 0):
    """Logits and labels drawn from ``softmax(logits / temperature)``: a network whose
    probabilities are honest after dividing by ``temperature``."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 4.0, (classes, voxels))
    scaled = logits / temperature
    p = np.exp(scaled - scaled.max(axis=0))
    p /= p.sum(axis=0)
    labels = (rng.random(voxels)[None] > np.cumsum(p, axis=0)).sum(axis=0)
    return logits, labels


@pytest.mark.parametrize(("true", "classes"), [(2.5, 2), (0.6, 2), (1.7, 3)])
def test_fit_recovers_a_known_temperature(true: float, classes: int) -> None:
    logits, labels = synthetic(true, classes=classes)
    assert fit_temperature(logits, labels) == pytest.approx(true, rel=0.05)


def test_recovered_from_probabilities_alone() -> None:
    """Validation keeps probabilities: log p is the logits up to a per-voxel constant."""
    logits, labels = synthetic(2.0)
    p = np.exp(logits - logits.max(axis=0))
    p = (p / p.sum(axis=0)).astype(np.float16)
    assert fit_temperature(log_probabilities(p), labels) == pytest.approx(2.0, rel=0.05)


def test_rescaling_keeps_the_argmax_and_lowers_ece() -> None:
    logits, labels = synthetic(2.0, voxels=50_000)
    p = np.exp(logits - logits.max(axis=0))
    p /= p.sum(axis=0)
    calibrated = rescale_probabilities(p, 2.0)
    assert np.array_equal(np.argmax(p, axis=0), np.argmax(calibrated, axis=0))
    assert np.allclose(calibrated.sum(axis=0), 1.0)
    before, after = (
        expected_calibration_error(p, labels),
        expected_calibration_error(calibrated, labels),
    )
    assert after < 0.01 < before


def test_ece_accumulates_like_one_batch() -> None:
    logits, labels = synthetic(1.5, voxels=10_000)
    p = np.exp(logits) / np.exp(logits).sum(axis=0)
    bins = CalibrationBins()
    bins.add(p[:, :4000], labels[:4000])
    bins.add(p[:, 4000:], labels[4000:])
    assert bins.ece == pytest.approx(expected_calibration_error(p, labels))
    perfect = CalibrationBins(10)
    perfect.add(np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([0, 1]))
    assert perfect.ece == 0.0
