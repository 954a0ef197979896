"""Why lesions are missed or invented: one row per reference lesion, one per postprocessing rule.

    python benchmarks/lesion_failures.py --predictions PRED --images IMAGES --labels LABELS \\
        [--out lesions.tsv]

``PRED`` is an ``autoseg_predict --save-probabilities`` folder (``<case>.npz``), ``IMAGES``
and ``LABELS`` the raw ``imagesTr`` / ``labelsTr`` of the same cases. For every reference
lesion (26-connected) it reports its volume, its contrast-to-noise ratio against a shell
around it (first channel; |mean inside - mean of the shell 1-3 voxels out| / shell SD, the
shell without other lesions) and the highest lesion probability the model gave it, so a
miss reads as "low contrast" (CNR under ``--visible-cnr``) or "contrasted but not found".
A low shell CNR is not proof that a lesion cannot be seen: beside sulcal CSF the shell mixes
CSF and grey matter, and its spread hides a lesion several noise SDs darker than the grey
matter it replaced. On the harder generator's test set a 2 mm model missed 13 small
lesions, 8 of them under the 0.5 shell cut; 11 of the 13 were 1.5-9 SDs darker than the
same tissue around them, most of them cortical lesions touching a sulcus. Then
every postprocessing rule of :mod:`autoseg.inference.postprocess` plus a few thresholds is
applied to the same probabilities: mean Dice, recall by lesion size (all lesions and visible
ones only), false-positive components and pooled lesion F1.

The rules are scored on the cases given, so a rule chosen from this table is tuned on them:
use it to see which kind of postprocessing helps, and let ``autoseg_find_best`` choose on
cross-validation.
"""

from __future__ import annotations

import argparse
import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from autoseg.data.io import read_volume
from autoseg.data.prediction_files import read_probabilities
from autoseg.evaluation.lesions import label_components
from autoseg.inference.postprocess import postprocess

CONNECTIVITY = 26
SIZE_BINS_ML = ((0.0, 1.5), (1.5, 10.0), (10.0, math.inf))
RULES: dict[str, dict] = {
    "argmax": {},
    "threshold 0.3": {"threshold": 0.3},
    "min 5 voxels": {"min_component_voxels": 5},
    "min 10 voxels": {"min_component_voxels": 10},
    "peak 0.8": {"min_component_peak": 0.8},
    "peak 0.9": {"min_component_peak": 0.9},
    "peak 0.95": {"min_component_peak": 0.95},
}


@dataclass(frozen=True)
class Lesion:
    """One reference lesion: where, how large, how visible, how confident the model was."""

    case_id: str
    volume_ml: float
    cnr: float
    peak_probability: float


def lesion_rows(image: np.ndarray, reference: np.ndarray, foreground: np.ndarray,
                case_id: str, voxel_ml: float) -> list[Lesion]:  # fmt: skip
    """One :class:`Lesion` per reference component of a ``(Z, Y, X)`` case."""
    labels, count = label_components(reference, CONNECTIVITY)
    rows = []
    for index in range(1, count + 1):
        inside = labels == index
        rows.append(Lesion(case_id, float(inside.sum()) * voxel_ml,
                           shell_cnr(image, inside, reference),
                           float(foreground[inside].max())))  # fmt: skip
    return rows


def shell_cnr(image: np.ndarray, inside: np.ndarray, reference: np.ndarray) -> float:
    """|mean inside - mean of the shell 1-3 voxels out| / shell SD; the shell leaves out
    every reference voxel, so a neighbouring lesion does not count as surrounding tissue."""
    near = ndimage.binary_dilation(inside, iterations=3)
    shell = near & ~ndimage.binary_dilation(inside, iterations=1) & ~reference
    spread = float(image[shell].std()) if shell.any() else 0.0
    if not spread:
        return 0.0
    return abs(float(image[inside].mean()) - float(image[shell].mean())) / spread


def rule_scores(reference: np.ndarray, prediction: np.ndarray) -> tuple[float, list[bool], int]:
    """Dice, detected flag per reference lesion (any overlap), false-positive components."""
    total = int(reference.sum()) + int(prediction.sum())
    dice = 1.0 if total == 0 else 2.0 * int((reference & prediction).sum()) / total
    labels, count = label_components(reference, CONNECTIVITY)
    hit = np.zeros(count + 1, bool)
    hit[np.unique(labels[prediction])] = True
    predicted, predicted_count = label_components(prediction, CONNECTIVITY)
    touching = np.count_nonzero(np.unique(predicted[reference]))
    return dice, hit[1:].tolist(), predicted_count - touching


def analyse(args: argparse.Namespace) -> tuple[list[Lesion], dict[str, dict]]:
    """Lesion rows and, per rule, Dice per case, detections and false positives."""
    lesions: list[Lesion] = []
    results: dict[str, dict] = {name: {"dice": [], "hits": [], "fp": 0} for name in RULES}
    probability_files = sorted(args.predictions.glob("*.npz"))
    if not probability_files:
        raise SystemExit(f"{args.predictions}: no <case>.npz files; predict with "
                         "autoseg_predict --save-probabilities")  # fmt: skip
    for npz in probability_files:
        case_id = npz.name[: -len(".npz")]
        label_file = next(args.labels.glob(f"{case_id}.*"))
        image_file = next(args.images.glob(f"{case_id}_0000.*"))
        reference_labels, meta = read_volume(label_file)
        reference = reference_labels > 0
        image, _ = read_volume(image_file)
        probabilities = read_probabilities(npz).astype(np.float32)
        voxel_ml = float(np.prod(meta.spacing_mm)) / 1000.0
        lesions += lesion_rows(image.astype(np.float32), reference, 1.0 - probabilities[0],
                               case_id, voxel_ml)  # fmt: skip
        argmax = np.argmax(probabilities, axis=0).astype(np.uint8)
        for name, spec in RULES.items():
            dice, hits, fp = rule_scores(reference, postprocess(argmax, spec, probabilities) > 0)
            results[name]["dice"].append(dice)
            results[name]["hits"] += hits
            results[name]["fp"] += fp
    return lesions, results


def recall(hits: np.ndarray, volumes: np.ndarray, low: float, high: float) -> str:
    chosen = (volumes >= low) & (volumes < high)
    return f"{hits[chosen].mean():.2f} ({chosen.sum()})" if chosen.any() else "-"


def print_tables(lesions: list[Lesion], results: dict[str, dict], visible_cnr: float) -> None:
    volumes = np.array([lesion.volume_ml for lesion in lesions])
    visible = np.array([lesion.cnr >= visible_cnr for lesion in lesions])
    print(f"{len(lesions)} reference lesions; {int(visible.sum())} with CNR >= {visible_cnr}")
    for low, high in SIZE_BINS_ML:
        chosen = (volumes >= low) & (volumes < high)
        found = np.array([lesion.peak_probability >= 0.5 for lesion in lesions])
        print(f"  {low:g}-{high:g} ml: {chosen.sum()} lesions, {(chosen & ~visible).sum()} "
              f"under the CNR cut; found (peak >= 0.5) {(chosen & found).sum()}, of the visible "
              f"{(chosen & found & visible).sum()} / {(chosen & visible).sum()}")  # fmt: skip
    bins = " ".join(f"rec{low:g}-{high:g}" for low, high in SIZE_BINS_ML)
    print(f"\n| rule | mean Dice | {bins} (all) | <1.5 ml visible | FP components | F1 |")
    print("|---|---|---|---|---|---|")
    for name, result in results.items():
        hits = np.array(result["hits"], bool)
        cells = " ".join(recall(hits, volumes, low, high) for low, high in SIZE_BINS_ML)
        small_visible = recall(hits[visible], volumes[visible], *SIZE_BINS_ML[0])
        f1 = 2 * hits.sum() / max(1, 2 * hits.sum() + result["fp"] + (~hits).sum())
        print(f"| {name} | {np.mean(result['dice']):.3f} | {cells} | {small_visible} | "
              f"{result['fp']} | {f1:.3f} |")  # fmt: skip


def write_tsv(path: Path, lesions: list[Lesion]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t")
        writer.writerow(["case_id", "volume_ml", "cnr", "peak_probability"])
        for lesion in lesions:
            writer.writerow([lesion.case_id, f"{lesion.volume_ml:.4f}", f"{lesion.cnr:.3f}",
                             f"{lesion.peak_probability:.4f}"])  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--predictions", type=Path, required=True)
    parser.add_argument("--images", type=Path, required=True)
    parser.add_argument("--labels", type=Path, required=True)
    parser.add_argument("--visible-cnr", type=float, default=0.5)
    parser.add_argument("--out", type=Path, help="per-lesion TSV")
    args = parser.parse_args()
    lesions, results = analyse(args)
    print_tables(lesions, results, args.visible_cnr)
    if args.out is not None:
        write_tsv(args.out, lesions)


if __name__ == "__main__":
    main()
