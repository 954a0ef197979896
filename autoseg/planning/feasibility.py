"""Plans that cannot run are refused: an edited patch, batch or network is re-estimated.

The planner fits every configuration to the budget, but ``--set 3d_hybrid.batch_size=64``
or a hand edit of plans.json can ask for ten times the memory; today that ends in an
out-of-memory crash minutes into training (or a swapping machine). So a configuration whose
memory-relevant keys changed is traced again with the planner's own memory model and
refused when the estimate exceeds the limit by more than a stated margin.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from autoseg.core.errors import InvalidInputError
from autoseg.core.resources import total_memory_bytes
from autoseg.planning.memory import GB, MemoryEstimate, estimate_training_memory
from autoseg.plans import Configuration, Plans, finalize
from autoseg.plans.overrides import assignment_path

# The planner fills 90 % of the budget and its model is within ~10 % of measured peaks:
# 20 % above the budget cannot run, whatever the allocator does.
BUDGET_MARGIN = 1.2
# A CPU run lives in RAM beside the loader workers and the OS: 90 % of it at most.
RAM_SHARE = 0.9
# Keys (below configurations.<name>) whose change changes the training memory.
MEMORY_KEYS = (("patch_size",), ("batch_size",), ("network",), ("training", "amp"),
               ("training", "activation_checkpointing"))  # fmt: skip
# Recorded and re-traced estimates differ by rounding only (6 decimals) unless edited.
EDIT_TOLERANCE_GB = 1e-3


@dataclass(frozen=True)
class MemoryLimit:
    """The most memory a configuration of these plans may need, and where it comes from."""

    bytes: float
    reason: str


def memory_limit(plans: Plans) -> MemoryLimit:
    """Accelerator plans: the plans' budget with the margin; CPU plans: the machine's RAM."""
    budget_gb = float(plans.gpu_memory_gb)
    if plans.device != "cpu" or plans.gpu_memory_source == "flag":
        limit = budget_gb * GB * BUDGET_MARGIN
        return MemoryLimit(
            limit, f"{BUDGET_MARGIN:g} x the plans' {budget_gb:g} GB budget ({limit / GB:.1f} GB)"
        )
    ram = total_memory_bytes()
    limit = ram * RAM_SHARE
    return MemoryLimit(
        limit, f"{RAM_SHARE:.0%} of this machine's {ram / GB:.1f} GB of RAM ({limit / GB:.1f} GB)"
    )


def estimate_entry(name: str, config: Configuration) -> MemoryEstimate:
    """The memory model applied to a configuration entry as it stands.

    Raises:
        InvalidInputError: the network cannot be built or run on the patch (e.g. a patch
            not divisible by the network's pooling).
    """
    training = config.training
    try:
        return estimate_training_memory(
            config.network.to_json(), list(config.patch_size), config.batch_size,
            training.stated_amp(), bool(training.activation_checkpointing),
        )  # fmt: skip
    except (RuntimeError, ValueError, TypeError, KeyError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise InvalidInputError(
            f"{name}: the network cannot train on patch {list(config.patch_size)} ({first})"
        ) from error


def _too_large(
    name: str, config: Configuration, estimate: MemoryEstimate, limit: MemoryLimit
) -> str:
    return (
        f"{name} would need an estimated {estimate.total_gb:.1f} GB to train (patch "
        f"{list(config.patch_size)}, batch {config.batch_size}), more than {limit.reason}; "
        "lower batch_size or patch_size"
    )


def _record(entry: dict[str, object], estimate: MemoryEstimate, limit: MemoryLimit) -> None:
    """Keep the plans truthful: the entry carries the estimate of what it now says."""
    entry["parameters"] = estimate.weights // 4
    entry["memory_estimate_gb"] = estimate.total_gb
    entry["memory_estimate"] = estimate.to_json()
    entry["gflops_per_iteration"] = estimate.gflops
    entry["fits_budget"] = estimate.total <= limit.bytes / BUDGET_MARGIN


def _touched(plans: Plans, assignments: list[str]) -> dict[str, list[str]]:
    """``configuration -> assignments`` that changed one of its memory keys."""
    touched: dict[str, list[str]] = {}
    for assignment in assignments:
        path = assignment_path(plans.payload, assignment.split("=", 1)[0].strip())
        if len(path) < 3 or path[0] != "configurations":
            continue
        if any(tuple(path[2 : 2 + len(key)]) == key for key in MEMORY_KEYS):
            touched.setdefault(path[1], []).append(assignment)
    return touched


def reestimate_overrides(plans: Plans, assignments: list[str]) -> Plans:
    """Re-estimate the configurations ``--set`` changed; refuse those that cannot run.

    Raises:
        InvalidInputError: one line per refused configuration, naming its ``--set`` keys.
    """
    touched = _touched(plans, assignments)
    if not touched:
        return plans
    payload, limit, problems = plans.to_json(), memory_limit(plans), []
    for name, keys in sorted(touched.items()):
        config = plans.configuration(name)
        where = "--set " + ", ".join(keys)
        try:
            estimate = estimate_entry(name, config)
        except InvalidInputError as error:
            problems += [f"{where}: {line}" for line in error.problems]
            continue
        if estimate.total > limit.bytes:
            problems.append(f"{where}: {_too_large(name, config, estimate, limit)}")
        _record(payload["configurations"][name], estimate, limit)
    if problems:
        raise InvalidInputError(problems)
    return finalize(payload)


def check_trainable(plans: Plans, name: str, plans_file: Path) -> None:
    """Refuse a hand-edited configuration whose training cannot fit (checked at train start).

    An entry whose recorded estimate matches the model is what the planner chose (or a
    re-estimated ``--set``) and is trained as it is.

    Raises:
        InvalidInputError: the edited configuration exceeds the limit, naming its keys.
    """
    config = plans.configuration(name)
    try:
        estimate = estimate_entry(name, config)
    except InvalidInputError as error:
        raise InvalidInputError([f"{plans_file}: {line}" for line in error.problems]) from error
    edited = abs(estimate.total_gb - float(config.memory_estimate_gb)) > EDIT_TOLERANCE_GB
    limit = memory_limit(plans)
    if edited and estimate.total > limit.bytes:
        raise InvalidInputError(
            f"{plans_file}: configurations.{name} (patch_size, batch_size or network edited): "
            + _too_large(name, config, estimate, limit)
        )
