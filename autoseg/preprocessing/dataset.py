"""Preprocess a whole raw dataset into its cache: parallel, resumable, deterministic."""

from __future__ import annotations

import multiprocessing
from collections.abc import Sequence
from concurrent.futures import Future, as_completed
from pathlib import Path

from threadpoolctl import threadpool_limits
from tqdm import tqdm

from autoseg.core.atomic import write_json
from autoseg.core.errors import InvalidInputError
from autoseg.core.resources import worker_pool
from autoseg.data.layout import RawDataset
from autoseg.data.records import Case
from autoseg.plans.preprocessing import PreprocessingSpec
from autoseg.preprocessing.cache import SPEC_FILE, is_finished, save_case
from autoseg.preprocessing.case import preprocess_case


class CasePreprocessingError(RuntimeError):
    """A case failed for a reason other than bad input; names the case."""

    def __init__(self, case_id: str, message: str):
        super().__init__(case_id, message)
        self.case_id = case_id
        self.message = message

    def __str__(self) -> str:
        return f"case {self.case_id}: {self.message}"


def cache_folder(output_dir: Path, spec: PreprocessingSpec) -> Path:
    """``preprocessed/<NAME>/<data_id>``: one folder per distinct spec."""
    return Path(output_dir) / spec.data_id


def preprocess_and_save(case: Case, folder: Path, spec: PreprocessingSpec) -> str:
    """Preprocess one raw case into the cache; errors are re-raised naming the case."""
    try:
        result = preprocess_case(case.image_files, case.label_file, spec, case.case_id)
        save_case(folder, result, case.case_id)
    except InvalidInputError as error:
        raise InvalidInputError([f"case {case.case_id}: {p}" for p in error.problems]) from error
    except Exception as error:
        raise CasePreprocessingError(case.case_id, f"{type(error).__name__}: {error}") from error
    return case.case_id


def _limit_threads(threads: int) -> None:
    """Pool initialiser: several workers each running all-core BLAS would thrash the CPU."""
    threadpool_limits(limits=threads)


def _run_inline(cases: Sequence[Case], folder: Path, spec: PreprocessingSpec, bar: tqdm) -> None:
    for case in cases:
        preprocess_and_save(case, folder, spec)
        bar.update()


def _run_pool(
    cases: Sequence[Case], folder: Path, spec: PreprocessingSpec, workers: int, bar: tqdm
) -> None:
    # spawn: workers start clean (no forked BLAS/torch thread state), same on every OS.
    context = multiprocessing.get_context("spawn")
    threads = max(1, multiprocessing.cpu_count() // workers)
    with worker_pool(workers, context, _limit_threads, (threads,)) as pool:
        futures: list[Future] = [
            pool.submit(preprocess_and_save, case, folder, spec) for case in cases
        ]
        try:
            for future in as_completed(futures):
                future.result()
                bar.update()
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def preprocess_dataset(
    raw_dataset: RawDataset,
    output_dir: Path,
    spec: PreprocessingSpec,
    num_processes: int = 1,
    progress: bool = True,
    overwrite: bool = False,
    cases: Sequence[Case] | None = None,
) -> list[str]:
    """Preprocess every training case of ``raw_dataset`` into ``output_dir/<data_id>/``.

    Finished cases made with the same spec are skipped, so a killed run resumes where it
    stopped; a case made with another spec (stale) is redone. Each case's output depends
    only on its files and the spec, so the result is the same whatever the process count.

    Args:
        raw_dataset: the raw dataset (nnU-Net layout).
        output_dir: the dataset's preprocessed folder, ``preprocessed/<NAME>``.
        spec: the preprocessing settings of the configuration(s) being cached.
        num_processes: worker processes; 1 runs in this process.
        progress: show a tqdm progress bar.
        overwrite: redo finished cases too.
        cases: a subset of cases (default: all training cases).

    Returns:
        The case ids now in the cache, sorted.

    Raises:
        InvalidInputError: a case's files are unusable (lines prefixed with the case id).
        CasePreprocessingError: a case failed otherwise.
    """
    folder = cache_folder(output_dir, spec)
    folder.mkdir(parents=True, exist_ok=True)
    write_json(
        folder / SPEC_FILE,
        {"data_id": spec.data_id, "spec_hash": spec.spec_hash, "spec": spec.to_json()},
    )
    all_cases = sorted(
        cases if cases is not None else raw_dataset.training_cases(), key=lambda c: c.case_id
    )
    todo = [c for c in all_cases if overwrite or not is_finished(folder, c.case_id, spec.spec_hash)]
    workers = max(1, min(int(num_processes), len(todo)))
    with tqdm(total=len(todo), disable=not progress, desc=f"preprocess {spec.data_id}") as bar:
        if workers == 1:
            _run_inline(todo, folder, spec, bar)
        else:
            _run_pool(todo, folder, spec, workers, bar)
    return [c.case_id for c in all_cases]
