"""Fit a configuration to the budget: a ladder of ever larger (patch, network) rungs.

Rungs are ordered so that patch and network size never shrink from one rung to the
next; the estimated cost is therefore monotone along the ladder, the largest rung that
fits is found by bisection, and more budget can never give a smaller plan. A rung must fit
at the configuration's smallest batch (2, or more for ``2d_lcnn`` on a CPU: see
:meth:`~autoseg.planning.configurations.ConfigurationKind.min_batch`); where not even the
first rung does, it gets the largest batch it takes. Batch size grows beyond that only at
the top rung (the largest useful patch and network), capped so one batch covers at most
5 % of the dataset's voxels. Activation checkpointing is the lever when even the first
rung does not fit at batch 2.
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
    where not even the first rung takes it, the first rung gets the largest batch it takes.
    """

    def fits(rung: Rung, batch: int, checkpointing: bool = False) -> bool:
        return within(_estimate(rung, batch, budget, checkpointing), budget)

    def largest_batch(rung: Rung, low: int, high: int, checkpointing: bool) -> int | None:
        """The largest batch in ``low..high`` the rung takes, or None."""
        step = largest_fitting(high - low + 1, lambda j: fits(rung, low + j, checkpointing))
        return None if step < 0 else low + step

    wanted = max(MIN_BATCH, min(min_batch, max_batch))
    index = largest_fitting(len(rungs), lambda i: fits(rungs[i], wanted))
    batch, checkpointing = wanted, False
    if index < 0:
        index, taken = 0, largest_batch(rungs[0], MIN_BATCH, wanted, False)
        batch, checkpointing = (MIN_BATCH, can_checkpoint) if taken is None else (taken, False)
    rung = rungs[index]
    if index == len(rungs) - 1:
        cap = max(batch, min(max_batch, MAX_BATCH))
        batch = largest_batch(rung, batch, cap, checkpointing) or batch
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
