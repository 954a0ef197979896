"""Training batches on background worker processes; deterministic validation patches.

The workers are a torch ``DataLoader`` over an endless stream of batches: it re-raises a
worker's exception in the main process with the worker's own exception type and text (the
case id included, see :class:`~autoseg.training.sampling.CaseReadError`), notices workers
killed by the system, and shuts them down when the loader is closed.

Batch ``n`` is made from a random generator seeded by ``(seed, n)`` alone, and worker
``w`` of ``N`` makes batches ``w, w + N, ...`` that the DataLoader hands out in order. So the
sequence of batches depends only on the seed: 0 (in-process), 1 or 8 workers give the same
batches, and a resumed run can skip to batch ``n`` without replaying the ones before.
"""

from __future__ import annotations

import itertools
import math
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from threadpoolctl import threadpool_limits
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from autoseg.core.resources import default_workers
from autoseg.plans import Augmentation, TrainingSchedule, augmentation_defaults
from autoseg.training.augmentation import cut_size, sample_size
from autoseg.training.cpu_augmentation import CpuAugmentation, build_transforms
from autoseg.training.sampling import CaseReader, PatchSampler, check_cache

MAX_DEFAULT_WORKERS = 12
WORKER_BASE_BYTES = 600 * 2**20  # a worker process with torch, numpy and scipy imported
COPIES_PER_WORKER = 8  # prefetched batches plus the transform's intermediate arrays
RAM_SHARE_FOR_WORKERS = 0.5  # leave the rest to the trainer and the page cache


class BatchError(RuntimeError):
    """Making a batch failed after its patches were read (e.g. in augmentation); the
    message names the batch's cases."""


@dataclass(frozen=True)
class BatchSource:
    """Makes batch ``n`` of a seeded sequence: sample patches, augment, convert to tensors.

    Attributes:
        sampler: cuts the patches (at the transform's larger ``sample_size`` if any).
        transforms: the augmentation, or None for plain patches.
        seed: the sequence's seed.
        reader: opens the cached cases (one per process).
        defer: only draw the augmentation here and leave the cut un-augmented, for the
            device path (:func:`~autoseg.training.device_augmentation.augment_on_device`).
        channels: image channels of a sample (``C``, or ``C*k`` for slice stacks).
    """

    sampler: PatchSampler
    transforms: CpuAugmentation | None
    seed: int
    reader: CaseReader
    defer: bool = False
    channels: int = 1

    def batch(self, index: int) -> dict[str, Any]:
        """Batch ``index``: ``{"data": float32 (B, C, ...), "target": int64 (B, 1, ...),
        "case_ids": [B ids]}``, with -1 in ``target`` outside the body / volume; deferred
        batches hold the cut, int8 targets and the drawn parameters under ``"augmentation"``.

        The augmentation is drawn first, so that only the box its spatial transforms need
        is read (:func:`~autoseg.training.augmentation.cut_size`)."""
        rng = np.random.default_rng([self.seed, index])
        if self.transforms is None:
            return self._tensors(self.sampler.sample(self.reader, rng))
        augment_rng = np.random.default_rng(int(rng.integers(2**32)))
        drawn = self.transforms.draw(augment_rng, self.sampler.batch_size, self.channels)
        cut = cut_size(drawn.parameters, self.sampler.patch_size)
        batch = self.sampler.sample(self.reader, rng, cut)
        if self.defer:
            return {**self._tensors(batch, np.int8), "augmentation": drawn}
        return self._tensors(self._augment(batch, drawn))

    @staticmethod
    def _tensors(batch: dict[str, Any], target_dtype: type = np.int64) -> dict[str, Any]:
        return {
            "data": torch.from_numpy(np.ascontiguousarray(batch["data"], dtype=np.float32)),
            "target": torch.from_numpy(np.rint(batch["seg"]).astype(target_dtype)),
            "case_ids": batch["case_ids"],
        }

    def _augment(self, batch: dict[str, Any], drawn: Any) -> dict[str, Any]:
        """Apply the drawn augmentation, naming the batch's cases when it fails."""
        try:
            out = self.transforms.apply(batch["data"], batch["seg"], drawn)
        except Exception as error:
            ids = ", ".join(batch["case_ids"])
            raise BatchError(f"augmenting cases {ids}: {type(error).__name__}: {error}") from error
        return {"data": out["data"], "seg": out["seg"], "case_ids": batch["case_ids"]}


class BatchStream(IterableDataset):
    """The endless batch sequence, split between DataLoader workers by index."""

    def __init__(self, source: BatchSource, start: int = 0):
        self.source = source
        self.start = start

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        for index in itertools.count(self.start + worker, workers):
            yield self.source.batch(index)


def _limit_threads(worker_id: int) -> None:
    """Worker initialiser: one BLAS thread per worker, or the workers thrash the CPU."""
    threadpool_limits(limits=1)


def worker_memory_bytes(batch_size: int, channels: int, read_box: Sequence[int]) -> int:
    """Estimated peak memory of one worker: the process itself plus a few copies of a
    float32 batch (image channels and labels) of the box the sampler cuts (for slice
    stacks the box ``(k, Sy, Sx)`` already counts the slices)."""
    batch_bytes = 4 * batch_size * (channels + 1) * math.prod(read_box)
    return WORKER_BASE_BYTES + COPIES_PER_WORKER * batch_bytes


def default_num_workers(per_worker_bytes: int) -> int:
    """Workers the machine allows: at most one per core, at most half the available RAM,
    at most :data:`MAX_DEFAULT_WORKERS`, at least one."""
    return default_workers(
        per_worker_bytes, cap=MAX_DEFAULT_WORKERS, memory_share=RAM_SHARE_FOR_WORKERS
    )


def default_start_method() -> str:
    """``fork`` on Linux: workers start at once and share the parent's imports (spawning
    re-imports torch in every worker, seconds each), and they touch neither CUDA nor
    OpenMP, the usual hazards of forking. ``spawn`` elsewhere (macOS, Windows)."""
    return "fork" if sys.platform.startswith("linux") else "spawn"


class TrainingLoader:
    """An endless iterator of augmented training batches; close it (or use ``with``) to
    stop its workers.

    Attributes:
        source: makes each batch.
        num_workers: worker processes (0: batches are made in this process).
        sample_size: the bound on the cut before the spatial transform (each batch cuts only
            what its drawn transforms need, :func:`~autoseg.training.augmentation.cut_size`).
    """

    def __init__(
        self,
        source: BatchSource,
        num_workers: int,
        start: int = 0,
        context: str | None = None,
        pin_memory: bool = False,
    ):
        self.source = source
        self.num_workers = num_workers
        self.sample_size = source.sampler.sample_size or source.sampler.patch_size
        self._next_index = start
        self._iterator: Iterator[dict[str, Any]] | None = None
        if num_workers > 0:
            loader = DataLoader(
                BatchStream(source, start),
                batch_size=None,
                num_workers=num_workers,
                worker_init_fn=_limit_threads,
                multiprocessing_context=context or default_start_method(),
                prefetch_factor=2,
                persistent_workers=False,
                pin_memory=pin_memory,
            )
            self._iterator = iter(loader)

    def __iter__(self) -> TrainingLoader:
        return self

    def __next__(self) -> dict[str, Any]:
        if self.num_workers == 0:
            self._next_index += 1
            return self.source.batch(self._next_index - 1)
        if self._iterator is None:
            raise StopIteration
        return next(self._iterator)

    def close(self) -> None:
        """Stop and join the worker processes (idempotent)."""
        iterator, self._iterator = self._iterator, None
        shutdown = getattr(iterator, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()

    def __enter__(self) -> TrainingLoader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()


def _sampler(
    cache_folder: Path,
    case_ids: Sequence[str],
    patch_size: Sequence[int],
    batch_size: int,
    slices: int,
    oversample_foreground: float,
    read_size: Sequence[int] | None,
    per_lesion: float = 0.0,
) -> PatchSampler:
    if len(patch_size) not in (2, 3):
        raise ValueError(f"patch_size must have 2 or 3 entries, got {list(patch_size)}")
    if slices < 1 or slices % 2 == 0:
        raise ValueError(f"slices must be odd (2T+1), got {slices}")
    if len(patch_size) == 3 and slices != 1:
        raise ValueError("slice stacks are for 2D patches; 3D patches take slices=1")
    check_cache(Path(cache_folder), case_ids)
    return PatchSampler(
        folder=Path(cache_folder),
        case_ids=tuple(case_ids),
        patch_size=tuple(int(p) for p in patch_size),
        batch_size=int(batch_size),
        oversample_foreground=float(oversample_foreground),
        context=(slices - 1) // 2,
        sample_size=None if read_size is None else tuple(int(s) for s in read_size),
        per_lesion=float(per_lesion),
    )


def make_training_loader(
    cache_folder: Path,
    case_ids: Sequence[str],
    patch_size: Sequence[int],
    batch_size: int,
    *,
    slices: int = 1,
    augmentation: Augmentation | dict[str, Any] | None = None,
    oversample_foreground: float = TrainingSchedule.oversample_foreground,
    per_lesion: float = 0.0,
    num_workers: int | None = None,
    seed: int = 0,
    start: int = 0,
    context: str | None = None,
    pin_memory: bool = False,
    augment_on_device: bool = False,
    channel_copies: int = 1,
) -> TrainingLoader:
    """The training batch iterator of one configuration.

    Args:
        cache_folder: ``preprocessed/<NAME>/<data_id>``.
        case_ids: the fold's training cases.
        patch_size: the plans' ``patch_size``: ``(Pz, Py, Px)`` (3D) or ``(Py, Px)`` (2D).
        batch_size: patches per batch.
        slices: ``k = 2T+1`` adjacent slices per 2D sample (the plans' ``slice_context
            .slices``); 1 for 3D and plain 2D.
        augmentation: the plans' ``augmentation`` entry; None = defaults, ``{"off": True}``
            = no augmentation at all.
        oversample_foreground: fraction of each batch forced to contain foreground.
        per_lesion: share of the forced patches centred on a lesion drawn uniformly among
            the case's lesions (see :func:`~autoseg.training.sampling.foreground_voxel`).
        num_workers: background processes; None = :func:`default_num_workers`, 0 = make
            batches in this process (tests, debugging).
        seed: seeds the batch sequence (independent of ``num_workers``).
        start: index of the first batch (to resume a sequence).
        context: multiprocessing start method; None = :func:`default_start_method`.
        pin_memory: page-lock worker batches (CUDA training: faster non-blocking copies).
        augment_on_device: the workers only read and cut (at the larger size the spatial
            transform needs) and draw the parameters; the trainer's batch transform
            :func:`~autoseg.training.device_augmentation.augment_on_device` applies them.
        channel_copies: the cached channels are this many stacked copies of the image's
            (2 with ``preprocessing.contralateral``), sharing their intensity draws.

    Returns:
        A :class:`TrainingLoader` yielding ``{"data": float32 (B, C, Z, Y, X) or (B, C*k,
        Y, X), "target": int64 (B, 1, ...) with -1 = ignore, "case_ids": [B ids]}``.

    Raises:
        InvalidInputError: a case's cache files are missing (one line per file).
    """
    dim = len(patch_size)
    if augmentation is not None and not isinstance(augmentation, Augmentation):
        augmentation = Augmentation.from_json(
            augmentation, "augmentation", augmentation_defaults(dim)
        )
    off = augmentation is not None and augmentation.off
    transforms = None if off else build_transforms(augmentation, patch_size, dim, channel_copies)
    read_size = None if off else sample_size(patch_size, augmentation, dim)
    sampler = _sampler(
        cache_folder,
        case_ids,
        patch_size,
        batch_size,
        slices,
        oversample_foreground,
        read_size,
        per_lesion,
    )
    channels = CaseReader(Path(cache_folder)).case(sampler.case_ids[0]).data.shape[0]
    if num_workers is None:
        per_worker = worker_memory_bytes(batch_size, channels, sampler.box_sizes()[1])
        num_workers = default_num_workers(per_worker)
    source = BatchSource(sampler, transforms, int(seed), CaseReader(Path(cache_folder)),
                         defer=augment_on_device, channels=channels * slices)  # fmt: skip
    return TrainingLoader(source, int(num_workers), start, context, pin_memory)


class ValidationBatches:
    """A fixed list of un-augmented, foreground-oversampled validation batches, made anew
    (identically) each time it is iterated: the same patches every epoch, so the
    pseudo-Dice curve moves only when the model does."""

    def __init__(self, source: BatchSource, num_batches: int):
        self.source = source
        self.num_batches = num_batches

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return (self.source.batch(index) for index in range(self.num_batches))


def make_validation_batches(
    cache_folder: Path,
    case_ids: Sequence[str],
    patch_size: Sequence[int],
    batch_size: int,
    num_batches: int,
    *,
    slices: int = 1,
    oversample_foreground: float = TrainingSchedule.oversample_foreground,
    seed: int = 0,
) -> ValidationBatches:
    """Deterministic validation patches for the per-epoch pseudo-Dice (no augmentation).

    Args:
        cache_folder: ``preprocessed/<NAME>/<data_id>``.
        case_ids: the fold's validation cases.
        patch_size: as for :func:`make_training_loader`.
        batch_size: patches per batch.
        num_batches: batches per pass.
        slices: ``k`` for 2D slice stacks, 1 otherwise.
        oversample_foreground: fraction of each batch forced to contain foreground.
        seed: which patches are drawn.

    Returns:
        An iterable of batches in the format of :func:`make_training_loader`.
    """
    sampler = _sampler(
        cache_folder, case_ids, patch_size, batch_size, slices, oversample_foreground, None
    )
    source = BatchSource(sampler, None, int(seed), CaseReader(Path(cache_folder)))
    return ValidationBatches(source, int(num_batches))
