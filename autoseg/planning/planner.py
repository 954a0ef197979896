"""The experiment planner: fingerprint + budget -> plans.json (DESIGN §5, §11).

``plan_from_fingerprint`` is a pure function of its inputs (same fingerprint and budget,
byte-identical plans); ``plan_dataset`` is the step ``autoseg_plan`` runs.
"""

from __future__ import annotations

import math
import multiprocessing
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from autoseg.core.resources import usable_cores, worker_pool
from autoseg.core.run_layout import PLANS_JSON, resolve_dataset_dir
from autoseg.core.workspace import Workspace
from autoseg.data.layout import RawDataset
from autoseg.planning import rules
from autoseg.planning.configurations import (
    ConfigurationKind,
    LadderInputs,
    configuration_kind,
    configuration_names,
)
from autoseg.planning.device import Budget, resolve_budget
from autoseg.planning.feasibility import reestimate_overrides
from autoseg.planning.fingerprint import write_fingerprint
from autoseg.planning.search import Choice, fit_ladder, widened_on_patch
from autoseg.planning.topology import is_anisotropic
from autoseg.plans import Plans, PreprocessingOptions, apply_overrides, finalize, write_plans
from autoseg.plans.jsonutil import content_hash

BATCH_DATASET_FRACTION = 0.05
CPU_FIELD_OF_VIEW_REFITS = 3  # a patch refitted coarser may shrink: the coverage is checked again


def max_batch(dataset_voxels: float, patch: tuple[int, ...]) -> int:
    """Cap the batch so one batch covers at most 5 % of the dataset: overfitting precaution."""
    return max(2, int(BATCH_DATASET_FRACTION * dataset_voxels // math.prod(patch)))


def configuration_entry(
    name: str, choice: Choice, spacing: list[float], fingerprint: dict, budget: Budget
) -> dict[str, Any]:
    """One configuration of plans.json from its fitted choice."""
    dims = len(choice.rung.patch)
    cpu = budget.device == "cpu"
    per_lesion_loss = configuration_kind(name).per_lesion_loss
    anisotropic = is_anisotropic(spacing)
    entry = {
        "data_id": "",
        "spacing_mm": spacing,
        "patch_size": list(choice.rung.patch),
        "batch_size": choice.batch_size,
        "normalization": rules.normalization(fingerprint),
        "preprocessing": PreprocessingOptions().to_json(),
        "network": choice.rung.network,
        "parameters": choice.estimate.weights // 4,
        "memory_estimate_gb": choice.estimate.total_gb,
        "memory_estimate": choice.estimate.to_json(),
        "gflops_per_iteration": choice.estimate.gflops,
        "fits_budget": choice.fits,
        "ladder_rung": choice.index,
        "training": rules.training(
            choice.estimate.outputs, budget.amp, choice.checkpointing, cpu, per_lesion_loss
        ),
        "augmentation": rules.augmentation(dims, anisotropic),
        "inference": rules.inference(dims),
    }
    if dims == 2:
        slices = int(choice.rung.network["kwargs"]["in_channels"]) // len(fingerprint["channels"])
        entry["slice_context"] = {"slices": slices, "context": slices // 2, "axis": "z"}
    return entry


def fit_configuration(
    kind: ConfigurationKind, spacing: list[float], fingerprint: dict, budget: Budget
) -> Choice:
    """Fit one configuration's ladder at a spacing.

    A CPU that trains in bf16 then gets the bf16 ladder's network on the same patch and
    batch where that is wider (:data:`~autoseg.planning.configurations.CPU_BF16_MIN_LEVEL_3D`):
    there width costs little time, a patch all of its voxels.
    """
    inputs = LadderInputs(
        spacing, rules.shape_at(fingerprint, spacing), len(fingerprint["channels"]),
        len(fingerprint["labels"]), 2 * rules.slice_context(spacing) + 1, budget.device == "cpu",
    )  # fmt: skip
    rungs = kind.rungs(inputs, kind.level_count(budget))
    if any(rung.network["name"] != kind.network for rung in rungs):
        raise ValueError(f"configuration '{kind.name}': its rungs must build '{kind.network}'")
    voxels = rules.dataset_voxels_at(fingerprint, spacing)
    choice = fit_ladder(
        rungs, budget, max_batch(voxels, rungs[-1].patch), kind.can_checkpoint,
        kind.min_batch(budget),
    )  # fmt: skip
    if budget.cpu_bf16:
        bf16_rungs = kind.rungs(replace(inputs, cpu_bf16=True), kind.level_count(budget))
        if bf16_rungs != rungs:  # only ladders that start wider in bf16 (3d_hybrid)
            choice = widened_on_patch(choice, bf16_rungs, budget)
    return choice


def plan_configuration(name: str, fingerprint: dict, budget: Budget) -> dict[str, Any]:
    """Fit one registered configuration to the budget.

    On a CPU, a 3D patch that covers too little of the median image is fitted again at a
    coarser spacing (:func:`~autoseg.planning.rules.cpu_field_of_view_spacing`), until it
    covers enough (the patch refitted at a coarser spacing may be smaller).
    """
    kind = configuration_kind(name)
    data_spacing = spacing = rules.target_spacing(fingerprint)
    choice = fit_configuration(kind, spacing, fingerprint, budget)
    for _ in range(CPU_FIELD_OF_VIEW_REFITS if budget.device == "cpu" else 0):
        shape = rules.shape_at(fingerprint, spacing)
        patch = choice.rung.patch
        coarser = rules.cpu_field_of_view_spacing(spacing, shape, patch, data_spacing)
        if coarser is None:
            break
        spacing = coarser
        choice = fit_configuration(kind, spacing, fingerprint, budget)
    return configuration_entry(name, choice, spacing, fingerprint, budget)


def plan_configurations(fingerprint: dict[str, Any], budget: Budget) -> dict[str, Any]:
    """Every configuration's entry, fitted side by side on up to one core each.

    Tracing networks on the meta device is single-threaded Python and the configurations
    are independent, so on a multi-core Linux machine they are fitted in forked processes
    (the parent's imports are shared; the results are the same values in the same order).
    """
    names = configuration_names()
    workers = min(len(names), usable_cores())
    if workers < 2 or not sys.platform.startswith("linux"):
        return {name: plan_configuration(name, fingerprint, budget) for name in names}
    context = multiprocessing.get_context("fork")
    with worker_pool(workers, mp_context=context) as pool:
        futures = {n: pool.submit(plan_configuration, n, fingerprint, budget) for n in names}
        return {name: future.result() for name, future in futures.items()}


def plan_from_fingerprint(fingerprint: dict[str, Any], budget: Budget) -> Plans:
    """The plans for a fingerprint and a budget (deterministic, byte-stable)."""
    payload = {
        "dataset": fingerprint["dataset"],
        "fingerprint_id": content_hash(fingerprint),
        "gpu_memory_gb": budget.gpu_memory_gb,
        "gpu_memory_source": budget.source,
        "device": budget.device,
        "cpu_budget": budget.cpu_budget(),
        "recommended_configuration": rules.recommended_configuration(fingerprint),
        "configurations": plan_configurations(fingerprint, budget),
        "postprocessing": rules.default_postprocessing(fingerprint),
        "overrides": [],
    }
    return finalize(payload)


def plan_dataset(
    workspace: Workspace,
    dataset: str,
    gpu_memory_gb: float | None = None,
    device: str | None = None,
    overrides: list[str] | None = None,
    num_processes: int | None = None,
    progress: bool = True,
) -> Plans:
    """Fingerprint (resuming) and plan a raw dataset; writes fingerprint.json and plans.json.

    Args:
        workspace: the raw / preprocessed / results roots.
        dataset: dataset name (``ATLAS``, ``Dataset012_Foo``, ``12``...).
        gpu_memory_gb: ``--gpu-memory-gb`` (plan for a card elsewhere).
        device: ``--device`` (cpu, cuda, mps); None detects.
        overrides: ``--set key=value`` assignments, recorded in the plans; a changed
            patch, batch or network is re-estimated and refused when it cannot run.
        num_processes: fingerprint workers (None: bounded by cores and RAM).
        progress: show progress bars.

    Returns:
        The written plans.
    """
    raw = RawDataset.open(resolve_dataset_dir(workspace.raw, dataset))
    budget = resolve_budget(device, gpu_memory_gb)
    fingerprint = write_fingerprint(raw, workspace.preprocessed, num_processes, progress)
    plans = plan_from_fingerprint(fingerprint, budget)
    if overrides:
        plans = reestimate_overrides(apply_overrides(plans, list(overrides)), list(overrides))
    write_plans(plans_path(workspace.preprocessed, raw.name), plans)
    return plans


def plans_path(preprocessed_root: Path, dataset: str) -> Path:
    """``preprocessed/<NAME>/plans.json``."""
    return Path(preprocessed_root) / dataset / PLANS_JSON
