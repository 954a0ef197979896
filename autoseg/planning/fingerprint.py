"""Dataset fingerprint: what the planner needs to know about a raw dataset.

``compute_fingerprint`` reads every training case once (in parallel), caches each case's
statistics atomically under ``preprocessed/<NAME>/fingerprint_cases/<case>.json`` so an
interrupted run resumes, and aggregates them into ``fingerprint.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from autoseg.core.atomic import read_json, write_json
from autoseg.core.errors import InvalidInputError
from autoseg.core.resources import WORKER_BASE_BYTES, default_workers, worker_pool
from autoseg.core.run_layout import FINGERPRINT_JSON
from autoseg.data.io import read_meta, read_volume
from autoseg.data.layout import RawDataset
from autoseg.data.records import Case
from autoseg.planning.aggregate import aggregate_cases

FINGERPRINT_VERSION = 1
CASES_FOLDER = "fingerprint_cases"
BYTES_PER_VOXEL_IN_WORKER = 40  # image float64 copies, masks, cc3d labels, percentiles


def file_signature(paths: list[Path]) -> list[list[Any]]:
    """Name, size and mtime of each input file: a cached case is reused only if unchanged."""
    return [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in paths]


def case_files(case: Case) -> list[Path]:
    """All files of a training case, failing with the case id when the label is missing."""
    if case.label_file is None or not case.label_file.is_file():
        raise InvalidInputError(f"{case.label_file}: label of case '{case.case_id}' missing")
    return [*case.image_files, case.label_file]


def read_case(case: Case) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """Load a case as ``(image (C, Z, Y, X) float32, label (Z, Y, X), spacing_mm)``."""
    channels = [read_volume(path)[0].astype(np.float32) for path in case.image_files]
    label, meta = read_volume(case.label_file)
    return np.stack(channels), np.rint(label).astype(np.int16), meta.spacing_mm


def fingerprint_case(case: Case, label_values: list[int], cache_file: Path) -> dict[str, Any]:
    """Compute (or reuse from ``cache_file``) one case's statistics; worker entry point."""
    from autoseg.planning.case_stats import case_statistics

    signature = file_signature(case_files(case))
    if cache_file.is_file():
        cached = read_json(cache_file)
        if cached.get("version") == FINGERPRINT_VERSION and cached.get("files") == signature:
            return cached
    try:
        image, label, spacing = read_case(case)
        stats = case_statistics(case.case_id, image, label, spacing, label_values)
    except InvalidInputError:
        raise
    except Exception as error:
        raise RuntimeError(f"fingerprint of case '{case.case_id}' failed: {error}") from error
    stats.update(version=FINGERPRINT_VERSION, files=signature)
    write_json(cache_file, stats)
    return stats


def default_num_processes(cases: list[Case], cpu_count: int | None = None) -> int:
    """Worker count bounded by cores and by the RAM one worker needs for the largest case."""
    if not cases:
        return 1
    largest = max(
        int(np.prod(read_meta(case.image_files[0]).shape)) * len(case.image_files) for case in cases
    )
    per_worker = WORKER_BASE_BYTES + largest * BYTES_PER_VOXEL_IN_WORKER
    return default_workers(per_worker, jobs=len(cases), cap=cpu_count)


def _run_cases(
    cases: list[Case], label_values: list[int], cache_dir: Path, workers: int, progress: bool
) -> list[dict[str, Any]]:
    bar = tqdm(total=len(cases), desc="fingerprint", unit="case", disable=not progress)
    jobs = [(case, label_values, cache_dir / f"{case.case_id}.json") for case in cases]
    results = []
    if workers <= 1:
        for job in jobs:
            results.append(fingerprint_case(*job))
            bar.update()
    else:
        with worker_pool(workers) as pool:
            for result in pool.map(fingerprint_case, *zip(*jobs, strict=True)):
                results.append(result)
                bar.update()
    bar.close()
    return results


def compute_fingerprint(
    raw_dataset: RawDataset,
    num_processes: int | None,
    progress: bool = True,
    cache_dir: Path | None = None,
) -> dict[str, Any]:
    """Fingerprint every training case of a raw dataset and aggregate the statistics.

    Args:
        raw_dataset: the opened raw dataset (already verified).
        num_processes: worker processes; None picks a count bounded by cores and RAM.
        progress: show a tqdm progress bar.
        cache_dir: folder for per-case results (resume); None disables the cache.

    Returns:
        The fingerprint dict (``dataset``, ``channels``, ``cases``, aggregated statistics).

    Raises:
        InvalidInputError: no training cases, or a missing label file.
    """
    cases = raw_dataset.training_cases()
    if not cases:
        raise InvalidInputError(f"{raw_dataset.images_tr}: no training cases")
    workers = num_processes or default_num_processes(cases)
    labels = sorted(raw_dataset.dataset_json.label_values)
    if cache_dir is None:
        import tempfile

        with tempfile.TemporaryDirectory() as temp:
            per_case = _run_cases(cases, labels, Path(temp), workers, progress)
    else:
        per_case = _run_cases(cases, labels, Path(cache_dir), workers, progress)
    return aggregate_cases(raw_dataset.dataset_json, per_case, raw_dataset.name)


def write_fingerprint(
    raw_dataset: RawDataset,
    preprocessed_root: Path,
    num_processes: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Compute the fingerprint (resuming from cached cases) and write ``fingerprint.json``."""
    folder = Path(preprocessed_root) / raw_dataset.name
    fingerprint = compute_fingerprint(
        raw_dataset, num_processes, progress, cache_dir=folder / CASES_FOLDER
    )
    write_json(folder / FINGERPRINT_JSON, fingerprint)
    return fingerprint
