"""Configurations by registration: each one's planner rungs, size levels and recommendation
rule, in one :class:`ConfigurationKind` record.

The planner plans every registered configuration, training and prediction take any name the
plans hold, and an unknown name fails with the list of known ones. Adding a configuration
is one call (``tests/planning/test_configurations.py`` registers a toy one)::

    def my_rungs(inputs: LadderInputs, levels: int) -> list[Rung]:
        ...  # smallest first: Rung({"name": "3d_hybrid", "kwargs": {...}}, patch)

    register_configuration(ConfigurationKind("3d_small", "3d_hybrid", levels=3,
                                             cpu_levels=2, rungs=my_rungs))

The network must be a registered one (:func:`autoseg.networks.list_networks`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from autoseg.core.errors import InvalidInputError
from autoseg.planning.device import Budget
from autoseg.planning.ladders import fit_2d, patch_ladder_3d, tiling_patch_ladder_3d
from autoseg.planning.search import MIN_BATCH, Rung, interleave
from autoseg.planning.topology import (
    HYBRID_LEVELS,
    LCNN_LEVELS,
    UNET25D_LEVELS,
    hybrid_kwargs,
    is_anisotropic,
    lcnn_kwargs,
    unet25d_kwargs,
)
from autoseg.plans import InferenceWindow

CPU_MIN_LEVEL_3D = 2  # base width 8: narrower 3d_hybrids learned markedly slower on the CPU
# In bf16 (AMX) the slim network is bound by memory traffic, so width costs little: base
# width 12 on the same 40 x 56 x 40 patch (2.25x the FLOPs) took 12.3 s per epoch against
# 10.5 s (ATLAS-like set, 2 mm), and 20 minutes gave test Dice 0.693 and recall 0.42 for
# lesions under 1.5 ml (0.659, 0.21). A float32 step of the slim network costs ~1.6x its
# bf16 step, so the wide bf16 step stays within the float32 plan's time.
CPU_BF16_MIN_LEVEL_3D = 3
# 2d_lcnn on a CPU climbs only widths that train at batch 8 under the compute cap. On the
# synthetic 6 x 2 x 2 mm CT PNG stacks (new draw), 8 minutes: the second width at batch 2
# (22 GFLOPs a step, 45-51 epochs) gave test Dice 0.485 and 0.504, 62-126 false components; the
# first width at batch 8 (22 GFLOPs, 31-33 epochs) 0.588, 0.633 and 0.659 with 6-24, better
# in 15-19 of the 20 patients. A step of single slices at batch 2 is a noisy gradient.
# 2.5d_unet keeps batch 2 as its floor: on 6 x 1 x 1 mm DWI it plans batch 3 at its third
# width (Dice 0.907 in 8 minutes); the rule would move it, unmeasured, to its first width.
CPU_MIN_BATCH_LCNN = 8
# The LCNN's global ResNeXt path pools by 32; instance norm needs > 1 voxel at its end.
LCNN_MIN_PATCH = 64


@dataclass(frozen=True)
class LadderInputs:
    """What a configuration's ladder is built from.

    Attributes:
        spacing_mm: target spacing ``(z, y, x)``.
        shape: median cropped image shape in voxels at that spacing.
        channels: image channels; classes: label classes (background included).
        slices: the slice stack of 2D configurations (``2 * context + 1``).
        cpu: planning for a CPU (slim networks, tiling patches).
        cpu_bf16: the CPU steps will run in bf16 (AMX), where width is cheap: a ladder
            may start wider (the planner keeps the float32 plan's patch and batch).
    """

    spacing_mm: list[float]
    shape: list[int]
    channels: int
    classes: int
    slices: int
    cpu: bool
    cpu_bf16: bool = False


@dataclass(frozen=True)
class ConfigurationKind:
    """One configuration the planner knows.

    Attributes:
        name: the configuration's name in plans.json and on the command line.
        network: the registered network its rungs build.
        levels: network sizes its ladder can climb (smallest first).
        cpu_levels: the most sizes a CPU plan may climb to (see :meth:`level_count`).
        rungs: ``(inputs, levels) -> rungs``, smallest first, patch and network never
            shrinking (the planner bisects them).
        recommend: ``fingerprint -> bool``: the data this configuration suits best
            (None: never recommended); the first registered one that accepts is chosen.
        can_checkpoint: activation checkpointing is the lever when nothing fits.
        per_lesion_loss: whether a CPU plan adds the per-lesion Dice term
            (``dice_ce_lesion``) to Dice + CE.
        cpu_min_batch: the batch a CPU plan's rungs must train at (see :meth:`min_batch`).
    """

    name: str
    network: str
    levels: int
    cpu_levels: int
    rungs: Callable[[LadderInputs, int], list[Rung]]
    recommend: Callable[[dict[str, Any]], bool] | None = None
    can_checkpoint: bool = False
    per_lesion_loss: bool = True
    cpu_min_batch: int = MIN_BATCH

    def min_batch(self, budget: Budget) -> int:
        """The batch every rung of the ladder must fit at: ``cpu_min_batch`` on a CPU.

        Under the CPU's compute cap a wider network costs batch: ``2d_lcnn`` climbing to
        its next width at batch 2 learns from a quarter of the slices per step that the
        slimmer one sees at batch 8 (:data:`CPU_MIN_BATCH_LCNN`).
        """
        return self.cpu_min_batch if budget.device == "cpu" else MIN_BATCH

    def level_count(self, budget: Budget) -> int:
        """How many network sizes a budget may climb to.

        On a CPU the cost of a voxel grows with width faster than its FLOPs suggest
        (normalisation and activations are memory-bound), and a slim network trained for
        more iterations learns more per minute than a wide one: CPU plans stop at slim
        widths and spend the rest of the budget on patch and batch.
        """
        return min(self.levels, self.cpu_levels) if budget.device == "cpu" else self.levels


_KINDS: dict[str, ConfigurationKind] = {}


def register_configuration(kind: ConfigurationKind) -> ConfigurationKind:
    """Make a configuration known to the planner (a name may be registered once)."""
    if kind.name in _KINDS:
        raise ValueError(f"configuration '{kind.name}' is already registered")
    _KINDS[kind.name] = kind
    return kind


def unregister_configuration(name: str) -> None:
    """Forget a registered configuration (tests register toy ones and clean up)."""
    configuration_kind(name)
    del _KINDS[name]


def configuration_names() -> tuple[str, ...]:
    """Registered configurations, in registration order."""
    return tuple(_KINDS)


def configuration_kind(name: str) -> ConfigurationKind:
    """A registered configuration; an unknown name fails with the known ones."""
    if name not in _KINDS:
        raise InvalidInputError(
            f"unknown configuration '{name}'; known: {', '.join(configuration_names())}"
        )
    return _KINDS[name]


def recommended_configuration(fingerprint: dict[str, Any]) -> str:
    """The first registered configuration whose rule accepts the data."""
    for kind in _KINDS.values():
        if kind.recommend is not None and kind.recommend(fingerprint):
            return kind.name
    raise InvalidInputError("no registered configuration suits this dataset")


def hybrid_rungs(inputs: LadderInputs, levels: int) -> list[Rung]:
    """3d_hybrid ladder: patches and network levels growing together.

    On a CPU the ladder is patch first: the tiling patches (fewest windows at inference) at
    the slimmest width that still learns quickly (wider in bf16, where width is cheap),
    then wider networks on the largest patch. Every window is paid for at prediction time,
    so fewer windows beat width.
    """
    spacing, shape = inputs.spacing_mm, inputs.shape
    if inputs.cpu:
        # Patches tile the image at half-patch steps (the schema's default step), as every
        # measured CPU plan was chosen; prediction then lays its windows denser
        # (rules.WINDOW_STEP) over the same patch.
        patches = tiling_patch_ladder_3d(spacing, shape, InferenceWindow.step)
        lowest = CPU_BF16_MIN_LEVEL_3D if inputs.cpu_bf16 else CPU_MIN_LEVEL_3D
        floor = min(lowest, levels - 1)
        pairs = [(p, floor) for p in range(len(patches))]
        pairs += [(len(patches) - 1, q) for q in range(floor + 1, levels)]
    else:
        patches = patch_ladder_3d(spacing, shape)
        pairs = interleave(len(patches), levels)
    rungs = []
    for p, q in pairs:
        kwargs = hybrid_kwargs(q, spacing, patches[p], inputs.channels, inputs.classes)
        rungs.append(Rung({"name": "3d_hybrid", "kwargs": kwargs}, patches[p]))
    return rungs


def unet25d_rungs(inputs: LadderInputs, levels: int) -> list[Rung]:
    """2.5d_unet ladder: the whole median slice, growing width."""
    patch = fit_2d(inputs.shape[1:], 16, 16)
    channels = inputs.channels * inputs.slices
    return [
        Rung({"name": "2.5d_unet",
              "kwargs": unet25d_kwargs(level, patch, channels, inputs.classes)}, patch)
        for level in range(levels)
    ]  # fmt: skip


def lcnn_rungs(inputs: LadderInputs, levels: int) -> list[Rung]:
    """2d_lcnn ladder: the whole median slice, growing local and global paths."""
    patch = fit_2d(inputs.shape[1:], 32, LCNN_MIN_PATCH)
    return [
        Rung({"name": "2d_lcnn",
              "kwargs": lcnn_kwargs(level, inputs.channels, inputs.slices, inputs.classes)},
             patch)
        for level in range(levels)
    ]  # fmt: skip


def _thick(fingerprint: dict[str, Any]) -> bool:
    """Thick slices: the rule that also decides resampling (at exactly 3 the data stays 3D)."""
    return is_anisotropic(fingerprint["spacing_mm"]["median"])


def _has_ct(fingerprint: dict[str, Any]) -> bool:
    return any(channel["modality"] == "CT" for channel in fingerprint["channels"])


# Thick-slice CT -> 2d_lcnn, thick-slice MR (DWI) -> 2.5d_unet, else 3d_hybrid. At a ratio of
# exactly 3 the data stays 3D, and should: on 6 x 2 x 2 mm CT PNG stacks of the synthetic
# generator, 8 CPU minutes gave 3d_hybrid test Dice 0.67 (lesion F1 0.67) against 0.60
# (0.48) for 2d_lcnn; 0.76 (0.72) later with the bf16-wide 3d_hybrid. CPU levels: 3d_hybrid
# up to base width 12, 2.5d_unet up to 16, 2d_lcnn its two smallest.
register_configuration(ConfigurationKind(
    "3d_hybrid", "3d_hybrid", len(HYBRID_LEVELS), 4, hybrid_rungs,
    recommend=lambda fingerprint: not _thick(fingerprint), can_checkpoint=True,
))  # fmt: skip
register_configuration(ConfigurationKind(
    "2.5d_unet", "2.5d_unet", len(UNET25D_LEVELS), 3, unet25d_rungs,
    recommend=lambda fingerprint: _thick(fingerprint) and not _has_ct(fingerprint),
))  # fmt: skip
# 2d_lcnn trains on single slices, where every in-plane cross-section of a lesion counts as
# a lesion of its own for the per-lesion Dice term: the 1-2 voxel tips of lesions cut by a
# 6 mm slice weigh as much as a whole infarct, and the network learns to mark every dark
# speck. On the synthetic 6 x 2 x 2 mm CT stacks, 8 minutes: test Dice 0.634, 0.538, 0.692,
# 0.587, 0.688 without the term against 0.553, 0.554, 0.530, 0.456 with it (lesion F1
# higher without it in each pair run on the same host), so its CPU plan trains with Dice + CE.
register_configuration(ConfigurationKind(
    "2d_lcnn", "2d_lcnn", len(LCNN_LEVELS), 2, lcnn_rungs,
    recommend=lambda fingerprint: _thick(fingerprint) and _has_ct(fingerprint),
    per_lesion_loss=False, cpu_min_batch=CPU_MIN_BATCH_LCNN,
))  # fmt: skip
