"""Which reference lesions several models find: by all of them, by some, by none.

    python benchmarks/lesion_agreement.py --labels LABELS [--images IMAGES] \\
        --models NAME=PRED [NAME=PRED ...] [--min-lesion-ml V] [--out lesions.tsv] \\
        [--gallery missed.png]

``LABELS`` holds the reference masks (``labelsTr``), ``IMAGES`` the raw first-channel
images of the same cases (``imagesTr``, ``<case>_0000.*``; needed for the contrast column
and the gallery), each ``PRED`` one model's predicted masks (``<case>.*``). A lesion counts
as found when a predicted voxel touches it (26-connected components, as the challenge
metrics count them).

Why: from one run to the next a model's recall of small lesions moves by several lesions,
so a variant that scores a little higher may have found other lesions or the same ones by
chance. If every model misses the same lesions, recall is bounded by those lesions (their
contrast, where they lie), not by the run, and no variant of the training recipe that
leaves this set unchanged is worth another measurement. The table gives, per size band,
each model's recall and how many lesions all, some or none of the models found, with the
median shell contrast (``lesion_failures.shell_cnr``) of each group. ``--gallery`` draws an
axial crop through every small lesion no model found, with its outline.
``--min-lesion-ml`` applies the plans' size rule to masks saved with
``autoseg_predict --no-postprocessing``.
"""

from __future__ import annotations

import argparse
import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib
import numpy as np
from lesion_failures import SIZE_BINS_ML, shell_cnr

from autoseg.core.atomic import atomic_path
from autoseg.core.errors import InvalidInputError
from autoseg.data.io import read_volume
from autoseg.evaluation.folders import CasePair, check_geometry, pair_cases, volume_files
from autoseg.evaluation.lesions import label_components
from autoseg.inference.postprocess import postprocess

CONNECTIVITY = 26
CROP_VOXELS = 16  # half the gallery crop's side
GALLERY_COLUMNS = 4  # lesions per row of the gallery
SMALL_ML = SIZE_BINS_ML[0][1]  # the gallery shows lesions under this volume


@dataclass(frozen=True)
class Crop:
    """The axial plane (first axis fixed) through a lesion, cropped around it, with its
    outline and the head's 1-99 percentile grey range to show it in."""

    plane: np.ndarray
    outline: np.ndarray
    grey: tuple[float, float]


@dataclass
class ReferenceLesion:
    """One reference lesion, which models touched it, and its crop if it is drawn."""

    case_id: str
    index: int
    volume_ml: float
    centre: tuple[int, int, int]
    cnr: float | None
    found: dict[str, bool] = field(default_factory=dict)
    crop: Crop | None = None

    @property
    def missed_small(self) -> bool:
        return self.volume_ml < SMALL_ML and not any(self.found.values())


@dataclass(frozen=True)
class Inputs:
    """Every file the run reads, paired by case id before any voxel is read."""

    references: dict[str, Path]
    images: dict[str, Path] | None
    predictions: dict[str, dict[str, Path]]  # model name -> case id -> file


def collect_inputs(args: argparse.Namespace) -> Inputs:
    """Pair each model's folder and the images with the references (``autoseg_evaluate``'s
    pairing and header geometry check: every missing file and mismatch in one error)."""
    predictions = {}
    for name, folder in args.models:
        pairs = pair_cases(args.labels, folder)
        check_geometry(pairs)
        predictions[name] = {pair.case_id: pair.prediction_file for pair in pairs}
    references = volume_files(args.labels)
    images = None
    if args.images is not None:
        found = volume_files(args.images)
        missing = [f"{args.images}: no {case}_0000 image" for case in references
                   if f"{case}_0000" not in found]  # fmt: skip
        if missing:
            raise InvalidInputError(missing)
        images = {case: found[f"{case}_0000"] for case in references}
        check_geometry([CasePair(case, references[case], images[case]) for case in references])
    return Inputs(references, images, predictions)


def read_mask(path: Path, min_lesion_ml: float) -> np.ndarray:
    """A predicted mask as booleans, components under ``min_lesion_ml`` removed."""
    labels, meta = read_volume(path)
    labels = (labels > 0).astype(np.uint8)
    if min_lesion_ml > 0:
        labels = postprocess(labels, {"min_lesion_ml": min_lesion_ml}, None, meta.spacing_mm)
    return labels > 0


def central_voxel(inside: np.ndarray) -> tuple[int, int, int]:
    """The lesion voxel nearest its centre of mass: a curved lesion's centre of mass may lie
    outside it, and the gallery's plane must cut the lesion."""
    voxels = np.argwhere(inside)
    nearest = np.argmin(((voxels - voxels.mean(axis=0)) ** 2).sum(axis=1))
    return tuple(int(v) for v in voxels[nearest])


def lesion_crop(image: np.ndarray, components: np.ndarray, lesion: ReferenceLesion) -> Crop:
    z, y, x = lesion.centre
    crop = tuple(slice(max(0, c - CROP_VOXELS), c + CROP_VOXELS) for c in (y, x))
    grey = np.percentile(image[image != 0], [1, 99]) if image.any() else (0.0, 1.0)
    return Crop(image[z][crop], components[z][crop] == lesion.index,
                (float(grey[0]), float(grey[1])))  # fmt: skip


def case_lesions(
    case_id: str, inputs: Inputs, min_lesion_ml: float, gallery: bool
) -> list[ReferenceLesion]:
    """Every reference lesion of one case, with the models that found it; with ``gallery``,
    the crop of each small lesion no model found, cut while the case is in memory."""
    reference_labels, meta = read_volume(inputs.references[case_id])
    reference = reference_labels > 0
    components, count = label_components(reference, CONNECTIVITY)
    image = None
    if inputs.images is not None:
        image = read_volume(inputs.images[case_id])[0].astype(np.float32)
    voxel_ml = float(np.prod(meta.spacing_mm)) / 1000.0
    sizes = np.bincount(components.ravel(), minlength=count + 1)
    lesions = []
    for index in range(1, count + 1):
        inside = components == index
        cnr = None if image is None else shell_cnr(image, inside, reference)
        lesions.append(ReferenceLesion(case_id, index, sizes[index] * voxel_ml,
                                       central_voxel(inside), cnr))  # fmt: skip
    for name, files in inputs.predictions.items():
        touched = set(np.unique(components[read_mask(files[case_id], min_lesion_ml)]).tolist())
        for lesion in lesions:
            lesion.found[name] = lesion.index in touched
    if gallery and image is not None:
        for lesion in lesions:
            if lesion.missed_small:
                lesion.crop = lesion_crop(image, components, lesion)
    return lesions


def median_cnr(lesions: list[ReferenceLesion]) -> str:
    values = [lesion.cnr for lesion in lesions if lesion.cnr is not None]
    return f"{np.median(values):.2f}" if values else "-"


def print_table(lesions: list[ReferenceLesion], names: list[str]) -> None:
    """Per size band: recall per model, then how many lesions all / some / no models found."""
    header = " | ".join(names)
    print(f"| lesions | n | {header} | found by all | by some | by none | "
          "median CNR: all / none |")  # fmt: skip
    print("|" + "---|" * (len(names) + 6))
    for low, high in SIZE_BINS_ML:
        band = [lesion for lesion in lesions if low <= lesion.volume_ml < high]
        if not band:
            continue
        recalls = " | ".join(f"{np.mean([x.found[n] for x in band]):.2f}" for n in names)
        by_all = [x for x in band if all(x.found.values())]
        by_none = [x for x in band if not any(x.found.values())]
        label = f"{low:g}-{high:g} ml" if math.isfinite(high) else f">= {low:g} ml"
        print(f"| {label} | {len(band)} | {recalls} | {len(by_all)} | "
              f"{len(band) - len(by_all) - len(by_none)} | {len(by_none)} | "
              f"{median_cnr(by_all)} / {median_cnr(by_none)} |")  # fmt: skip


def write_tsv(path: Path, lesions: list[ReferenceLesion], names: list[str]) -> None:
    with atomic_path(path) as temp, open(temp, "w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t")
        writer.writerow(["case_id", "lesion", "volume_ml", "cnr", "centre_zyx", *names, "found_by"])
        for x in lesions:
            cnr = "" if x.cnr is None else f"{x.cnr:.3f}"
            flags = [int(x.found[n]) for n in names]
            writer.writerow([x.case_id, x.index, f"{x.volume_ml:.4f}", cnr,
                             " ".join(map(str, x.centre)), *flags, sum(flags)])  # fmt: skip


def draw_gallery(path: Path, lesions: list[ReferenceLesion]) -> None:
    """Each lesion's crop as a pair, plain and outlined, four pairs to a row."""
    if not lesions:
        print(f"{path}: no lesion to draw")
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = min(GALLERY_COLUMNS, len(lesions))
    rows = math.ceil(len(lesions) / columns)
    fig, axes = plt.subplots(rows, 2 * columns, figsize=(4.4 * columns, 2.4 * rows),
                             squeeze=False)  # fmt: skip
    for ax in axes.ravel():
        ax.axis("off")
    for number, lesion in enumerate(lesions):
        plain, outlined = axes[number // columns, 2 * (number % columns) :][:2]
        for ax in (plain, outlined):
            ax.imshow(lesion.crop.plane, cmap="gray", vmin=lesion.crop.grey[0],
                      vmax=lesion.crop.grey[1])  # fmt: skip
        outlined.contour(lesion.crop.outline, [0.5], colors="lime", linewidths=1)
        cnr = "" if lesion.cnr is None else f", CNR {lesion.cnr:.2f}"
        plain.set_title(f"{lesion.case_id} #{lesion.index}: {lesion.volume_ml:.2f} ml{cnr}",
                        fontsize=8, loc="left")  # fmt: skip
    fig.tight_layout()
    with atomic_path(path) as temp:
        fig.savefig(temp, dpi=80, format="png")
    plt.close(fig)
    print(f"gallery of {len(lesions)} lesions -> {path}")


def parse_models(values: list[str]) -> list[tuple[str, Path]]:
    models = []
    for value in values:
        name, sep, folder = value.partition("=")
        if not sep or not name:
            raise SystemExit(f"--models {value}: expected NAME=FOLDER")
        if name in (known for known, _ in models):
            raise SystemExit(f"--models {value}: the name {name} is given twice")
        models.append((name, Path(folder)))
    return models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=Path, required=True)
    parser.add_argument("--images", type=Path)
    parser.add_argument("--models", nargs="+", required=True, metavar="NAME=PRED")
    parser.add_argument("--min-lesion-ml", type=float, default=0.0)
    parser.add_argument("--out", type=Path, help="per-lesion TSV")
    parser.add_argument("--gallery", type=Path, help="PNG of the small lesions no model found")
    args = parser.parse_args()
    args.models = parse_models(args.models)
    if args.gallery is not None and args.images is None:
        raise SystemExit("--gallery needs --images")
    try:
        inputs = collect_inputs(args)
    except InvalidInputError as error:
        raise SystemExit("\n".join(error.problems)) from None
    gallery = args.gallery is not None
    lesions = [x for case_id in sorted(inputs.references)
               for x in case_lesions(case_id, inputs, args.min_lesion_ml, gallery)]  # fmt: skip
    names = [name for name, _ in args.models]
    print(f"{len(lesions)} reference lesions in {len(inputs.references)} cases")
    print_table(lesions, names)
    if args.out is not None:
        write_tsv(args.out, lesions, names)
    if gallery:
        draw_gallery(args.gallery, [x for x in lesions if x.missed_small])


if __name__ == "__main__":
    main()
