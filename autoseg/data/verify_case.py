"""Content checks of one case, run in worker processes by :mod:`autoseg.data.verify`.

Each file's voxels are read exactly once and dropped before the next file is read, so a
worker holds one volume at a time; only the geometry (:class:`ImageMeta`) is kept to
compare channels with each other and with the label.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from autoseg.core.errors import InvalidInputError
from autoseg.data.io import read_volume
from autoseg.data.records import ImageMeta, geometry_mismatch

GEOMETRY_TOLERANCE_MM = 1e-3
# Unsigned labels up to this value are counted with bincount (fast, no sort).
BINCOUNT_LIMIT = 1 << 16


class CaseCheckError(RuntimeError):
    """A check crashed on a case for a reason other than bad input (a bug, not bad data)."""


@dataclass(frozen=True)
class CaseJob:
    """The files of one case to check, picklable so it can travel to a worker.

    Attributes:
        case_id: the case id (file name without channel suffix and ending).
        image_files: the channel files that exist, in channel order.
        label_file: the label file when it exists (training cases only).
        label_values: the values dataset.json declares; None when it is unusable.
        tolerance_mm: largest affine difference still counted as the same grid.
    """

    case_id: str
    image_files: tuple[Path, ...]
    label_file: Path | None = None
    label_values: frozenset[int] | None = None
    tolerance_mm: float = GEOMETRY_TOLERANCE_MM


@dataclass(frozen=True)
class CaseResult:
    """Problems of one case: errors block training, warnings only inform."""

    case_id: str
    errors: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()


def check_case(job: CaseJob) -> CaseResult:
    """Check every file of a case (worker entry point).

    Bad data is reported as lines of the result, never raised. Anything else that goes
    wrong is re-raised as :class:`CaseCheckError` naming the case, because a traceback
    from a worker process does not say which of a thousand cases it was working on.
    """
    try:
        return _check_case(job)
    except InvalidInputError:
        raise
    except Exception as error:
        message = f"case {job.case_id}: verification failed ({type(error).__name__}: {error})"
        raise CaseCheckError(message) from error


def _check_case(job: CaseJob) -> CaseResult:
    errors: list[str] = []
    warnings: list[str] = []
    reference: tuple[Path, ImageMeta] | None = None
    for path in job.image_files:
        meta, problems = _check_image(path)
        errors += problems
        if meta is None:
            continue
        if reference is None:
            reference = (path, meta)
        else:
            errors += _grid_problems(path, meta, reference, job.tolerance_mm)
    if job.label_file is not None:
        meta, problems, notes = _check_label(job.label_file, job.label_values)
        errors += problems
        warnings += notes
        if meta is not None and reference is not None:
            errors += _grid_problems(job.label_file, meta, reference, job.tolerance_mm)
    return CaseResult(job.case_id, tuple(errors), tuple(warnings))


def _read(path: Path) -> tuple[np.ndarray | None, ImageMeta | None, list[str]]:
    """Read a volume, turning a read failure into problem lines (one per line, flattened)."""
    try:
        array, meta = read_volume(path)
    except InvalidInputError as error:
        return None, None, [" ".join(line.split()) for line in error.problems]
    if array.dtype.kind not in "biuf":
        return None, None, [f"{path}: unsupported voxel type {array.dtype} (need real numbers)"]
    return array, meta, []


def _check_image(path: Path) -> tuple[ImageMeta | None, list[str]]:
    """Readable, numeric, finite and not constant: the network cannot learn from NaN or Inf
    voxels, nor anything from an image with one value (a failed export, an empty scan)."""
    array, meta, problems = _read(path)
    if array is None:
        return None, problems
    problem = _non_finite_problem(path, array) or _no_signal_problem(path, array)
    return meta, [problem] if problem else []


def _no_signal_problem(path: Path, array: np.ndarray) -> str | None:
    if array.size == 0 or array.min() != array.max():
        return None
    value = array.flat[0]
    return f"{path}: no signal: every voxel is {value:g} (an empty scan or a failed export?)"


def _non_finite_problem(path: Path, array: np.ndarray) -> str | None:
    if array.dtype.kind != "f" or np.isfinite(array).all():
        return None
    nan = int(np.count_nonzero(np.isnan(array)))
    inf = int(np.count_nonzero(np.isinf(array)))
    return f"{path}: {nan} NaN and {inf} Inf voxels (of {array.size}); replace them before use"


def _grid_problems(
    path: Path, meta: ImageMeta, reference: tuple[Path, ImageMeta], tolerance_mm: float
) -> list[str]:
    """One line when ``path`` is not on the grid of the case's first readable channel."""
    reference_path, reference_meta = reference
    difference = geometry_mismatch(meta, reference_meta, tolerance_mm)
    if difference is None:
        return []
    spacing, reference_spacing = np.array(meta.spacing_mm), np.array(reference_meta.spacing_mm)
    if np.max(np.abs(spacing - reference_spacing)) > tolerance_mm:
        difference = (
            f"spacing {_rounded(spacing)} != {_rounded(reference_spacing)} mm (z, y, x); "
            + difference
        )
    link = f" (links to {path.resolve()})" if path.is_symlink() else ""
    # A link to the wrong scan is a common cause of a grid mismatch: name its target.
    return [f"{path}: not on the grid of {reference_path.name}: {difference}{link}"]


def _rounded(values: np.ndarray) -> list[float]:
    return [round(float(v), 4) for v in values]


def _check_label(
    path: Path, declared: frozenset[int] | None
) -> tuple[ImageMeta | None, list[str], list[str]]:
    """Finite, integral, non-negative, declared values; a warning when all background."""
    array, meta, problems = _read(path)
    if array is None:
        return None, problems, []
    problem = _non_finite_problem(path, array)
    if problem:
        problems.append(problem)
        array = array[np.isfinite(array)]
    values, counts = _value_counts(array)
    del array
    problems += _label_value_problems(path, values, counts, declared)
    warnings = [] if np.any(values != 0) else [f"{path}: label has no foreground (all voxels 0)"]
    return meta, problems, warnings


def _value_counts(array: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct values and their voxel counts; bincount for small unsigned labels (fast)."""
    if array.size == 0:
        return np.zeros(0), np.zeros(0, dtype=np.int64)
    if array.dtype.kind in "bu" and int(array.max()) < BINCOUNT_LIMIT:
        counts = np.bincount(array.ravel().astype(np.intp, copy=False))
        values = np.flatnonzero(counts)
        return values, counts[values]
    return np.unique(array, return_counts=True)


def _label_value_problems(
    path: Path, values: np.ndarray, counts: np.ndarray, declared: frozenset[int] | None
) -> list[str]:
    problems = []
    fractional = values != np.round(values)
    if np.any(fractional):
        examples = ", ".join(f"{v:g}" for v in values[fractional][:3])
        voxels = int(counts[fractional].sum())
        hold = "voxel holds" if voxels == 1 else "voxels hold"
        problems.append(
            f"{path}: {voxels} {hold} non-integer label values "
            f"(e.g. {examples}); labels must be integers (a probability map? threshold it)"
        )
    integral = {int(v) for v in values[~fractional]}
    negative = {v for v in integral if v < 0}
    if negative:
        problems.append(f"{path}: negative label values {_set_text(negative)}")
    undeclared = integral - negative - declared if declared is not None else set()
    if undeclared:
        problems.append(_undeclared_line(path, integral, undeclared, declared))
    return problems


def _undeclared_line(
    path: Path, values: set[int], undeclared: set[int], declared: frozenset[int]
) -> str:
    """Name the fix: 0/255 masks are the common case, and conversion binarises them."""
    text = (
        f"{path}: label values {_set_text(values)} include {_set_text(undeclared)}, "
        f"not declared in dataset.json labels {_set_text(declared)}"
    )
    if 255 in undeclared and values <= {0, 255} and declared == {0, 1}:
        return text + ": convert with binarisation (autoseg_convert binarises masks)"
    return text + ": declare them in dataset.json 'labels' or relabel the file"


def _set_text(values: set[int] | frozenset[int]) -> str:
    return "{" + ",".join(str(v) for v in sorted(values)) + "}"
