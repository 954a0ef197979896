"""Mirroring test-time augmentation as a wrapper around a network function.

Each window is predicted as it is and mirrored along every chosen combination of axes; the
mirrored logits are flipped back and averaged. Wrapping the network (rather than flipping
the whole image) reuses one window extraction and one accumulation per window for all
mirrors, and since the Gaussian map is mirror-symmetric the result equals averaging whole
sliding-window predictions of flipped images.

Averaging is in logit space, like the sliding window itself: a network's own predictions
are combined as logits, different models (folds, configurations) as probabilities (see
:mod:`autoseg.inference.case_prediction`).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch

from autoseg.inference.sliding_window import NetworkFn, network_logits

Axes = tuple[int, ...]


def mirror_combinations(mirror_axes: Sequence[int]) -> list[Axes]:
    """Every subset of ``mirror_axes`` (``2 ** n`` of them), the identity first."""
    axes = tuple(sorted(set(int(a) for a in mirror_axes)))
    return [c for n in range(len(axes) + 1) for c in itertools.combinations(axes, n)]


def mirrored(network_fn: NetworkFn, combinations: Sequence[Axes]) -> NetworkFn:
    """A network function averaging the logits of the mirrored inputs.

    Args:
        network_fn: ``(B, C, *patch) -> (B, K, *patch)`` logits.
        combinations: axis subsets to mirror, each indexing the patch's spatial axes (0 is
            the first spatial axis: z for a 3D patch, y for a 2D one); ``()`` is the input
            as it is. Use :func:`mirror_combinations` for all of them.

    Returns:
        A function with ``network_fn``'s signature.
    """
    combinations = [tuple(c) for c in combinations] or [()]

    def predict(inputs: torch.Tensor) -> torch.Tensor:
        total: torch.Tensor | None = None
        for axes in combinations:
            dims = [a + 2 for a in axes]
            logits = network_logits(network_fn(inputs.flip(dims) if dims else inputs)).float()
            logits = logits.flip(dims) if dims else logits
            total = logits.clone() if total is None else total.add_(logits)
        return total / len(combinations)

    return predict
