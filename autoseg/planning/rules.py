"""Planning rules that depend on the data only: spacing, normalisation, schedules.

Everything here is a small named decision with its reason, read off the fingerprint.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from autoseg.planning import configurations
from autoseg.planning.device import CPU_MIN_PATCH_COVERAGE_3D
from autoseg.planning.topology import ANISOTROPY_RATIO, is_anisotropic
from autoseg.plans import Augmentation, InferenceWindow, TrainingSchedule

# Without an accelerator a model must be useful after minutes: a few thousand iterations.
# AdamW takes off within 2 epochs where SGD (momentum 0.99) took 10, and at 1,500
# iterations on ATLAS-like heads gave test Dice 0.27 against 0.15; centring half the
# foreground patches on a lesion drawn uniformly (not a voxel) lifted Dice 0.37 -> 0.39 and
# lesion F1 0.11 -> 0.18 at 3,000 iterations, and a per-lesion Dice term (dice_ce_lesion)
# Dice 0.57 -> 0.66, lesion F1 0.42 -> 0.61 (benchmarks/learning_curve.py data, 40 cases).
CPU_TRAINING = {"epochs": 30, "iterations_per_epoch": 50, "validation_iterations": 10,
                "optimizer": "adamw", "lr": 3e-3, "weight_decay": 1e-4,
                "per_lesion_sampling": 0.5, "loss": "dice_ce_lesion"}  # fmt: skip
# Windows a third of a patch apart instead of half: each voxel is averaged over more
# shifted views, and a model trained for minutes still depends on where a lesion sits in
# its window. Three 20-minute 3d_hybrid runs on 20 held-out ATLAS-like heads: Dice on the
# 18 with lesions 0.610 -> 0.645, 0.610 -> 0.618, 0.613 -> 0.625, lesion F1 up in all three,
# for 1.7x the windows (docs/quality.md).
WINDOW_STEP = 0.33
SMALLEST_LESION_SHARE = 0.5  # of the smallest training lesion: see default_postprocessing
CT_WINDOW_MARGIN = 1.0  # CT clip window: lesion range widened by this many widths per side
CPU_MAX_COARSENING_3D = 3.0  # never more than 3x the data's own spacing


def target_spacing(fingerprint: dict[str, Any]) -> list[float]:
    """Median spacing, with the thick axis made finer for strongly anisotropic data.

    Resampling every case to the median thick-axis spacing would leave that axis with so
    few voxels that the network cannot pool it; when the thick axis also has few voxels
    (3x fewer than the smallest other axis) its target becomes the 10th percentile of
    its spacings, but never finer than the coarsest other axis.
    """
    median = [float(v) for v in fingerprint["spacing_mm"]["median"]]
    if not is_anisotropic(median):
        return median
    thick = int(np.argmax(median))
    others = [a for a in range(3) if a != thick]
    shape = shape_at(fingerprint, median)
    if shape[thick] * ANISOTROPY_RATIO >= min(shape[a] for a in others):
        return median
    finer = float(fingerprint["spacing_mm"]["percentile_10"][thick])
    median[thick] = max(finer, max(median[a] for a in others))
    return median


def cpu_field_of_view_spacing(
    spacing_mm: list[float],
    shape: list[int],
    patch: list[int] | tuple[int, ...],
    data_spacing_mm: list[float],
) -> list[float] | None:
    """A coarser spacing for a CPU 3D plan whose patch sees too little of the image, or None.

    Scales every axis by one factor, chosen so that the same number of patch voxels would
    cover :data:`CPU_MIN_PATCH_COVERAGE_3D` of the median image (the planner fits the patch
    again at the new spacing), never beyond :data:`CPU_MAX_COARSENING_3D` times the data's
    own spacing. 2D patches and thick-slice data keep their spacing: a 2D patch holds a
    whole slice, and a thick axis is not made thicker.

    Args:
        spacing_mm: the spacing ``(z, y, x)`` the patch was fitted at.
        shape: the median cropped image shape at that spacing.
        patch: the patch fitted there.
        data_spacing_mm: the target spacing before any coarsening (the cap's base).
    """
    if len(patch) != 3 or is_anisotropic(spacing_mm):
        return None
    coverage = float(np.prod(patch)) / float(np.prod(shape))
    if coverage >= CPU_MIN_PATCH_COVERAGE_3D:
        return None
    factor = (CPU_MIN_PATCH_COVERAGE_3D / coverage) ** (1 / 3)
    coarser = [min(round(s * factor, 2), round(d * CPU_MAX_COARSENING_3D, 2))
               for s, d in zip(spacing_mm, data_spacing_mm, strict=True)]  # fmt: skip
    return None if coarser == list(spacing_mm) else coarser


def shape_at(fingerprint: dict[str, Any], spacing_mm: list[float]) -> list[int]:
    """Median cropped image shape in voxels after resampling to ``spacing_mm``."""
    shape = fingerprint["shape_after_crop"]["median"]
    median = fingerprint["spacing_mm"]["median"]
    return [max(1, round(n * s / t)) for n, s, t in zip(shape, median, spacing_mm, strict=True)]


def dataset_voxels_at(fingerprint: dict[str, Any], spacing_mm: list[float]) -> float:
    """All training voxels (after cropping) at the target spacing: the 5 % batch cap's base."""
    ratio = np.prod(fingerprint["spacing_mm"]["median"]) / np.prod(spacing_mm)
    return float(fingerprint["voxels_after_crop_total"] * ratio)


def ct_window(foreground: dict[str, float]) -> tuple[float, float]:
    """The CT clip window: the lesions' 0.5-99.5 percentile range widened by its own width
    on each side.

    Clipping to the lesions' own range alone (nnU-Net's rule) makes everything darker than
    the darkest lesion voxel read as lesion core: acute infarcts span only 10-20 HU, so CSF
    a few HU below them was clipped onto them, and a 2D model marked every sulcus. One
    range-width each side keeps CSF, grey and white matter apart (on a 14-24 HU lesion
    range it is about the 0-80 HU brain window) and still clips bone and air.
    """
    low, high = foreground["percentile_00_5"], foreground["percentile_99_5"]
    margin = CT_WINDOW_MARGIN * (high - low)
    return low - margin, high + margin


def normalization(fingerprint: dict[str, Any]) -> list[dict[str, Any]]:
    """Per channel: CT clips to a window around the lesions' intensities (:func:`ct_window`)
    then applies a global z-score (HU are comparable across scans); MR/DWI intensities are
    arbitrary per scan, so each image is z-scored inside its own brain mask."""
    entries = []
    for channel in fingerprint["channels"]:
        if channel["modality"] == "CT":
            fg = channel["foreground"]
            clip_low, clip_high = ct_window(fg)
            entries.append({
                "scheme": "ct",
                "clip_low": clip_low,
                "clip_high": clip_high,
                "mean": fg.get("mean_clipped", fg["mean"]),
                "std": max(fg.get("std_clipped", fg["std"]), 1e-8),
            })  # fmt: skip
        else:
            entries.append({"scheme": "zscore_brain", "clip_low": None, "clip_high": None,
                            "mean": None, "std": None})  # fmt: skip
    return entries


def recommended_configuration(fingerprint: dict[str, Any]) -> str:
    """The configuration the data suits best: each registered configuration's own rule
    (see :mod:`autoseg.planning.configurations`), the first that accepts."""
    return configurations.recommended_configuration(fingerprint)


def default_postprocessing(fingerprint: dict[str, Any]) -> dict[str, Any]:
    """Predicted lesions smaller than a share of the smallest training lesion are dropped.

    A model cannot have learnt a lesion far smaller than any it was shown, so such a
    component is noise: on lesion-free heads it alone sets the Dice to 0, and everywhere
    it adds a false lesion to the count. The share leaves room for a true small lesion
    found only in part. Where the training labels hold one-voxel lesions (hand-drawn
    masks often do) the rule keeps everything.
    """
    smallest_ml = float(fingerprint.get("lesions", {}).get("smallest_ml", 0.0))
    if smallest_ml <= 0:
        return {}
    return {"min_lesion_ml": round(SMALLEST_LESION_SHARE * smallest_ml, 6)}


def slice_context(spacing_mm: list[float]) -> int:
    """Adjacent slices on each side (T): one for thick slices (>= 4 mm), else two."""
    return 1 if spacing_mm[0] >= 4.0 else 2


def deep_supervision_weights(outputs: int) -> list[float]:
    """Halving weights per coarser scale, the coarsest left out, normalised to sum 1."""
    raw = [0.5**i for i in range(outputs)]
    if outputs > 1:
        raw[-1] = 0.0
    total = sum(raw)
    return [w / total for w in raw]


def augmentation(dims: int, anisotropic: bool) -> dict[str, Any]:
    """The default ranges; thick-slice data rotates in-plane only (dummy 2D)."""
    axes = "in_plane" if anisotropic or dims == 2 else "all"
    return Augmentation.new(rotation_axes=axes, mirror_axes=tuple(range(dims))).to_json()


def inference(dims: int) -> dict[str, Any]:
    """Sliding window defaults (windows a third of a patch apart, Gaussian weighting),
    mirroring every axis."""
    return InferenceWindow.new(step=WINDOW_STEP, mirror_axes=tuple(range(dims))).to_json()


def training(
    outputs: int, amp: bool, checkpointing: bool, cpu: bool, per_lesion_loss: bool = True
) -> dict[str, Any]:
    """The training schedule of a configuration: the defaults, or the CPU schedule (with
    Dice + CE alone when the configuration does without the per-lesion term)."""
    schedule = {**CPU_TRAINING, "loss": CPU_TRAINING["loss"] if per_lesion_loss else "dice_ce"}
    return TrainingSchedule.new(
        **(schedule if cpu else {}),
        amp=amp,
        activation_checkpointing=checkpointing,
        deep_supervision_weights=tuple(deep_supervision_weights(outputs)),
    ).to_json()
