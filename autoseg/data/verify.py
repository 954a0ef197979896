"""Strict integrity checks of a raw dataset, listing every problem at once (``autoseg_verify``).

Two passes: the structure of the folder (dataset.json, file names, pairing; no voxels
read, :mod:`autoseg.data.verify_layout`), then the content of each case in a process pool
(each file read once: readability, NaN/Inf, geometry between channels and label, label
values; :mod:`autoseg.data.verify_case`). Nothing is written. Planning calls
:func:`require_valid` so bad data is rejected before any work starts.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from autoseg.core.errors import InvalidInputError
from autoseg.core.resources import default_workers, worker_pool
from autoseg.data.io import read_meta
from autoseg.data.verify_case import GEOMETRY_TOLERANCE_MM, CaseJob, CaseResult, check_case
from autoseg.data.verify_layout import scan_layout

# Memory of one worker: the interpreter with numpy/nibabel/SimpleITK loaded, plus per voxel
# of the largest volume the raw copy, the float64 scaled copy, masks and a sorted copy.
WORKER_BASE_BYTES = 400 * 1024**2
WORKER_BYTES_PER_VOXEL = 32
# Only the largest files (by bytes on disk) are opened to size the workers: reading every
# header of a large dataset twice would cost more than it tells.
SIZING_FILES = 4


@dataclass(frozen=True)
class VerificationReport:
    """Outcome of :func:`verify_dataset`.

    Attributes:
        errors: one line per problem that makes the dataset unusable, each naming its file.
        warnings: one line per oddity that does not block use (e.g. an empty label).
        num_training: training cases found in imagesTr.
        num_test: test cases found in imagesTs.
        name: the dataset's name (dataset.json ``name``, else the folder name).
    """

    errors: list[str]
    warnings: list[str]
    num_training: int
    num_test: int
    name: str = ""

    @property
    def ok(self) -> bool:
        return not self.errors


def verify_dataset(
    root: Path,
    num_processes: int | None = None,
    progress: bool = True,
    tolerance_mm: float = GEOMETRY_TOLERANCE_MM,
) -> VerificationReport:
    """Check a raw dataset folder and report every problem; never raises for bad data.

    Args:
        root: the dataset folder (dataset.json, imagesTr, labelsTr, optional imagesTs).
        num_processes: worker processes for the content checks; None picks as many as
            CPU cores and available memory allow (1 runs in this process).
        progress: show a progress bar on stderr.
        tolerance_mm: largest affine difference (mm) between channels and label that still
            counts as one grid; real data carries float noise (ISLES'22: < 1e-7).

    Returns:
        The report, errors and warnings in a fixed order: dataset-level first, then case
        by case in sorted order (training, then test), whatever the number of workers.

    Raises:
        CaseCheckError: a check crashed on a case (not bad data); the message names it.
    """
    root = Path(root)
    scan = scan_layout(root, tolerance_mm)
    jobs = scan.training + scan.test
    if num_processes is None:
        num_processes = default_num_processes(jobs)
    results = _run_jobs(jobs, num_processes, progress, scan.name)
    return VerificationReport(
        errors=scan.errors + [line for result in results for line in result.errors],
        warnings=scan.warnings + [line for result in results for line in result.warnings],
        num_training=scan.num_training,
        num_test=len(scan.test),
        name=scan.name,
    )


def require_valid(
    root: Path, num_processes: int | None = None, progress: bool = True
) -> VerificationReport:
    """Verify a dataset and refuse it when it has errors (what planning calls first).

    Returns:
        The report (it may hold warnings).

    Raises:
        InvalidInputError: with one line per error when the dataset has any.
    """
    report = verify_dataset(root, num_processes=num_processes, progress=progress)
    if report.errors:
        raise InvalidInputError(report.errors)
    return report


def format_report(report: VerificationReport) -> str:
    """The report as the CLI prints it: errors, then warnings, then a one-line summary."""
    lines = [f"error: {line}" for line in report.errors]
    lines += [f"warning: {line}" for line in report.warnings]
    lines.append(
        f"{report.name}: {_count(report.num_training, 'training case')}, "
        f"{_count(report.num_test, 'test case')}: "
        f"{_count(len(report.errors), 'error')}, {_count(len(report.warnings), 'warning')}"
    )
    return "\n".join(lines)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _run_jobs(
    jobs: Sequence[CaseJob], num_processes: int, progress: bool, name: str
) -> list[CaseResult]:
    """Check the cases, in a pool when it pays; results keep the order of ``jobs``."""
    bar = tqdm(total=len(jobs), desc=f"verify {name}", unit="case", disable=not progress)
    with bar:
        if num_processes <= 1 or len(jobs) <= 1:
            results = []
            for job in jobs:
                results.append(check_case(job))
                bar.update()
            return results
        return _run_pool(jobs, num_processes, bar)


def _run_pool(jobs: Sequence[CaseJob], num_processes: int, bar: tqdm) -> list[CaseResult]:
    results: list[CaseResult | None] = [None] * len(jobs)
    pool = worker_pool(num_processes)
    try:
        futures = {pool.submit(check_case, job): index for index, job in enumerate(jobs)}
        for future in as_completed(futures):
            results[futures[future]] = future.result()
            bar.update()
    finally:
        # On a crash, do not wait for the remaining cases before reporting it.
        pool.shutdown(wait=True, cancel_futures=True)
    return [result for result in results if result is not None]


def default_num_processes(jobs: Sequence[CaseJob]) -> int:
    """Workers that fit: at most one per CPU core and per case, and as many as RAM holds.

    Each worker holds one volume at a time, so the bound comes from the largest volume.
    """
    per_worker = WORKER_BASE_BYTES + WORKER_BYTES_PER_VOXEL * _largest_voxel_count(jobs)
    return default_workers(per_worker, jobs=len(jobs))


def _largest_voxel_count(jobs: Sequence[CaseJob]) -> int:
    """Voxels of the largest volume among the biggest files on disk (headers only)."""
    files = [path for job in jobs for path in (*job.image_files, job.label_file) if path]
    sized = []
    for path in files:
        try:
            sized.append((path.stat().st_size, path))
        except OSError:
            continue  # reported by the content checks
    largest = 0
    for _, path in sorted(sized, reverse=True)[:SIZING_FILES]:
        try:
            largest = max(largest, int(np.prod(read_meta(path).shape)))
        except InvalidInputError:
            continue  # reported by the content checks
    return largest
