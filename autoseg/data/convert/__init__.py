"""Converters: every stroke data shape into the raw layout ``raw/<NAME>/``.

The one entry point is :func:`convert`; the CLI calls it as
``convert(kind, src, workspace.raw / name, spacing_mm=..., copy=..., num_processes=...,
overwrite=...)`` and prints ``summary.lines()``. Each kind's rules (layouts recognised,
case ids, geometry) are in its module's docstring: :mod:`.atlas`, :mod:`.png_slices`,
:mod:`.isles22`, :mod:`.npy`, :mod:`.nnunet`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from autoseg.core.errors import InvalidInputError
from autoseg.core.paths import ensure_writable_dir
from autoseg.data.convert import atlas, isles22, nnunet, npy, png_slices
from autoseg.data.convert.cases import ConversionPlan, ConversionSummary
from autoseg.data.convert.png_slices import DEFAULT_SPACING_MM
from autoseg.data.convert.writing import default_processes, write_plan

__all__ = [
    "CONVERTERS",
    "DEFAULT_SPACING_MM",
    "ConversionSummary",
    "ConvertOptions",
    "convert",
    "default_processes",
    "list_kinds",
]


@dataclass(frozen=True)
class ConvertOptions:
    """Settings of one conversion (see :func:`convert`)."""

    spacing_mm: tuple[float, float, float] | None = None
    copy: bool = False
    num_processes: int | None = None
    overwrite: bool = False
    progress: bool = True
    channels: tuple[str, ...] | None = None


def _atlas(src: Path, dataset_dir: Path, options: ConvertOptions) -> ConversionSummary:
    return _write(atlas.plan(src), dataset_dir, "atlas", options)


def _isles22(src: Path, dataset_dir: Path, options: ConvertOptions) -> ConversionSummary:
    return _write(isles22.plan(src, options.channels), dataset_dir, "isles22", options)


def _png_slices(src: Path, dataset_dir: Path, options: ConvertOptions) -> ConversionSummary:
    return _write(png_slices.plan(src, options.spacing_mm), dataset_dir, "png-slices", options)


def _npy(src: Path, dataset_dir: Path, options: ConvertOptions) -> ConversionSummary:
    return _write(npy.plan(src, options.spacing_mm), dataset_dir, "npy", options)


def _nnunet(src: Path, dataset_dir: Path, options: ConvertOptions) -> ConversionSummary:
    return nnunet.register(src, dataset_dir, options.copy, options.overwrite, options.progress)


def _write(
    plan: ConversionPlan, dataset_dir: Path, kind: str, options: ConvertOptions
) -> ConversionSummary:
    return write_plan(
        plan, dataset_dir, kind, options.overwrite, options.num_processes, options.progress
    )


CONVERTERS: dict[str, Callable[[Path, Path, ConvertOptions], ConversionSummary]] = {
    "atlas": _atlas,
    "isles22": _isles22,
    "png-slices": _png_slices,
    "npy": _npy,
    "nnunet": _nnunet,
}
SPACING_KINDS = ("png-slices", "npy")
CHANNEL_KINDS = ("isles22",)


def list_kinds() -> list[str]:
    """The source kinds :func:`convert` accepts."""
    return list(CONVERTERS)


def _option_problems(kind: str, options: ConvertOptions) -> list[str]:
    """Options that do not apply to ``kind`` or are out of range (bad usage, not ignored)."""
    problems = []
    spacing = options.spacing_mm
    if spacing is not None and kind not in SPACING_KINDS:
        problems.append(f"--spacing does not apply to '{kind}' (its files carry their spacing)")
    if spacing is not None and (
        len(spacing) != 3 or not all(math.isfinite(v) and v > 0 for v in spacing)
    ):
        problems.append(f"--spacing must be three positive numbers Z Y X in mm, got {spacing}")
    if options.copy and kind != "nnunet":
        problems.append(f"--copy applies to 'nnunet' only ('{kind}' is always written anew)")
    if options.channels is not None and kind not in CHANNEL_KINDS:
        problems.append(f"--channels applies to {', '.join(CHANNEL_KINDS)} only, not '{kind}'")
    if options.num_processes is not None and options.num_processes < 1:
        problems.append(f"-np must be at least 1, got {options.num_processes}")
    return problems


def convert(
    kind: str,
    src: str | Path,
    dataset_dir: str | Path,
    *,
    spacing_mm: Sequence[float] | None = None,
    copy: bool = False,
    num_processes: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
    channels: Sequence[str] | None = None,
) -> ConversionSummary:
    """Convert a source dataset into the raw dataset folder ``dataset_dir``.

    Every case is checked before anything is written; cases are then written one by one,
    atomically, and a re-run skips the cases that are finished; dataset.json comes last.

    Args:
        kind: one of :func:`list_kinds` (``atlas``, ``isles22``, ``png-slices``, ``npy``,
            ``nnunet``).
        src: the source folder.
        dataset_dir: the raw dataset folder to write, ``<raw root>/<NAME>``.
        spacing_mm: ``(z, y, x)`` voxel size for sources without one (``png-slices``,
            default :data:`DEFAULT_SPACING_MM`; ``npy`` arrays without a sidecar).
        copy: ``nnunet`` only: copy the files instead of linking the folder.
        num_processes: worker processes (default :func:`default_processes`).
        overwrite: rewrite finished cases and remove files of another source.
        progress: show a progress bar.
        channels: ``isles22`` only: channel keys in order (``dwi adc flair``; default
            ``dwi adc``).

    Returns:
        What was done, with ``lines()`` to print.

    Raises:
        InvalidInputError: an unknown kind, options that do not fit it, or bad input
            (every problem listed, one line each naming the file).
    """
    if kind not in CONVERTERS:
        raise InvalidInputError(f"unknown source kind '{kind}' (known: {', '.join(CONVERTERS)})")
    spacing = None if spacing_mm is None else tuple(float(v) for v in spacing_mm)
    chosen = None if channels is None else tuple(str(c).lower() for c in channels)
    options = ConvertOptions(spacing, copy, num_processes, overwrite, progress, chosen)
    problems = _option_problems(kind, options)
    if problems:
        raise InvalidInputError(problems)
    dataset_dir = Path(dataset_dir)
    # A linked dataset (nnunet) may point at read-only storage: the link's folder is written.
    writable = dataset_dir.parent if dataset_dir.is_symlink() else dataset_dir
    ensure_writable_dir(writable, "raw dataset folder")
    return CONVERTERS[kind](Path(src), dataset_dir, options)
