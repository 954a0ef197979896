"""Temperature scaling: one scalar per configuration that makes its probabilities honest.

A network's softmax is usually over-confident. Dividing its logits by a temperature
``T > 0`` before the softmax (Guo et al. 2017) keeps every argmax (the labels do not
change) and moves the probabilities toward what cross-validation observes. ``T`` is
fitted by minimising the negative log-likelihood of the reference labels on the
configuration's validation voxels (:func:`fit_temperature`); prediction applies it to
each fold's logits before the softmax, before folds are averaged
(:attr:`~autoseg.inference.settings.InferenceSettings.temperature`).

Validation saves probabilities, not logits. ``log p`` equals the logits minus a
per-voxel constant (the log-sum-exp), and softmax ignores such a constant, so
``softmax(log p / T)`` is exactly the softmax of the logits divided by ``T``
(:func:`rescale_probabilities`); only float16 rounding of tiny probabilities is lost,
which :data:`LOG_FLOOR` bounds.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import logsumexp

LOG_FLOOR = 1e-7  # float16 probabilities below this are rounding, not information
TEMPERATURE_BOUNDS = (0.05, 20.0)


def log_probabilities(probabilities: np.ndarray) -> np.ndarray:
    """``log p`` (float64) with probabilities floored at :data:`LOG_FLOOR`."""
    return np.log(np.clip(probabilities.astype(np.float64), LOG_FLOOR, 1.0))


def scaled_log_softmax(logits: np.ndarray, temperature: float) -> np.ndarray:
    """``log softmax(logits / T)`` over axis 0."""
    scaled = logits / temperature
    return scaled - logsumexp(scaled, axis=0, keepdims=True)


def rescale_probabilities(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities ``(K, ...)`` as if the logits had been divided by ``temperature``."""
    if temperature == 1.0:
        return probabilities
    scaled = scaled_log_softmax(log_probabilities(probabilities), temperature)
    return np.exp(scaled).astype(probabilities.dtype)


def temperature_nll(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    """Mean negative log-likelihood of ``labels (N,)`` under ``softmax(logits (K, N) / T)``."""
    scaled = logits / temperature
    picked = np.take_along_axis(scaled, labels[None].astype(np.int64), axis=0)[0]
    return float(np.mean(logsumexp(scaled, axis=0) - picked))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature minimising the NLL of ``labels (N,)`` under ``logits (K, N)``.

    ``log T`` is searched on :data:`TEMPERATURE_BOUNDS` (bounded Brent): the NLL is
    smooth and unimodal in ``log T`` for the usual case of a single fitted scalar.
    """
    if labels.size == 0:
        return 1.0
    low, high = (np.log(b) for b in TEMPERATURE_BOUNDS)
    result = minimize_scalar(lambda t: temperature_nll(logits, labels, float(np.exp(t))),
                             bounds=(low, high), method="bounded",
                             options={"xatol": 1e-5})  # fmt: skip
    return float(np.exp(result.x))
