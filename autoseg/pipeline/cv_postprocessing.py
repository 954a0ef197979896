"""Choosing postprocessing on cross-validation (the last step of ``autoseg_find_best``).

Candidates are a foreground-probability threshold, a minimum lesion size and a minimum
lesion peak probability (see :mod:`autoseg.inference.postprocess`), tried alone and
together on the saved validation probabilities of the winning model, each on top of the
plans' default (the size rule read off the training labels), which is the baseline. A
choice is kept only if it raises the CV mean Dice without lowering the CV mean lesion F1:
postprocessing that trades detections for overlap would hide lesions a reader cares about.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from autoseg.data.io import read_meta, read_volume
from autoseg.data.records import ImageMeta
from autoseg.evaluation.lesions import count_lesions, get_convention
from autoseg.evaluation.metrics import evaluate_labels, overlap_metrics
from autoseg.evaluation.summary import CaseResult, summarise
from autoseg.inference.calibration import rescale_probabilities
from autoseg.inference.ensemble import probability_files
from autoseg.inference.outputs import read_probabilities
from autoseg.inference.postprocess import postprocess

THRESHOLDS = (0.3, 0.4, 0.6, 0.7)
# Smallest lesion volumes worth keeping, in mm^3, turned into voxels at the data's spacing.
MIN_COMPONENT_MM3 = (5.0, 10.0, 20.0, 50.0, 100.0)
# A component must reach this foreground probability somewhere to stay (tried without a
# threshold: both act on the probabilities and together would multiply the candidates).
MIN_COMPONENT_PEAKS = (0.8, 0.9, 0.95)
MIN_DICE_GAIN = 1e-4


def min_component_grid(voxel_mm3: float) -> list[int]:
    """Minimum component sizes in voxels for a voxel volume (at least 2, deduplicated)."""
    return sorted({max(2, round(v / voxel_mm3)) for v in MIN_COMPONENT_MM3})


def candidate_specs(voxel_mm3: float) -> list[dict[str, Any]]:
    """Every spec tried, simplest first (``{}`` = none)."""
    thresholds: list[float | None] = [None, *THRESHOLDS]
    sizes: list[int | None] = [None, *min_component_grid(voxel_mm3)]
    specs = []
    for threshold, size in itertools.product(thresholds, sizes):
        spec: dict[str, Any] = {}
        if threshold is not None:
            spec["threshold"] = threshold
        if size is not None:
            spec["min_component_voxels"] = size
        specs.append(spec)
    for peak, size in itertools.product(MIN_COMPONENT_PEAKS, sizes):
        spec = {"min_component_peak": peak}
        specs.append(spec if size is None else {**spec, "min_component_voxels": size})
    return sorted(specs, key=len)


def quick_scores(
    reference: np.ndarray, prediction: np.ndarray, labels: Sequence[int], connectivity: int
) -> tuple[float, float]:
    """Mean over labels of Dice and lesion F1 (the two numbers the choice rests on)."""
    dice, f1 = [], []
    for label in labels:
        ref, pred = reference == label, prediction == label
        dice.append(overlap_metrics(ref, pred)["dice"])
        f1.append(count_lesions(ref, pred, connectivity).f1)
    return float(np.mean(dice)), float(np.mean(f1))


def validation_cases(
    folders: Sequence[Path], reference_dir: Path, ending: str
) -> list[tuple[str, Path, Path]]:
    """``(case_id, probabilities npz, reference file)`` of every saved validation case."""
    return [
        (case_id, npz, reference_dir / f"{case_id}{ending}")
        for folder in folders
        for case_id, npz in probability_files(Path(folder)).items()
    ]


def load_cases(
    cases: Sequence[tuple[str, Path, Path]], temperature: float = 1.0
) -> Iterator[tuple[str, np.ndarray, np.ndarray, ImageMeta]]:
    """Read the cases one at a time (a CV set of probabilities does not fit in memory),
    calibrated with ``temperature`` as prediction will calibrate them."""
    for case_id, npz, reference_file in cases:
        reference, meta = read_volume(reference_file)
        probabilities = read_probabilities(npz).astype(np.float32)
        yield case_id, rescale_probabilities(probabilities, temperature), reference, meta


def choose(
    scores: dict[int, list[tuple[float, float]]], specs: Sequence[dict[str, Any]]
) -> tuple[int, list[dict[str, Any]]]:
    """Index of the chosen spec (0: the baseline, the plans' default alone) and the mean
    scores of every spec."""
    table = [
        {
            "postprocessing": spec,
            "dice": float(np.mean([s[0] for s in scores[i]])),
            "lesion_f1": float(np.mean([s[1] for s in scores[i]])),
        }
        for i, spec in enumerate(specs)
    ]
    base, best = table[0], 0
    for i, row in enumerate(table):
        helps = row["dice"] > base["dice"] + MIN_DICE_GAIN
        keeps_f1 = row["lesion_f1"] >= base["lesion_f1"] - 1e-9
        better = (row["dice"], row["lesion_f1"]) > (table[best]["dice"], table[best]["lesion_f1"])
        if helps and keeps_f1 and better:
            best = i
    return best, table


def search_postprocessing(
    folders: Sequence[Path],
    reference_dir: Path,
    ending: str,
    labels: Sequence[int],
    convention: str,
    temperature: float = 1.0,
    sizes_only: bool = False,
    base: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    """Try every candidate spec on the saved validation probabilities (calibrated).

    Args:
        folders: validation prediction folders with ``<case>.npz`` probabilities.
        reference_dir: the reference labels (``labelsTr``).
        ending: their file ending.
        labels: foreground labels to score.
        convention: lesion convention (connectivity).
        temperature: the model's calibration, applied to the probabilities first.
        sizes_only: try minimum component sizes only (cases the model was trained on: a
            model is surer of its training lesions, which flatters a lower threshold and
            a peak cut there, while a size cut is judged more harshly than on new cases).
        base: the plans' default postprocessing, under every candidate (None: nothing).

    Returns:
        ``(chosen spec, per-spec mean Dice / lesion F1, summary with every metric after the
        chosen spec)``.
    """
    connectivity = get_convention(convention).connectivity_3d
    cases = validation_cases(folders, reference_dir, ending)
    if not cases:
        return dict(base or {}), [], {}
    voxel_mm3 = float(np.median([np.prod(read_meta(ref).spacing_mm) for *_, ref in cases]))
    specs = candidate_specs(voxel_mm3)
    if sizes_only:
        specs = [spec for spec in specs if set(spec) <= {"min_component_voxels"}]
    specs = [{**(base or {}), **spec} for spec in specs]
    scores: dict[int, list[tuple[float, float]]] = {i: [] for i in range(len(specs))}
    for _, probabilities, reference, meta in load_cases(cases, temperature):
        argmax = np.argmax(probabilities, axis=0).astype(np.uint8)
        for i, spec in enumerate(specs):
            prediction = postprocess(argmax, spec, probabilities, meta.spacing_mm)
            scores[i].append(quick_scores(reference, prediction, labels, connectivity))
    best, table = choose(scores, specs)
    return specs[best], table, _summary_after(cases, specs[best], labels, convention, temperature)


def _summary_after(
    cases: Sequence[tuple[str, Path, Path]],
    spec: dict[str, Any],
    labels: Sequence[int],
    convention: str,
    temperature: float = 1.0,
) -> dict[str, Any]:
    """Every metric of the validation cases with ``spec`` applied (summary.json format)."""
    results = []
    for case_id, probabilities, reference, meta in load_cases(cases, temperature):
        argmax = np.argmax(probabilities, axis=0).astype(np.uint8)
        prediction = postprocess(argmax, spec, probabilities, meta.spacing_mm)
        metrics = evaluate_labels(reference, prediction, meta.spacing_mm, labels, convention)
        voxels = {label: int(np.count_nonzero(reference == label)) for label in labels}
        results.append(CaseResult(case_id, "", "", metrics, voxels))
    summary = summarise(results, labels)
    summary.pop("cases")
    return summary
