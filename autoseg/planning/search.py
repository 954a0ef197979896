"""Fit a configuration to the budget: a ladder of ever larger (patch, network) rungs.

Rungs are ordered so that patch and network size never shrink from one rung to the
next; the estimated cost is therefore monotone along the ladder, the largest rung that
fits is found by bisection, and more budget can never give a smaller plan. A rung must fit
at the configuration's smallest batch (2, or more for ``2d_lcnn`` on a CPU: see
:meth:`~autoseg.planning.configurations.ConfigurationKind.min_batch`). Batch size grows
beyond it only at the top rung (the largest useful patch and network), capped so one batch
covers at most 5 % of the dataset's voxels. Activation checkpointing is the lever when
even the first rung does not fit at batch 2.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from autoseg.planning.device import Budget
from autoseg.planning.memory import GB, MemoryEstimate, estimate_training_memory

# Keep headroom for the CUDA context, allocator fragmentation and data-loader tensors.
USABLE_FRACTION = 0.9
MIN_BATCH = 2
MAX_BATCH = 512


@dataclass(frozen=True)
class Rung:
    """One candidate: a network spec and the patch it is trained on."""

    network: dict[str, Any]
    patch: tuple[int, ...]


@dataclass(frozen=True)
class Choice:
    """The fitted candidate and its estimate."""

    rung: Rung
    index: int
    batch_size: int
    checkpointing: bool
    estimate: MemoryEstimate
    fits: bool


def interleave(patch_count: int, level_count: int) -> list[tuple[int, int]]:
    """(patch index, level index) pairs growing both together, smallest first."""
    pairs, p, q = [(0, 0)], 0, 0
    while p < patch_count - 1 or q < level_count - 1:
        grow_patch = q == level_count - 1 or (
            p < patch_count - 1 and p * (level_count - 1) <= q * (patch_count - 1)
        )
        p, q = (p + 1, q) if grow_patch else (p, q + 1)
        pairs.append((p, q))
    return pairs


def fits_memory(estimate: MemoryEstimate, budget: Budget) -> bool:
    """Under the memory budget, headroom kept."""
    return estimate.total <= budget.gpu_memory_gb * GB * USABLE_FRACTION


def within(estimate: MemoryEstimate, budget: Budget) -> bool:
    """Under the memory budget and, on the CPU, under the per-iteration compute cap."""
    if not fits_memory(estimate, budget):
        return False
    return budget.gflops_per_iteration is None or estimate.gflops <= budget.gflops_per_iteration


def _estimate(rung: Rung, batch: int, budget: Budget, checkpointing: bool) -> MemoryEstimate:
    return estimate_training_memory(rung.network, rung.patch, batch, budget.amp, checkpointing)


def largest_fitting(count: int, fits: Callable[[int], bool]) -> int:
    """Largest index in ``range(count)`` with ``fits`` true (monotone), or -1."""
    low, high = -1, count - 1
    while low < high:
        middle = (low + high + 1) // 2
        if fits(middle):
            low = middle
        else:
            high = middle - 1
    return low


def fit_ladder(
    rungs: list[Rung], budget: Budget, max_batch: int, can_checkpoint: bool,
    min_batch: int = MIN_BATCH,
) -> Choice:  # fmt: skip
    """Pick rung, batch size and checkpointing for a budget (see module docstring).

    ``min_batch`` is the batch every climbed rung must train at (never above the 5 % cap);
    where even the first rung cannot take it, the ladder is fitted at batch 2 instead.
    """

    def climb(batch: int) -> int:
        return largest_fitting(
            len(rungs), lambda i: within(_estimate(rungs[i], batch, budget, False), budget)
        )

    batch = max(MIN_BATCH, min(min_batch, max_batch))
    index = climb(batch)
    if index < 0 and batch > MIN_BATCH:
        batch = MIN_BATCH
        index = climb(batch)
    checkpointing = False
    if index < 0:
        index, checkpointing = 0, can_checkpoint
    rung = rungs[index]
    if index == len(rungs) - 1:
        cap = max(batch, min(max_batch, MAX_BATCH))
        offset = largest_fitting(
            cap - batch + 1,
            lambda k: within(_estimate(rung, batch + k, budget, checkpointing), budget),
        )
        batch += max(offset, 0)
    estimate = _estimate(rung, batch, budget, checkpointing)
    return Choice(rung, index, batch, checkpointing, estimate, within(estimate, budget))


def widened_on_patch(choice: Choice, rungs: list[Rung], budget: Budget) -> Choice:
    """The first of ``rungs`` on the choice's patch, at its batch, where that network is
    larger and fits the memory; else the choice.

    The compute cap is not applied: the caller offers rungs whose extra FLOPs cost little
    time (bf16 width on a CPU).
    """
    same_patch = [(i, rung) for i, rung in enumerate(rungs) if rung.patch == choice.rung.patch]
    if not same_patch or choice.checkpointing:
        return choice
    index, rung = same_patch[0]
    estimate = _estimate(rung, choice.batch_size, budget, False)
    if estimate.weights <= choice.estimate.weights or not fits_memory(estimate, budget):
        return choice
    return Choice(rung, index, choice.batch_size, False, estimate, True)
