"""A fully synthetic workspace for report tests: tiny NIfTI cases plus every JSON/CSV input.

Three test cases with known outcomes (shape ``(10, 16, 14)``, spacing 3 x 1 x 1 mm, so a
voxel is 0.003 ml):

- ``caseB``: prediction shifted off the lesion plus a false positive: the worst Dice.
- ``caseA``: the large lesion found exactly, a 2 x 2 x 2 lesion (0.024 ml) missed.
- ``caseC``: perfect.

``caseA`` also has the files ``autoseg_predict --save-uncertainty`` writes.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from autoseg.core.workspace import Workspace
from autoseg.data.io import write_label, write_volume
from autoseg.evaluation.folders import evaluate_folders
from tests.conftest import tiny_meta

NAME = "Tiny"
SHAPE = (10, 16, 14)
SPACING = (3.0, 1.0, 1.0)
WORST_FIRST = ("caseB", "caseA", "caseC")


def big_lesion() -> np.ndarray:
    """A lesion over z = 5..7 whose area peaks at z = 6 (the slice overlays must show)."""
    mask = np.zeros(SHAPE, np.uint8)
    mask[5, 6:9, 6:9] = 1
    mask[6, 4:11, 4:11] = 1
    mask[7, 5:10, 5:10] = 1
    return mask


def case_labels() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{case: (reference, prediction)}`` with the outcomes in the module docstring."""
    small = np.zeros(SHAPE, np.uint8)
    small[1:3, 1:3, 11:13] = 1
    shifted = np.roll(big_lesion(), 3, axis=2)  # overlaps the lesion, no wrap-around
    shifted[0, 0:2, 0:2] = 1  # a false positive far from every lesion
    return {
        "caseA": (big_lesion() | small, big_lesion()),
        "caseB": (big_lesion(), shifted),
        "caseC": (big_lesion(), big_lesion()),
    }


def write_cases(raw: Path, predictions: Path) -> None:
    """Images, references and predictions; caseA also gets uncertainty and lesion JSON."""
    meta = tiny_meta(SHAPE, SPACING)
    rng = np.random.default_rng(0)
    for case, (reference, prediction) in case_labels().items():
        image = rng.normal(100.0, 10.0, SHAPE).astype(np.float32) + 40.0 * reference
        write_volume(raw / "imagesTs" / f"{case}_0000.nii.gz", image, meta)
        write_label(raw / "labelsTs" / f"{case}.nii.gz", reference, meta)
        write_label(predictions / f"{case}.nii.gz", prediction, meta)
    uncertainty = np.clip(big_lesion().astype(np.float32) * 0.6, 0.0, 1.0)
    write_volume(predictions / "caseA_uncertainty.nii.gz", uncertainty, meta)
    write_volume(predictions / "caseA_disagreement.nii.gz", uncertainty * 0, meta)
    lesion = {"id": 1, "label": 1, "voxels": 83, "volume_ml": 0.249,
              "centroid_voxel_zyx": [6.1, 7.0, 7.0], "centroid_world_ras": [7.0, 7.0, 18.3],
              "mean_foreground_probability": 0.91, "min_foreground_probability": 0.55,
              "mean_entropy": 0.137, "mean_disagreement": 0.0}  # fmt: skip
    payload = {"case_id": "caseA", "members": 2, "connectivity": 26, "lesions": [lesion]}
    (predictions / "caseA_lesions.json").write_text(json.dumps(payload))


def fingerprint() -> dict:
    """A fingerprint in the format of :func:`autoseg.planning.aggregate.aggregate_cases`."""
    axis = {"min": [10, 16, 14], "percentile_10": [10, 16, 14], "median": [10, 16, 14],
            "max": [10, 16, 14]}  # fmt: skip
    spacing = {key: list(SPACING) for key in axis}
    volumes = [0.27, 0.0, 1.5, 12.0]
    cases = [{"case_id": f"train{i}", "lesions": {"volume_ml": v, "num_lesions": int(v > 0)}}
             for i, v in enumerate(volumes)]  # fmt: skip
    return {
        "dataset": NAME, "num_cases": 4, "labels": {"background": 0, "lesion": 1},
        "channels": [{"index": 0, "name": "T1w", "modality": "MR"}],
        "spacing_mm": spacing, "shape": axis, "shape_after_crop": axis,
        "lesions": {"cases_with_lesion": 3, "volume_ml": {"min": 0.0, "median": 0.885,
                    "mean": 3.4, "max": 12.0}, "smallest_ml": 0.27, "largest_ml": 12.0,
                    "num_lesions": {"min": 0, "median": 1, "mean": 0.75, "max": 1}},
        "cases": cases,
    }  # fmt: skip


def plans() -> dict:
    """Plans in the DESIGN §11 format (the fields the report reads)."""

    def configuration(name: str, patch: list[int], batch: int, memory: float) -> dict:
        return {"data_id": "3d_x", "spacing_mm": list(SPACING), "patch_size": patch,
                "batch_size": batch, "network": {"name": name, "kwargs": {}},
                "parameters": 1_234_567, "memory_estimate_gb": memory,
                "training": {"epochs": 50}}  # fmt: skip

    return {
        "schema_version": 1, "plans_id": "abc123", "dataset": NAME, "gpu_memory_gb": 8.0,
        "gpu_memory_source": "flag", "recommended_configuration": "3d_hybrid",
        "configurations": {"3d_hybrid": configuration("3d_hybrid", [8, 16, 16], 2, 6.0),
                           "2.5d_unet": configuration("2.5d_unet", [16, 16], 12, 2.0)},
    }  # fmt: skip


def write_training_log(path: Path, epochs: int = 5) -> None:
    """A ``training_log.csv`` with the columns :class:`autoseg.training.callbacks.CSVLog`
    writes (the first epoch's validation Dice is empty, as when validation is skipped)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["epoch", "train_loss", "val_loss", "pseudo_dice", "ema_dice", "lr",
                         "epoch_seconds"])  # fmt: skip
        for epoch in range(epochs):
            dice = "" if epoch == 0 else f"{0.1 * epoch:.3f}"
            writer.writerow([epoch, 1.0 - 0.1 * epoch, 1.1 - 0.1 * epoch, dice, dice, 0.01, 6.0])


def find_best() -> dict:
    """A ``find_best.json`` with two candidates; the ensemble is best."""

    def candidate(name: str, dice: float) -> dict:
        return {"name": name, "configurations": name.split("+"), "folds": [0, 1, 2, 3, 4],
                "num_cases": 20, "mean": {"dice": dice, "hd95_mm": 5.0},
                "mean_nonempty_reference": {"dice": dice - 0.01}}  # fmt: skip

    best = {**candidate("3d_hybrid+2.5d_unet", 0.777), "postprocessing": {"min_ml": 0.1},
            "mean_after_postprocessing": {"dice": 0.789}}  # fmt: skip
    return {"dataset": NAME, "convention": "isles22",
            "candidates": [candidate("3d_hybrid", 0.712), candidate("3d_hybrid+2.5d_unet", 0.777)],
            "best": best, "notes": ["2.5d_unet: only folds 0, 1 of 5 validated"]}  # fmt: skip


def write_minimal_workspace(root: Path) -> Workspace:
    """Only what planning writes: fingerprint.json and plans.json."""
    workspace = Workspace.under(root)
    folder = workspace.preprocessed / NAME
    folder.mkdir(parents=True)
    (folder / "fingerprint.json").write_text(json.dumps(fingerprint()))
    (folder / "plans.json").write_text(json.dumps(plans()))
    return workspace


def write_full_workspace(root: Path) -> Workspace:
    """Every input of the report, test metrics from the real ``evaluate_folders``."""
    workspace = write_minimal_workspace(root)
    results = workspace.results / NAME
    predictions = results / "test" / "predictions"
    write_cases(workspace.raw / NAME, predictions)
    for fold in (0, 1):
        write_training_log(results / "3d_hybrid" / f"fold_{fold}" / "training_log.csv")
    (results / "find_best.json").write_text(json.dumps(find_best()))
    evaluate_folders(workspace.raw / NAME / "labelsTs", predictions, results / "test" /
                     "metrics.json", num_processes=1, progress=False)  # fmt: skip
    return workspace
