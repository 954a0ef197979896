"""Patch sampling from the preprocessed caches, with foreground oversampling (DESIGN §6, §7).

Every configuration reads the same 3D cache (``data`` ``(C, Z, Y, X)``, ``seg``
``(1, Z, Y, X)``). A 3D patch is a box ``(Pz, Py, Px)``; a 2D / 2.5D patch is one slice
``z`` (Z is the slice axis) of in-plane size ``(Py, Px)`` together with its ``T`` neighbours
on each side, i.e. the box ``(2T+1, Py, Px)`` centred on that slice. Both are cut by the
same region reader, which copies only the box out of the memory-mapped arrays.

Outside the volume the image is padded with 0 and the labels with -1 ("not a voxel of
the body", ignored by the losses). This also holds for the slices of a 2.5D stack beyond
the first and last slice: they are zero padded, not replicated, so the network sees the
same "nothing there" value at every border. The stack is slice-major: channel
``s * C + c`` is image channel ``c`` of slice ``z - T + s``, the order the 2D networks
reshape by.

When a spatial augmentation follows, the sampler cuts a larger box (``sample_size``)
centred on the same patch, so that rotating or zooming and then cropping the centre
never shows padding that the volume itself does not need (nnU-Net's ``need_to_pad``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cc3d
import numpy as np

from autoseg.core.errors import InvalidInputError
from autoseg.plans import TrainingSchedule
from autoseg.preprocessing.cache import case_paths, load_case
from autoseg.preprocessing.properties import PreprocessedCase

Shape3 = tuple[int, int, int]
DATA_PAD = 0.0
SEG_PAD = -1


class CaseReadError(RuntimeError):
    """Reading or sampling one cached case failed; the message names the case.

    It takes a single message argument so that a worker process's error is rebuilt with
    its own type (and the case id in its text) when it is re-raised in the main process.
    """


def check_cache(folder: Path, case_ids: Sequence[str]) -> None:
    """Reject missing cache files before any worker starts.

    Raises:
        InvalidInputError: one line per missing ``<case>.npz`` / ``<case>.json``, or no cases.
    """
    if not case_ids:
        raise InvalidInputError(f"{folder}: no training cases given")
    problems = [
        f"{path}: missing cache file of case {case_id}"
        for case_id in case_ids
        for path in case_paths(Path(folder), case_id)
        if not path.is_file()
    ]
    if problems:
        raise InvalidInputError(problems)


def read_region(
    array: np.ndarray,
    start: Sequence[int],
    size: Sequence[int],
    pad: float,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Copy the box ``[start, start + size)`` of the last three axes of ``array``, padded.

    Only the part of the box inside the array is read (from a memory map this touches
    only those pages); the rest is filled with ``pad``.

    Args:
        array: ``(C, Z, Y, X)``, typically a read-only memory map.
        start: box origin ``(z, y, x)``, may be negative.
        size: box size ``(z, y, x)``.
        pad: value outside the array.
        out: optional ``(C, *size)`` array to fill (e.g. a slot of a batch array), which
            saves a copy of large boxes.

    Returns:
        ``out``, or a new writable array ``(C, *size)`` of the array's dtype.
    """
    if out is None:
        out = np.empty((array.shape[0], *size), dtype=array.dtype)
    out[...] = pad
    source, target = [], []
    for begin, length, extent in zip(start, size, array.shape[1:], strict=True):
        low, high = max(begin, 0), min(begin + length, extent)
        if high <= low:
            return out
        source.append(slice(low, high))
        target.append(slice(low - begin, high - begin))
    out[(slice(None), *target)] = array[(slice(None), *source)]
    return out


class CaseReader:
    """Opens cached cases lazily (memory-mapped) and keeps them open for later patches.

    Each worker process holds its own reader; the open maps are dropped when the reader is
    pickled, so sending it to a worker never copies image data.
    """

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self._cases: dict[str, PreprocessedCase] = {}
        self._lesions: dict[str, dict[int, np.ndarray]] = {}

    def __getstate__(self) -> dict:
        return {"folder": self.folder, "_cases": {}, "_lesions": {}}

    def lesion_ids(self, case_id: str) -> dict[int, np.ndarray]:
        """Per class, the lesion (26-connected component) of each stored foreground
        coordinate, so a patch can be centred on a lesion drawn uniformly (computed once
        per case and process from the cached labels)."""
        if case_id not in self._lesions:
            case = self.case(case_id)
            self._lesions[case_id] = lesion_ids_of(case)
        return self._lesions[case_id]

    def case(self, case_id: str) -> PreprocessedCase:
        """The memory-mapped case, opened on first use.

        Raises:
            CaseReadError: the case's files cannot be read or hold no labels.
        """
        if case_id not in self._cases:
            try:
                case = load_case(self.folder, case_id, mmap=True)
            except Exception as error:
                raise CaseReadError(_describe(case_id, self.folder, error)) from error
            if case.seg is None:
                raise CaseReadError(f"case {case_id} in {self.folder}: the cache has no labels")
            self._cases[case_id] = case
        return self._cases[case_id]

    def region(
        self, case_id: str, start: Sequence[int], size: Sequence[int], out: tuple | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(data (C, *size) float32, seg (1, *size) int8)`` of a box, padded 0 / -1,
        written into ``out = (data, seg)`` when given."""
        case = self.case(case_id)
        data_out, seg_out = out if out is not None else (None, None)
        if data_out is None:
            data_out = np.empty((case.data.shape[0], *size), np.float32)
        try:
            data = read_region(case.data, start, size, DATA_PAD, data_out)
            seg = read_region(case.seg, start, size, SEG_PAD, seg_out)
        except Exception as error:
            raise CaseReadError(_describe(case_id, self.folder, error)) from error
        return data, seg


def _describe(case_id: str, folder: Path, error: BaseException) -> str:
    return f"case {case_id} in {folder}: {type(error).__name__}: {error}"


def forced_count(batch_size: int, fraction: float) -> int:
    """Patches of a batch forced to hold foreground: at least ``fraction`` of the batch.

    Rounding up guarantees the requested share in every batch (a third of a batch of 2
    forces one patch), which matters most for the small batches 3D training uses.
    """
    return min(batch_size, math.ceil(batch_size * fraction - 1e-9))


def random_start(rng: np.random.Generator, extent: int, length: int) -> int:
    """A uniform patch origin along one axis: inside the volume when it fits, otherwise
    anywhere such that the whole (smaller) volume stays inside the patch."""
    low, high = min(0, extent - length), max(0, extent - length)
    return int(rng.integers(low, high + 1))


def centred_start(centre: int, extent: int, length: int) -> int:
    """The origin of a patch centred on ``centre``, shifted to stay inside the volume as far
    as it can (the centre voxel always stays inside the patch)."""
    low, high = min(0, extent - length), max(0, extent - length)
    return int(np.clip(centre - length // 2, low, high))


def lesion_ids_of(case: PreprocessedCase) -> dict[int, np.ndarray]:
    """Component id (26-connectivity) of every stored foreground coordinate, per class."""
    out = {}
    for label, points in case.properties.foreground_coordinates.items():
        points = np.asarray(points, dtype=np.int64).reshape(-1, 3)
        if len(points) == 0:
            out[label] = np.zeros(0, np.int64)
            continue
        components = cc3d.connected_components(np.asarray(case.seg[0]) == label, connectivity=26)
        out[label] = components[tuple(points.T)].astype(np.int64)
    return out


def foreground_voxel(
    rng: np.random.Generator,
    case: PreprocessedCase,
    lesion_ids: dict[int, np.ndarray] | None = None,
    per_lesion: float = 0.0,
) -> np.ndarray | None:
    """A stored foreground coordinate ``(z, y, x)`` of a class drawn uniformly among the
    classes present in the case, or None when it has none (then a random patch is used).

    With probability ``per_lesion`` the voxel is drawn from a lesion chosen uniformly among
    the case's lesions instead of uniformly among its voxels: a voxel draw centres patches
    on the largest lesion nearly every time, and a 0.1 ml satellite beside a 40 ml infarct
    would almost never be the centre of a patch.
    """
    coordinates = case.properties.foreground_coordinates
    present = sorted(c for c, points in coordinates.items() if len(points) > 0)
    if not present:
        return None
    label = present[int(rng.integers(len(present)))]
    points = coordinates[label]
    if lesion_ids is not None and per_lesion > 0 and rng.random() < per_lesion:
        ids = lesion_ids[label]
        lesion = rng.choice(np.unique(ids))
        members = np.flatnonzero(ids == lesion)
        return np.asarray(points[int(members[rng.integers(members.size)])])
    return np.asarray(points[int(rng.integers(len(points)))])


@dataclass(frozen=True)
class PatchSampler:
    """Cuts training patches out of cached cases.

    Attributes:
        folder: the cache folder ``preprocessed/<NAME>/<data_id>``.
        case_ids: the cases to draw from (uniformly).
        patch_size: ``(Pz, Py, Px)`` for 3D, ``(Py, Px)`` for 2D / 2.5D.
        batch_size: patches per batch.
        oversample_foreground: fraction of each batch forced to contain foreground.
        per_lesion: share of the forced patches centred on a lesion drawn uniformly among the
            case's lesions (the rest on a foreground voxel drawn uniformly).
        context: ``T`` slices on each side of the centre slice (2D only; 0 = single slice).
        sample_size: the (larger) size actually cut, centred on the patch, so a later
            spatial transform has a border; None = ``patch_size``.
    """

    folder: Path
    case_ids: tuple[str, ...]
    patch_size: tuple[int, ...]
    batch_size: int
    oversample_foreground: float = TrainingSchedule.oversample_foreground
    context: int = 0
    sample_size: tuple[int, ...] | None = None
    per_lesion: float = 0.0

    @property
    def dim(self) -> int:
        return len(self.patch_size)

    def box_sizes(self, read_size: Sequence[int] | None = None) -> tuple[Shape3, Shape3]:
        """``(patch box, read box)`` as 3D sizes; a 2D patch is one slice thick and its read
        box is the ``2T+1`` slice stack. ``read_size`` overrides ``sample_size``."""
        sample = tuple(read_size or self.sample_size or self.patch_size)
        if self.dim == 3:
            return tuple(self.patch_size), tuple(sample)
        return (1, *self.patch_size), (2 * self.context + 1, *sample)

    def patch_start(
        self,
        rng: np.random.Generator,
        case: PreprocessedCase,
        force: bool,
        lesion_ids: dict[int, np.ndarray] | None = None,
    ) -> list:
        """Origin ``(z, y, x)`` of the patch box: on a foreground voxel when forced and the
        case has one, uniformly random otherwise."""
        patch, _ = self.box_sizes()
        shape = case.data.shape[1:]
        voxel = foreground_voxel(rng, case, lesion_ids, self.per_lesion) if force else None
        if voxel is None:
            return [random_start(rng, n, p) for n, p in zip(shape, patch, strict=True)]
        return [centred_start(int(c), n, p) for c, n, p in zip(voxel, shape, patch, strict=True)]

    def sample_one(
        self,
        reader: CaseReader,
        rng: np.random.Generator,
        force: bool,
        out: tuple | None = None,
        read_size: Sequence[int] | None = None,
    ) -> tuple[str, np.ndarray, np.ndarray]:
        """``(case_id, data, seg)`` of one patch cut with the read box (into ``out``, 3D
        only); see :meth:`sample`."""
        case_id = self.case_ids[int(rng.integers(len(self.case_ids)))]
        case = reader.case(case_id)
        try:
            ids = reader.lesion_ids(case_id) if force and self.per_lesion > 0 else None
            start = self.patch_start(rng, case, force, ids)
        except Exception as error:
            raise CaseReadError(_describe(case_id, reader.folder, error)) from error
        patch, box = self.box_sizes(read_size)
        origin = [s - (b - p) // 2 for s, p, b in zip(start, patch, box, strict=True)]
        data, seg = reader.region(case_id, origin, box, out if self.dim == 3 else None)
        if self.dim == 2:
            data = stack_slices(data)
            seg = seg[:, self.context]
        return case_id, data, seg

    def sample(
        self,
        reader: CaseReader,
        rng: np.random.Generator,
        read_size: Sequence[int] | None = None,
    ) -> dict:
        """One batch; the last :func:`forced_count` patches are foreground-forced.

        Args:
            reader: opens the cases.
            rng: the batch's generator.
            read_size: the size to cut for this batch (None: ``sample_size``), e.g. only
                what the batch's drawn spatial transforms need.

        Returns:
            ``{"data": float32 (B, C, *S) or (B, C*k, *S), "seg": int8 (B, 1, *S),
            "case_ids": [B ids]}`` where ``S`` is the read size.
        """
        first_forced = self.batch_size - forced_count(self.batch_size, self.oversample_foreground)
        case_id, data, seg = self.sample_one(reader, rng, first_forced == 0, None, read_size)
        ids = [case_id]
        # 3D boxes are large: later patches are read straight into the batch arrays.
        batch_data = np.empty((self.batch_size, *data.shape), np.float32)
        batch_seg = np.empty((self.batch_size, *seg.shape), np.int8)
        batch_data[0], batch_seg[0] = data, seg
        for i in range(1, self.batch_size):
            slot = (batch_data[i], batch_seg[i])
            case_id, data, seg = self.sample_one(reader, rng, i >= first_forced, slot, read_size)
            if data is not slot[0]:  # 2D stacks are made apart, then copied in
                batch_data[i], batch_seg[i] = data, seg
            ids.append(case_id)
        return {"data": batch_data, "seg": batch_seg, "case_ids": ids}


def stack_slices(data: np.ndarray) -> np.ndarray:
    """``(C, k, Y, X)`` -> ``(k * C, Y, X)``, slice-major (channel ``s * C + c``)."""
    channels, slices = data.shape[:2]
    return data.transpose(1, 0, 2, 3).reshape(slices * channels, *data.shape[2:])
