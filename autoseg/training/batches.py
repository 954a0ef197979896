"""Where the Trainer's batches come from, and progressive patch growth.

The Trainer asks for the batches of an epoch with the index of the first batch it needs
(its global iteration), so a resumed run continues the exact batch sequence of the
loader (whose batch ``n`` depends only on ``(seed, n)``). A provider rebuilds its loader
only when the patch size changes (progressive growth) or on resume.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

Batch = dict[str, Any]


class BatchProvider(Protocol):
    """What the Trainer needs from a data pipeline."""

    def for_epoch(self, epoch: int, start: int) -> Iterator[Batch]:
        """Batches of ``epoch`` beginning with batch number ``start`` of the sequence."""

    def close(self) -> None:
        """Stop background workers."""


@dataclass(frozen=True)
class PatchGrowth:
    """Train on smaller patches first and grow to the planned patch (faster early epochs,
    when the network learns coarse features that need little context).

    The patch grows linearly per axis from ``start_fraction`` of the planned patch at
    epoch 0 to the full patch at ``grow_fraction * epochs``, each size rounded down to a
    multiple of the network's divisor on that axis (never below one divisor).

    Attributes:
        patch_size: the planned patch.
        divisors: per-axis factor every patch size must be a multiple of.
        epochs: length of the run.
        start_fraction: first patch as a fraction of the planned one (1.0 = off).
        grow_fraction: part of the run over which the patch grows.
    """

    patch_size: tuple[int, ...]
    divisors: tuple[int, ...]
    epochs: int
    start_fraction: float = 1.0
    grow_fraction: float = 0.3

    def patch_for(self, epoch: int) -> tuple[int, ...]:
        """The patch of ``epoch``."""
        ramp = max(1.0, self.grow_fraction * self.epochs)
        progress = min(1.0, epoch / ramp)
        fraction = self.start_fraction + (1.0 - self.start_fraction) * progress
        return tuple(
            min(p, max(d, math.floor(p * fraction / d) * d))
            for p, d in zip(self.patch_size, self.divisors, strict=True)
        )


class LoaderBatches:
    """A provider over a loader factory ``make(patch_size, start) -> iterator``.

    Args:
        make: builds the loader (e.g. a partial of ``make_training_loader``).
        growth: patch schedule; None trains at ``patch_size`` throughout.
        patch_size: the planned patch (used when ``growth`` is None).
    """

    def __init__(
        self,
        make: Callable[[Sequence[int], int], Iterator[Batch]],
        patch_size: Sequence[int],
        growth: PatchGrowth | None = None,
    ):
        self.make, self.growth = make, growth
        self.patch_size = tuple(patch_size)
        self._loader: Iterator[Batch] | None = None
        self._patch: tuple[int, ...] | None = None
        self._next: int | None = None

    def patch_for(self, epoch: int) -> tuple[int, ...]:
        return self.patch_size if self.growth is None else self.growth.patch_for(epoch)

    def for_epoch(self, epoch: int, start: int) -> Iterator[Batch]:
        patch = self.patch_for(epoch)
        if self._loader is None or patch != self._patch or start != self._next:
            self.close()
            self._loader, self._patch = self.make(patch, start), patch
        self._next = start
        return self._counting()

    def _counting(self) -> Iterator[Batch]:
        """Track the next batch number so a continuing epoch reuses the running loader."""
        for batch in self._loader:
            self._next += 1
            yield batch

    def close(self) -> None:
        closer = getattr(self._loader, "close", None)
        if closer is not None:
            closer()
        self._loader = None
