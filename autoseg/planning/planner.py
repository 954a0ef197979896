"""The experiment planner: fingerprint + budget -> plans.json (DESIGN §5, §11).

``plan_from_fingerprint`` is a pure function of its inputs (same fingerprint and budget,
byte-identical plans); ``plan_dataset`` is the step ``autoseg_plan`` runs.
"""

from __future__ import annotations

import math
import multiprocessing
import sys
from pathlib import Path
from typing import Any

from autoseg.core.resources import usable_cores, worker_pool
from autoseg.core.run_layout import PLANS_JSON, resolve_dataset_dir
from autoseg.core.workspace import Workspace
from autoseg.data.layout import RawDataset
from autoseg.planning import rules
from autoseg.planning.device import Budget, resolve_budget
from autoseg.planning.feasibility import reestimate_overrides
from autoseg.planning.fingerprint import write_fingerprint
from autoseg.planning.jsonutil import content_hash
from autoseg.planning.plans import CONFIGURATIONS, Plans, apply_overrides, finalize, write_plans
from autoseg.planning.search import Choice, Rung, fit_ladder, interleave
from autoseg.planning.topology import (
    HYBRID_LEVELS,
    LCNN_LEVELS,
    MIN_FEATURE_SIZE,
    UNET25D_LEVELS,
    fit_patch_3d,
    fit_patch_up_3d,
    hybrid_kwargs,
    lcnn_kwargs,
    pooling_3d,
    unet25d_kwargs,
)

MAX_WINDOWS_PER_AXIS = 6  # CPU tiling patches: at most this many windows along an axis
PATCH_STEP = 0.85  # per-axis shrink between patch rungs (~0.6x the voxels)
MIN_PATCH_MM = 24.0  # a smaller patch sees too little context around a lesion
BATCH_DATASET_FRACTION = 0.05
# Network sizes a CPU plan may use (3d_hybrid up to base width 12, 2.5d_unet up to 16,
# 2d_lcnn its two smallest): see level_count.
CPU_LEVELS = {"3d_hybrid": 4, "2.5d_unet": 3, "2d_lcnn": 2}
CPU_MIN_LEVEL_3D = 2  # base width 8: narrower 3d_hybrids learned markedly slower on the CPU
# The LCNN's global ResNeXt path pools by 32; instance norm needs > 1 voxel at its end.
LCNN_MIN_PATCH = 64
PREPROCESSING = {"crop_to_nonzero": True, "n4": False, "anisotropy_threshold": 3.0,
                 "data_dtype": "float32", "foreground_samples": 10000}  # fmt: skip


def patch_ladder_3d(spacing_mm: list[float], max_shape: list[int]) -> list[tuple[int, ...]]:
    """Distinct 3D patches with the median image's aspect, smallest first."""
    patches: list[tuple[int, ...]] = []
    scale = 1.0
    while True:
        wanted = [max(1, math.floor(n * scale)) for n in max_shape]
        patch = tuple(fit_patch_3d(spacing_mm, wanted))
        patch = tuple(min(p, max(n, p)) for p, n in zip(patch, max_shape, strict=True))
        if not patches or patch != patches[-1]:
            patches.append(patch)
        too_small = min(p * s for p, s in zip(patch, spacing_mm, strict=True)) < MIN_PATCH_MM
        if too_small or scale < 0.05:
            break
        scale *= PATCH_STEP
    # A U-Net needs at least one pooling stage; an image too small for that is padded.
    deep_enough = [p for p in patches if len(pooling_3d(spacing_mm, p)[0]) >= 2]
    if not deep_enough:
        padded = [max(n, 2 * MIN_FEATURE_SIZE) for n in max_shape]
        deep_enough = [tuple(fit_patch_3d(spacing_mm, padded))]
    return sorted(set(deep_enough), key=lambda p: (math.prod(p), p))


def tiling_patch_ladder_3d(
    spacing_mm: list[float], median_shape: list[int], step: float
) -> list[tuple[int, ...]]:
    """CPU patches: the smallest that cover the median image with n windows per axis.

    Every sliding window costs a forward pass per mirror at inference, and on a CPU that is
    what a user waits for. A patch that leaves the last window of an axis mostly outside
    the image (32 voxels on a 66-voxel axis at step 0.5 takes 4 windows; 48 takes 2)
    pays for context it never uses. So a CPU plan only considers the patches that tile the
    median image with n = 1, 2, 3... windows per axis at the inference step: p = size /
    (1 + (n - 1) * step), rounded up to the pooling divisor.
    """
    patches: set[tuple[int, ...]] = set()
    for windows in range(1, MAX_WINDOWS_PER_AXIS + 1):
        wanted = [max(1, math.ceil(n / (1 + (windows - 1) * step))) for n in median_shape]
        patch = fit_patch_up_3d(spacing_mm, wanted)
        if len(pooling_3d(spacing_mm, patch)[0]) < 2:
            break
        patches.add(patch)
        if min(p * s for p, s in zip(patch, spacing_mm, strict=True)) < MIN_PATCH_MM:
            break
    if not patches:
        return patch_ladder_3d(spacing_mm, median_shape)
    return sorted(patches, key=lambda p: (math.prod(p), p))


def fit_2d(size_yx: list[int], divisor: int, minimum: int) -> tuple[int, int]:
    """In-plane patch: the median slice rounded up to the divisor, at least ``minimum``.

    Up, not down: one window then covers a median slice at prediction time, where a patch
    a few voxels short of the slice needs two windows per axis (four per slice).
    """
    return tuple(max(minimum, math.ceil(n / divisor) * divisor) for n in size_yx)


def level_count(levels: tuple, budget: Budget, cpu_levels: int) -> int:
    """How many network sizes a budget may climb to.

    On a CPU the cost of a voxel grows with width faster than its FLOPs suggest (normalisation
    and activations are memory-bound), and a slim network trained for more iterations
    learns more per minute than a wide one: CPU plans stop at slim widths and spend the
    rest of the budget on patch and batch.
    """
    return min(len(levels), cpu_levels) if budget.device == "cpu" else len(levels)


def hybrid_rungs(
    spacing: list[float],
    shape: list[int],
    channels: int,
    classes: int,
    levels: int,
    cpu: bool = False,
) -> list:
    """3d_hybrid ladder: patches and network levels growing together.

    On a CPU the ladder is patch first: the tiling patches (fewest windows at inference) at
    the slimmest width that still learns quickly, then wider networks on the largest
    patch. Every window is paid for at prediction time, so fewer windows beat width.
    """
    if cpu:
        patches = tiling_patch_ladder_3d(spacing, shape, rules.inference(3)["step"])
        floor = min(CPU_MIN_LEVEL_3D, levels - 1)
        pairs = [(p, floor) for p in range(len(patches))]
        pairs += [(len(patches) - 1, q) for q in range(floor + 1, levels)]
    else:
        patches = patch_ladder_3d(spacing, shape)
        pairs = interleave(len(patches), levels)
    rungs = []
    for p, q in pairs:
        kwargs = hybrid_kwargs(q, spacing, patches[p], channels, classes)
        rungs.append(Rung({"name": "3d_hybrid", "kwargs": kwargs}, patches[p]))
    return rungs


def unet25d_rungs(
    shape: list[int], channels: int, slices: int, classes: int, levels: int
) -> list[Rung]:
    """2.5d_unet ladder: the whole median slice, growing width."""
    patch = fit_2d(shape[1:], 16, 16)
    return [
        Rung({"name": "2.5d_unet",
              "kwargs": unet25d_kwargs(level, patch, channels * slices, classes)}, patch)
        for level in range(levels)
    ]  # fmt: skip


def lcnn_rungs(
    shape: list[int], channels: int, slices: int, classes: int, levels: int
) -> list[Rung]:
    """2d_lcnn ladder: the whole median slice, growing local and global paths."""
    patch = fit_2d(shape[1:], 32, LCNN_MIN_PATCH)
    return [
        Rung({"name": "2d_lcnn", "kwargs": lcnn_kwargs(level, channels, slices, classes)}, patch)
        for level in range(levels)
    ]


def max_batch(dataset_voxels: float, patch: tuple[int, ...]) -> int:
    """Cap the batch so one batch covers at most 5 % of the dataset: overfitting precaution."""
    return max(2, int(BATCH_DATASET_FRACTION * dataset_voxels // math.prod(patch)))


def configuration_entry(
    name: str, choice: Choice, spacing: list[float], fingerprint: dict, budget: Budget
) -> dict[str, Any]:
    """One configuration of plans.json from its fitted choice."""
    dims = len(choice.rung.patch)
    anisotropic = rules.is_anisotropic(spacing)
    entry = {
        "data_id": "",
        "spacing_mm": spacing,
        "patch_size": list(choice.rung.patch),
        "batch_size": choice.batch_size,
        "normalization": rules.normalization(fingerprint),
        "preprocessing": dict(PREPROCESSING),
        "network": choice.rung.network,
        "parameters": choice.estimate.weights // 4,
        "memory_estimate_gb": choice.estimate.total_gb,
        "memory_estimate": choice.estimate.to_json(),
        "gflops_per_iteration": choice.estimate.gflops,
        "fits_budget": choice.fits,
        "ladder_rung": choice.index,
        "training": rules.training(
            choice.estimate.outputs, budget.amp, choice.checkpointing, budget.device == "cpu"
        ),
        "augmentation": rules.augmentation(dims, anisotropic),
        "inference": rules.inference(dims),
    }
    if dims == 2:
        slices = int(choice.rung.network["kwargs"]["in_channels"]) // len(fingerprint["channels"])
        entry["slice_context"] = {"slices": slices, "context": slices // 2, "axis": "z"}
    return entry


def plan_configuration(name: str, fingerprint: dict, budget: Budget) -> dict[str, Any]:
    """Fit one configuration to the budget."""
    spacing = rules.target_spacing(fingerprint)
    shape = rules.shape_at(fingerprint, spacing)
    channels = len(fingerprint["channels"])
    classes = len(fingerprint["labels"])
    slices = 2 * rules.slice_context(spacing) + 1
    if name == "3d_hybrid":
        levels = level_count(HYBRID_LEVELS, budget, CPU_LEVELS["3d_hybrid"])
        rungs = hybrid_rungs(spacing, shape, channels, classes, levels, budget.device == "cpu")
    elif name == "2.5d_unet":
        levels = level_count(UNET25D_LEVELS, budget, CPU_LEVELS["2.5d_unet"])
        rungs = unet25d_rungs(shape, channels, slices, classes, levels)
    else:
        levels = level_count(LCNN_LEVELS, budget, CPU_LEVELS["2d_lcnn"])
        rungs = lcnn_rungs(shape, channels, slices, classes, levels)
    voxels = rules.dataset_voxels_at(fingerprint, spacing)
    choice = fit_ladder(rungs, budget, max_batch(voxels, rungs[-1].patch), name == "3d_hybrid")
    return configuration_entry(name, choice, spacing, fingerprint, budget)


def plan_configurations(fingerprint: dict[str, Any], budget: Budget) -> dict[str, Any]:
    """Every configuration's entry, fitted side by side on up to one core each.

    Tracing networks on the meta device is single-threaded Python and the configurations
    are independent, so on a multi-core Linux machine they are fitted in forked processes
    (the parent's imports are shared; the results are the same values in the same order).
    """
    workers = min(len(CONFIGURATIONS), usable_cores())
    if workers < 2 or not sys.platform.startswith("linux"):
        return {name: plan_configuration(name, fingerprint, budget) for name in CONFIGURATIONS}
    context = multiprocessing.get_context("fork")
    with worker_pool(workers, mp_context=context) as pool:
        futures = {
            n: pool.submit(plan_configuration, n, fingerprint, budget) for n in CONFIGURATIONS
        }
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
