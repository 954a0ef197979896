"""Writing converted cases into a raw dataset folder: atomic, resumable, optionally parallel.

Every converter turns its source into a list of
:class:`~autoseg.data.convert.cases.CaseTask` values (where each
output volume comes from); this module writes them. A case is finished when all of its
output files exist: every file is written to a temporary sibling and renamed, so a file
that exists is whole. A re-run therefore skips finished cases and redoes the rest.
"""

from __future__ import annotations

import gzip
import logging
import shutil
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_EXCEPTION, Future, wait
from pathlib import Path

import nibabel as nib
import numpy as np
from tqdm import tqdm

from autoseg.core.atomic import atomic_path, is_temporary
from autoseg.core.errors import InvalidInputError
from autoseg.core.resources import default_workers, worker_pool
from autoseg.data.convert.cases import (
    FILE_ENDING,
    LABELS,
    OUTPUT_FOLDERS,
    CaseResult,
    CaseTask,
    ConversionPlan,
    ConversionSummary,
    NiftiSource,
    Source,
)
from autoseg.data.io import write_label, write_volume
from autoseg.data.layout import DatasetJson, write_dataset_json
from autoseg.data.sources import write_case_sources

logger = logging.getLogger(__name__)


def binarise(mask: np.ndarray) -> tuple[np.ndarray, bool]:
    """Mask ``> 0`` as uint8 {0, 1}; the flag says whether values or type changed.

    0/255 masks and float 0/1 masks are common in the wild; both mean "lesion where > 0".
    """
    already = np.issubdtype(mask.dtype, np.integer) or mask.dtype == np.bool_
    binary = (mask > 0).astype(np.uint8)
    changed = not already or not np.array_equal(binary, mask)
    return binary, changed


def copy_nifti_image(source: Path, dest: Path) -> None:
    """Copy a NIfTI image keeping every header byte (geometry survives exactly).

    A ``.nii.gz`` is copied as it is; a ``.nii`` is gzipped, which is exactly what a
    ``.nii.gz`` is, so its header and data bytes are unchanged too.
    """
    with atomic_path(dest) as temp:
        if source.name.lower().endswith(".gz"):
            shutil.copyfile(source, temp)
            return
        with open(source, "rb") as reader, gzip.open(temp, "wb", compresslevel=1) as writer:
            shutil.copyfileobj(reader, writer, length=1 << 22)


def write_nifti_mask(source: Path, dest: Path) -> bool:
    """Rewrite a NIfTI mask as uint8 {0, 1} with the original header (codes, qform, sform).

    Returns:
        True when the mask had to be binarised (values or type changed).
    """
    image = nib.load(str(source))
    mask, changed = binarise(np.asanyarray(image.dataobj))
    header = image.header.copy()
    header.set_data_dtype(np.uint8)
    # Loading moved any scaling into the data proxy; a fresh array must not be rescaled.
    header.set_slope_inter(1.0, 0.0)
    with atomic_path(dest) as temp:
        nib.save(nib.Nifti1Image(mask, image.affine, header), str(temp))
    return changed


def write_image(source: Source, dest: Path) -> None:
    """Write one image channel from a NIfTI or array source."""
    if isinstance(source, NiftiSource):
        copy_nifti_image(source.path, dest)
        return
    array, meta = source.read()
    if array.dtype == np.float16:  # NIfTI has no float16 type
        array = array.astype(np.float32)
    write_volume(dest, array, meta)


def write_mask(source: Source, dest: Path) -> bool:
    """Write one mask as uint8 {0, 1}; True when it had to be binarised."""
    if isinstance(source, NiftiSource):
        return write_nifti_mask(source.path, dest)
    array, meta = source.read()
    mask, changed = binarise(array)
    write_label(dest, mask, meta)
    return changed


def convert_case(task: CaseTask, dataset_dir: Path, overwrite: bool) -> CaseResult:
    """Write the missing outputs of one case (all of them with ``overwrite``)."""
    outputs = task.outputs(dataset_dir)
    todo = [item for item in outputs if overwrite or not item[0].exists()]
    if not todo:
        return CaseResult(task.case_id, skipped=True)
    binarised = 0
    for dest, source, is_mask in todo:
        if is_mask:
            binarised += int(write_mask(source, dest))
        else:
            write_image(source, dest)
    return CaseResult(task.case_id, skipped=False, binarised=binarised)


def _convert_case_named(task: CaseTask, dataset_dir: Path, overwrite: bool) -> CaseResult:
    """:func:`convert_case`, re-raising any failure with the case id in the message."""
    try:
        return convert_case(task, dataset_dir, overwrite)
    except InvalidInputError as error:
        raise InvalidInputError([f"case {task.case_id}: {p}" for p in error.problems]) from error
    except Exception as error:
        raise RuntimeError(f"case {task.case_id}: {type(error).__name__}: {error}") from error


def _run_serial(
    tasks: Iterable[CaseTask], dataset_dir: Path, overwrite: bool
) -> Iterator[CaseResult]:
    for task in tasks:
        yield _convert_case_named(task, dataset_dir, overwrite)


def _run_parallel(
    tasks: list[CaseTask], dataset_dir: Path, overwrite: bool, processes: int
) -> Iterator[CaseResult]:
    """Run cases on worker processes; the first failure cancels the cases not yet started."""
    with worker_pool(processes) as pool:
        pending: set[Future] = {
            pool.submit(_convert_case_named, task, dataset_dir, overwrite) for task in tasks
        }
        while pending:
            done, pending = wait(pending, return_when=FIRST_EXCEPTION)
            for future in done:
                if future.exception() is not None:
                    for other in pending:
                        other.cancel()
                    raise future.exception()
                yield future.result()


WORKER_BYTES = 512 * 1024**2  # one 1 mm ATLAS case (~0.2 GB) plus the worker itself


def default_processes() -> int:
    """Two workers at most: conversion is disk-bound and one ATLAS case needs ~0.2 GB."""
    return default_workers(WORKER_BYTES, cap=2)


def run_tasks(
    tasks: list[CaseTask],
    dataset_dir: Path,
    overwrite: bool = False,
    processes: int | None = None,
    progress: bool = True,
) -> list[CaseResult]:
    """Write every case; serial when one process is asked for (or there is one case)."""
    processes = default_processes() if processes is None else max(1, processes)
    if processes == 1 or len(tasks) <= 1:
        results: Iterable[CaseResult] = _run_serial(tasks, dataset_dir, overwrite)
    else:
        results = _run_parallel(tasks, dataset_dir, overwrite, processes)
    bar = tqdm(total=len(tasks), desc="convert", unit="case", disable=not progress)
    collected = []
    with bar:
        for result in results:
            collected.append(result)
            bar.update(1)
    return collected


def remove_leftovers(dataset_dir: Path) -> None:
    """Delete temporary files a killed earlier run left behind (they are never results)."""
    for folder in OUTPUT_FOLDERS:
        path = dataset_dir / folder
        if path.is_dir():
            for item in path.iterdir():
                if is_temporary(item):
                    item.unlink()


def stale_outputs(tasks: Iterable[CaseTask], dataset_dir: Path) -> list[Path]:
    """Files in the output folders that no case of this conversion writes."""
    expected = {dest for task in tasks for dest, _, _ in task.outputs(dataset_dir)}
    found = [
        item
        for folder in OUTPUT_FOLDERS
        if (dataset_dir / folder).is_dir()
        for item in sorted((dataset_dir / folder).iterdir())
    ]
    return [item for item in found if item not in expected]


def check_destination(tasks: list[CaseTask], dataset_dir: Path, overwrite: bool) -> None:
    """Refuse to mix this source with files from another one (removed with ``overwrite``)."""
    stale = stale_outputs(tasks, dataset_dir)
    if stale and not overwrite:
        shown = [f"{path}: not part of this conversion" for path in stale[:20]]
        more = [f"... and {len(stale) - 20} more"] if len(stale) > 20 else []
        hint = [f"{dataset_dir}: holds files from another source; use --overwrite or remove them"]
        raise InvalidInputError(hint + shown + more)
    for path in stale:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


def write_plan(
    plan: ConversionPlan,
    dataset_dir: Path,
    kind: str,
    overwrite: bool = False,
    processes: int | None = None,
    progress: bool = True,
) -> ConversionSummary:
    """Write a checked plan into ``dataset_dir``; dataset.json last, once every case is whole."""
    dataset_dir = Path(dataset_dir)
    tasks = list(plan.tasks)
    if dataset_dir.is_symlink():
        raise InvalidInputError(f"{dataset_dir}: is a link (from 'nnunet'); remove it first")
    remove_leftovers(dataset_dir)
    check_destination(tasks, dataset_dir, overwrite)
    results = run_tasks(tasks, dataset_dir, overwrite, processes, progress)
    binarised = sum(r.binarised for r in results)
    if binarised:
        logger.info("binarised %d mask(s) to uint8 {0,1} (values > 0 -> 1)", binarised)
    training = sum(not t.is_test for t in tasks)
    dataset_json = DatasetJson(
        name=dataset_dir.name,
        channel_names=plan.channel_names,
        labels=dict(LABELS),
        num_training=training,
        file_ending=FILE_ENDING,
        extra={"source": plan.source_note},
    )
    write_case_sources(dataset_dir, list(plan.case_sources))
    write_dataset_json(dataset_dir, dataset_json)
    skipped = sum(r.skipped for r in results)
    return ConversionSummary(
        kind=kind,
        dataset_dir=dataset_dir,
        training_cases=training,
        test_cases=len(tasks) - training,
        converted=len(results) - skipped,
        skipped=skipped,
        binarised_masks=binarised,
        notes=plan.notes,
    )
