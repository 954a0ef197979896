"""Aggregate per-case fingerprint statistics into the dataset fingerprint.

Pooled intensity statistics come from each case's deterministic voxel samples, so the
aggregate is the same whatever order or process the cases were computed in.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from autoseg.data.layout import DatasetJson
from autoseg.planning.case_stats import PERCENTILES, channel_modality
from autoseg.plans.jsonutil import round_floats

PRIVATE_CASE_KEYS = ("version", "files")


def summary(values: list[float] | np.ndarray) -> dict[str, float]:
    """min / median / mean / max of a list (zeros when empty)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return {"min": 0.0, "median": 0.0, "mean": 0.0, "max": 0.0}
    return {
        "min": float(values.min()),
        "median": float(np.median(values)),
        "mean": float(values.mean()),
        "max": float(values.max()),
    }


def axis_summary(rows: list[list[float]]) -> dict[str, list[float]]:
    """Per-axis min / 10th percentile / median / max of ``(z, y, x)`` rows (one per case)."""
    array = np.asarray(rows, dtype=np.float64)
    return {
        "min": array.min(axis=0).tolist(),
        "percentile_10": np.percentile(array, 10, axis=0).tolist(),
        "median": np.median(array, axis=0).tolist(),
        "max": array.max(axis=0).tolist(),
    }


def pooled_stats(samples: list[float]) -> dict[str, float]:
    """Mean, std and 0.5/99.5 percentiles of pooled voxel samples.

    ``mean_clipped`` / ``std_clipped`` are taken after clipping to those percentiles: the
    statistics CT normalisation applies after its own clipping.
    """
    if not samples:
        return {"mean": 0.0, "std": 1.0, "mean_clipped": 0.0, "std_clipped": 1.0,
                "percentile_00_5": 0.0, "percentile_99_5": 0.0}  # fmt: skip
    values = np.asarray(samples, dtype=np.float64)
    low, high = np.percentile(values, PERCENTILES)
    clipped = np.clip(values, low, high)
    return {
        "mean": float(values.mean()),
        "std": float(values.std()),
        "mean_clipped": float(clipped.mean()),
        "std_clipped": float(clipped.std()),
        "percentile_00_5": float(low),
        "percentile_99_5": float(high),
    }


def channel_summary(index: int, name: str, cases: list[dict[str, Any]]) -> dict[str, Any]:
    """Name, modality and pooled foreground / brain intensities of one channel."""
    stats = [case["channels"][index] for case in cases]
    image_min = min(s["image_min"] for s in stats)
    return {
        "index": index,
        "name": name,
        "modality": channel_modality(name, image_min),
        "image_min": image_min,
        "image_max": max(s["image_max"] for s in stats),
        "foreground": pooled_stats([v for s in stats for v in s["foreground_samples"]]),
        "brain": pooled_stats([v for s in stats for v in s["brain_samples"]]),
    }


def lesion_summary(cases: list[dict[str, Any]]) -> dict[str, Any]:
    """Lesion burden over the dataset: volumes, counts, component sizes."""
    lesions = [case["lesions"] for case in cases]
    with_lesion = [les for les in lesions if les["num_lesions"] > 0]
    return {
        "cases_with_lesion": len(with_lesion),
        "volume_ml": summary([les["volume_ml"] for les in lesions]),
        "percent_of_brain": summary([les["percent_of_brain"] for les in lesions]),
        "num_lesions": summary([les["num_lesions"] for les in lesions]),
        "smallest_ml": min((les["smallest_ml"] for les in with_lesion), default=0.0),
        "median_ml": summary([les["median_ml"] for les in with_lesion])["median"],
        "largest_ml": max((les["largest_ml"] for les in with_lesion), default=0.0),
    }


def label_frequencies(cases: list[dict[str, Any]]) -> dict[str, float]:
    """Fraction of all voxels carrying each label value."""
    totals: dict[str, int] = {}
    for case in cases:
        for value, count in case["label_counts"].items():
            totals[value] = totals.get(value, 0) + count
    voxels = sum(totals.values()) or 1
    return {value: count / voxels for value, count in sorted(totals.items())}


def public_case(case: dict[str, Any]) -> dict[str, Any]:
    """A case's statistics without the voxel samples and cache bookkeeping."""
    channels = [
        {k: v for k, v in ch.items() if not k.endswith("_samples")} for ch in case["channels"]
    ]
    kept = {k: v for k, v in case.items() if k not in PRIVATE_CASE_KEYS}
    return {**kept, "channels": channels}


def aggregate_cases(
    dataset_json: DatasetJson, cases: list[dict[str, Any]], dataset_name: str
) -> dict[str, Any]:
    """The dataset fingerprint from per-case statistics (sorted by case id).

    ``dataset_name`` is the raw folder's name, the key every stage files results under.

    Returns:
        JSON-ready dict with ``dataset``, ``num_cases``, ``channels`` (modality, pooled
        intensities), ``spacing_mm`` / ``shape`` / ``shape_after_crop`` summaries,
        ``voxels_after_crop_total``, ``lesions``, ``label_frequencies`` and ``cases``.
    """
    cases = sorted(cases, key=lambda case: case["case_id"])
    names = [dataset_json.channel_names[str(i)] for i in range(dataset_json.num_channels)]
    crop_voxels = [int(np.prod(case["shape_after_crop"])) for case in cases]
    fingerprint = {
        "dataset": dataset_name,
        "num_cases": len(cases),
        "labels": dict(sorted(dataset_json.labels.items(), key=lambda item: item[1])),
        "channels": [channel_summary(i, name, cases) for i, name in enumerate(names)],
        "spacing_mm": axis_summary([case["spacing_mm"] for case in cases]),
        "shape": axis_summary([case["shape"] for case in cases]),
        "shape_after_crop": axis_summary([case["shape_after_crop"] for case in cases]),
        "voxels_after_crop_total": int(sum(crop_voxels)),
        "lesions": lesion_summary(cases),
        "label_frequencies": label_frequencies(cases),
        "cases": [public_case(case) for case in cases],
    }
    return round_floats(fingerprint, 6)
