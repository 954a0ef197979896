"""Lesion tables of a folder of label maps: ``lesions.tsv``, ``cases.tsv``, ``regions.tsv``.

Works on any label folder (predictions, or reference masks via ``autoseg_evaluate``).
Beside each label file it uses, when present, ``<case>.npz`` probabilities (mean/max
probability) and ``<case>_disagreement`` maps (fold agreement) that
``autoseg_predict --save-probabilities`` / ``--save-uncertainty`` write; the first image
channel, when given, supplies the brain mask for the hemisphere (see
:mod:`autoseg.evaluation.lesion_table` for every column's definition).

Tables are tab-separated with a header of snake-case names carrying their unit
(``volume_ml``, ``centroid_x_mm``); a missing value is ``n/a`` (BIDS); each table has a
JSON dictionary beside it (``lesions.json``) describing every column and its unit. A
case without lesions has a row of zeros in ``cases.tsv`` and no row in ``lesions.tsv``.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from autoseg.core.atomic import atomic_path, write_json
from autoseg.core.errors import InvalidInputError
from autoseg.data.io import read_volume
from autoseg.data.prediction_files import (
    DISAGREEMENT_SUFFIX,
    PROBABILITIES_ENDING,
    read_probabilities,
)
from autoseg.data.records import ImageMeta, geometry_mismatch
from autoseg.evaluation.lesion_columns import CASE_COLUMNS, LESION_COLUMNS, REGION_COLUMNS
from autoseg.evaluation.lesion_table import CaseLesions, VoxelMaps, measure_lesions

LESIONS_TSV, CASES_TSV, REGIONS_TSV = "lesions.tsv", "cases.tsv", "regions.tsv"
READ_THREADS = 2


@dataclass(frozen=True)
class LesionCase:
    """The files of one case for its lesion table rows.

    Attributes:
        case: the case id.
        labels: the label map.
        image: the first image channel (brain mask = its nonzero voxels), or None.
        probabilities: ``<case>.npz`` with ``(K, Z, Y, X)`` probabilities, or None.
        disagreement: ``<case>_disagreement`` map, or None.
        participant_id: ``sub-<label>`` when the case's BIDS subject is known.
        session_id: ``ses-<label>`` when known.
        space: the BIDS ``space`` entity of the source, when known.
    """

    case: str
    labels: Path
    image: Path | None = None
    probabilities: Path | None = None
    disagreement: Path | None = None
    participant_id: str | None = None
    session_id: str | None = None
    space: str | None = None


@dataclass(frozen=True)
class Atlas:
    """A label atlas in the images' world space (read once) and its region names."""

    labels: np.ndarray
    meta: ImageMeta
    names: dict[int, str]


def read_atlas_names(path: Path) -> dict[int, str]:
    """``{index: name}`` of a BIDS-style ``dseg.tsv`` (columns ``index`` and ``name``)."""
    try:
        with Path(path).open(newline="") as handle:
            rows = list(csv.DictReader(handle, delimiter="\t"))
    except OSError as error:
        raise InvalidInputError(f"{path}: unreadable ({error})") from error
    if not rows or not {"index", "name"} <= set(rows[0]):
        raise InvalidInputError(f"{path}: needs tab-separated columns 'index' and 'name'")
    try:
        names = {int(row["index"]): row["name"].strip() for row in rows}
    except (TypeError, ValueError) as error:
        raise InvalidInputError(f"{path}: 'index' values must be integers ({error})") from error
    names.pop(0, None)  # background is not a region
    return names


def load_atlas(labels_file: str | os.PathLike, names_file: str | os.PathLike) -> Atlas:
    """An atlas from its label image and names table (both read now, not per case).

    Raises:
        InvalidInputError: the problems of both files, each named.
    """
    problems, loaded, names = [], None, None
    try:
        loaded = read_volume(Path(labels_file))
    except InvalidInputError as error:
        problems += error.problems
    try:
        names = read_atlas_names(Path(names_file))
    except InvalidInputError as error:
        problems += error.problems
    if problems:
        raise InvalidInputError(problems)
    return Atlas(loaded[0].astype(np.int32), loaded[1], names)


def atlas_on_grid(atlas: np.ndarray, atlas_meta: ImageMeta, meta: ImageMeta) -> np.ndarray:
    """Atlas labels on the grid of ``meta``: as they are on the same grid, else nearest
    neighbour by world coordinates (the atlas must already be in the images' space)."""
    if geometry_mismatch(atlas_meta, meta) is None:
        return atlas
    to_atlas = np.linalg.inv(atlas_meta.affine_array) @ meta.affine_array  # ijk -> ijk
    # Array axes are (z, y, x) = (k, j, i): reverse both sides of the voxel mapping.
    flip = np.eye(4)[[2, 1, 0, 3]]
    matrix = flip @ to_atlas @ flip
    return ndimage.affine_transform(atlas, matrix[:3, :3], matrix[:3, 3], output_shape=meta.shape,
                                    order=0, mode="constant", cval=0)  # fmt: skip


def _foreground(path: Path | None) -> np.ndarray | None:
    if path is None:
        return None
    probabilities = read_probabilities(path)
    return 1.0 - probabilities[0].astype(np.float32)


def _maps(item: LesionCase, meta: ImageMeta, atlas: Atlas | None) -> VoxelMaps:
    foreground = _foreground(item.probabilities)
    agreement = None
    if item.disagreement is not None:
        agreement = 1.0 - read_volume(item.disagreement)[0].astype(np.float32)
    brain = None if item.image is None else read_volume(item.image)[0] != 0
    for name, array in (("probabilities", foreground), ("fold agreement", agreement),
                        ("image", brain)):  # fmt: skip
        if array is not None and array.shape != tuple(meta.shape):
            raise InvalidInputError(f"case {item.case}: {name} {array.shape} do not match the "
                                    f"labels {tuple(meta.shape)} of {item.labels}")  # fmt: skip
    grid = None if atlas is None else atlas_on_grid(atlas.labels, atlas.meta, meta)
    return VoxelMaps(foreground, agreement, brain, grid)


def measure_case(item: LesionCase, connectivity: int, atlas: Atlas | None = None) -> CaseLesions:
    """Read one case's files and measure its lesions."""
    labels, meta = read_volume(item.labels)
    maps = _maps(item, meta, atlas)
    names = None if atlas is None else atlas.names
    return measure_lesions(item.case, labels, meta, connectivity, maps, item.space, names)


def label_folder_cases(folder: Path, case_ids: Sequence[str], ending: str) -> list[LesionCase]:
    """Lesion cases for ``<case><ending>`` label files of ``folder`` with their companions."""
    found = []
    for case in case_ids:
        labels = folder / f"{case}{ending}"
        npz = folder / f"{case}{PROBABILITIES_ENDING}"
        disagreement = folder / f"{case}{DISAGREEMENT_SUFFIX}{ending}"
        found.append(LesionCase(case, labels, None, npz if npz.is_file() else None,
                                disagreement if disagreement.is_file() else None))  # fmt: skip
    return found


# --- writing ------------------------------------------------------------------------------


def _cell(value: object) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _identity(item: LesionCase) -> list[str | None]:
    return [item.case, item.participant_id, item.session_id]


def lesion_rows(item: LesionCase, measured: CaseLesions) -> list[list[object]]:
    """``lesions.tsv`` rows of one case (see :data:`LESION_COLUMNS`)."""
    return [
        [*_identity(item), lesion.lesion, lesion.label, lesion.voxels, lesion.volume_ml,
         *lesion.centroid_ijk, *lesion.centroid_mm, measured.world_space,
         *(v for pair in zip(lesion.bbox_min_ijk, lesion.bbox_max_ijk, strict=True) for v in pair),
         lesion.hemisphere, measured.hemisphere_method, lesion.mean_probability,
         lesion.max_probability, lesion.fold_agreement, lesion.region, measured.connectivity]
        for lesion in measured.lesions
    ]  # fmt: skip


def case_row(item: LesionCase, measured: CaseLesions) -> list[object]:
    """The ``cases.tsv`` row of one case (zeros when it has no lesion)."""
    return [*_identity(item), len(measured.lesions), measured.voxels, measured.volume_ml,
            measured.largest_ml, measured.left_ml, measured.right_ml,
            measured.hemisphere_method, measured.mean_probability, measured.max_probability,
            measured.voxel_ml * 1000.0, measured.world_space, measured.connectivity]  # fmt: skip


def region_rows(item: LesionCase, measured: CaseLesions) -> list[list[object]]:
    """``regions.tsv`` rows of one case: every atlas region, zero loads included."""
    return [[*_identity(item), r.index, r.name, r.region_ml, r.lesion_ml, r.percent]
            for r in measured.regions]  # fmt: skip


def write_table(path: Path, columns: dict[str, dict[str, str]], rows: list[list[object]]) -> Path:
    """A TSV (header = the column names) and its JSON column dictionary, atomically."""
    with atomic_path(path) as temp, temp.open("w", newline="") as handle:
        handle.write("\t".join(columns) + "\n")
        for row in rows:
            handle.write("\t".join(_cell(v) for v in row) + "\n")
    write_json(path.with_suffix(".json"), columns)
    return path


def write_lesion_tables(
    out_dir: str | os.PathLike,
    cases: Sequence[LesionCase],
    measured: Sequence[CaseLesions],
    prefix: str = "",
) -> list[Path]:
    """Write ``<prefix>lesions.tsv``, ``<prefix>cases.tsv`` (and ``regions.tsv`` with an
    atlas) for measured cases, in case order; returns the TSV paths."""
    out_dir = Path(out_dir)
    pairs = sorted(zip(cases, measured, strict=True), key=lambda pair: pair[0].case)
    paths = [
        write_table(out_dir / f"{prefix}{LESIONS_TSV}", LESION_COLUMNS,
                    [row for item, m in pairs for row in lesion_rows(item, m)]),
        write_table(out_dir / f"{prefix}{CASES_TSV}", CASE_COLUMNS,
                    [case_row(item, m) for item, m in pairs]),
    ]  # fmt: skip
    if any(m.regions for _, m in pairs):
        rows = [row for item, m in pairs for row in region_rows(item, m)]
        paths.append(write_table(out_dir / f"{prefix}{REGIONS_TSV}", REGION_COLUMNS, rows))
    return paths


def _measure_named(item: LesionCase, connectivity: int, atlas: Atlas | None) -> CaseLesions:
    """:func:`measure_case`, bad input re-raised naming the case."""
    try:
        return measure_case(item, connectivity, atlas)
    except InvalidInputError as error:
        raise InvalidInputError([f"case {item.case}: {p}" for p in error.problems]) from error


def lesion_tables(
    out_dir: str | os.PathLike,
    cases: Sequence[LesionCase],
    connectivity: int,
    atlas: Atlas | None = None,
    prefix: str = "",
    workers: int = READ_THREADS,
) -> list[CaseLesions]:
    """Measure every case and write the tables (the one call the commands make).

    Cases are read on ``workers`` threads: most of the time goes to decompressing the
    label, image and probability files, which releases the GIL.

    Raises:
        InvalidInputError: unreadable files or companions off the labels' grid (the
            case and file named).
    """
    with ThreadPoolExecutor(max(1, workers), thread_name_prefix="autoseg-lesions") as pool:
        measured = list(pool.map(lambda item: _measure_named(item, connectivity, atlas), cases))
    write_lesion_tables(out_dir, cases, measured, prefix)
    return measured
