"""Batches per second of the training loader alone (sampling + augmentation), no network.

Usage: ``python benchmarks/loader_speed.py [--cases N] [--batches N] [--workers 0 1 2]
[--work-dir DIR]``

Writes ``--cases`` synthetic ATLAS-like cases (``synthesize("atlas", size="small")``:
2 mm T1w), converts them to the raw layout and preprocesses them at 2 mm (the cache the
3d_hybrid trains from), then times ``make_training_loader`` with the default
augmentation for a 3D patch and a 2.5D slice stack at each worker count. The trainer
must not wait for the loader: the target is > 5 batches/s for the 3D 2 mm patch with
2 workers. ``--work-dir`` keeps the cache between runs.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import time
from pathlib import Path

from autoseg.data.convert import convert
from autoseg.data.layout import RawDataset
from autoseg.plans.preprocessing import ChannelNormalization, PreprocessingSpec
from autoseg.preprocessing.cache import cached_case_ids
from autoseg.preprocessing.dataset import cache_folder, preprocess_dataset
from autoseg.synthetic.generate import synthesize
from autoseg.training.loader import make_training_loader

SPEC = PreprocessingSpec(
    spacing_mm=(2.0, 2.0, 2.0), normalization=(ChannelNormalization("zscore_brain"),)
)
# (label, patch, batch, slices): the planned 3d_hybrid 2 mm patch and a 2.5D stack.
SETUPS = [
    ("3D 64x80x64 b2", (64, 80, 64), 2, 1),
    ("2.5D 5x96x80 b12", (96, 80), 12, 5),
]


def build_cache(work: Path, cases: int) -> tuple[Path, list[str]]:
    """Synthesize, convert and preprocess (each step skipped when already done)."""
    folder = cache_folder(work / "preprocessed" / "ATLAS", SPEC)
    if len(cached_case_ids(folder, SPEC.spec_hash)) >= cases:
        return folder, cached_case_ids(folder, SPEC.spec_hash)[:cases]
    synthesize("atlas", work / "source", cases, size="small", progress=False, empty_fraction=0)
    convert("atlas", work / "source", work / "raw" / "ATLAS", progress=False)
    raw = RawDataset.open(work / "raw" / "ATLAS")
    preprocess_dataset(raw, work / "preprocessed" / "ATLAS", SPEC, num_processes=2, progress=False)
    return folder, cached_case_ids(folder, SPEC.spec_hash)[:cases]


def time_loader(
    folder: Path, ids: list[str], setup: tuple, workers: int, batches: int
) -> dict[str, float]:
    """Startup time, median seconds per batch and overall batches/s after a warm-up."""
    _, patch, batch_size, slices = setup
    started = time.perf_counter()
    with make_training_loader(
        folder, ids, patch, batch_size, slices=slices, num_workers=workers, seed=0
    ) as loader:
        for _ in range(max(2, workers)):  # warm-up: every worker has produced a batch
            next(loader)
        startup = time.perf_counter() - started
        stamps = [time.perf_counter()]
        for _ in range(batches):
            next(loader)
            stamps.append(time.perf_counter())
    intervals = [b - a for a, b in itertools.pairwise(stamps)]
    return {
        "startup_s": startup,
        "median_s": statistics.median(intervals),
        "batches_per_s": batches / (stamps[-1] - stamps[0]),
        "sample": str(loader.sample_size),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=8)
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--work-dir", type=Path, default=None)
    args = parser.parse_args()
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="loader_speed_"))
    folder, ids = build_cache(work, args.cases)
    print(f"cache: {folder} ({len(ids)} cases)")
    print(f"{'setup':<20} {'workers':>7} {'read box':>16} {'startup s':>9} "
          f"{'median s/batch':>14} {'batches/s':>9}")  # fmt: skip
    for setup in SETUPS:
        for workers in args.workers:
            result = time_loader(folder, ids, setup, workers, args.batches)
            print(f"{setup[0]:<20} {workers:>7} {result['sample']:>16} "
                  f"{result['startup_s']:>9.2f} {result['median_s']:>14.3f} "
                  f"{result['batches_per_s']:>9.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
