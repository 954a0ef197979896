"""Finding and checking the cases of an input folder before any prediction starts.

Two naming schemes are accepted: nnU-Net's ``<case>_0000.nii.gz`` (+ ``_0001`` ...) with one
file per channel, or plain single-channel files ``<case>.nii.gz`` / ``.nii`` / ``.mha`` /
``.nrrd``. Every problem is collected and raised together, one line per file, before a
single case is predicted.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from autoseg.core.atomic import is_temporary
from autoseg.core.errors import InvalidInputError
from autoseg.data.io import VOLUME_ENDINGS, file_ending, read_meta, strip_ending
from autoseg.data.layout import CHANNEL_SUFFIX
from autoseg.data.records import geometry_mismatch
from autoseg.data.verify_case import CaseJob, check_case

InputCase = tuple[str, list[Path]]


def _volume_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise InvalidInputError(f"{folder}: input folder not found")
    files = sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not is_temporary(p) and file_ending(p) in VOLUME_ENDINGS
    )
    if not files:
        endings = ", ".join(VOLUME_ENDINGS)
        raise InvalidInputError(f"{folder}: no image files ({endings})")
    return files


def _channel_groups(files: Sequence[Path]) -> dict[str, dict[int, Path]] | None:
    """Files grouped nnU-Net style, or None when some name has no ``_NNNN`` suffix."""
    groups: dict[str, dict[int, Path]] = defaultdict(dict)
    for path in files:
        match = CHANNEL_SUFFIX.match(strip_ending(path))
        if match is None:
            return None
        groups[match.group(1)][int(match.group(2))] = path
    return dict(groups)


def _complete(groups: dict[str, dict[int, Path]], num_channels: int | None) -> bool:
    """Every case holds channels 0..n-1 of one common n (the nnU-Net layout for sure)."""
    counts = {len(channels) for channels in groups.values()}
    if len(counts) != 1 or (num_channels is not None and counts != {num_channels}):
        return False
    return all(sorted(c) == list(range(len(c))) for c in groups.values())


def _channel_problems(
    folder: Path, groups: dict[str, dict[int, Path]], num_channels: int | None
) -> list[str]:
    expected = num_channels or max(len(c) for c in groups.values())
    problems = []
    for case_id, channels in sorted(groups.items()):
        missing = [c for c in range(expected) if c not in channels]
        extra = sorted(c for c in channels if c >= expected)
        if missing:
            names = ", ".join(f"{case_id}_{c:04d}" for c in missing)
            problems.append(f"{folder}: case {case_id} lacks channel files {names}")
        if extra:
            problems.append(f"{folder}: case {case_id} has unexpected channels {extra}")
    return problems


def _plain_cases(folder: Path, files: Sequence[Path], num_channels: int | None) -> list[InputCase]:
    if num_channels not in (None, 1):
        raise InvalidInputError(
            f"{folder}: the model needs {num_channels} channels per case; name files "
            "<case>_0000<ending>, <case>_0001<ending>, ..."
        )
    by_id: dict[str, list[Path]] = defaultdict(list)
    for path in files:
        by_id[strip_ending(path)].append(path)
    duplicates = [
        f"{folder}: several files for case {k}: {v}" for k, v in by_id.items() if len(v) > 1
    ]
    if duplicates:
        raise InvalidInputError(duplicates)
    return sorted((case_id, paths) for case_id, paths in by_id.items())


def discover_cases(folder: str | os.PathLike, num_channels: int | None = None) -> list[InputCase]:
    """The cases of an input folder as ``[(case_id, [channel files in order])]``, sorted.

    nnU-Net naming is used when every file carries a ``_NNNN`` suffix and the suffixes form
    complete channel sets; otherwise every file is a single-channel case named by its file
    name (so ``patient_0001.nii.gz`` alone is the case ``patient_0001``).

    Args:
        folder: the input folder.
        num_channels: channels the model expects (None: whatever the files say).

    Raises:
        InvalidInputError: no images, incomplete channel sets, duplicate case ids.
    """
    folder = Path(folder)
    files = _volume_files(folder)
    groups = _channel_groups(files)
    if groups is not None and _complete(groups, num_channels):
        return [(k, [v[c] for c in sorted(v)]) for k, v in sorted(groups.items())]
    if groups is not None and (num_channels or 1) > 1:
        raise InvalidInputError(_channel_problems(folder, groups, num_channels))
    return _plain_cases(folder, files, num_channels)


def _header_problems(files: Sequence[Path]) -> list[str]:
    """Readable headers on one grid (cheap: no voxel data is decompressed)."""
    problems, reference = [], None
    for path in files:
        try:
            meta = read_meta(path)
        except InvalidInputError as error:
            problems += error.problems
            continue
        if reference is None:
            reference = (path, meta)
        elif (mismatch := geometry_mismatch(reference[1], meta)) is not None:
            problems.append(f"{path}: not on the grid of {reference[0].name}: {mismatch}")
    return problems


def _case_problems(case: InputCase, num_channels: int | None, read_data: bool) -> list[str]:
    case_id, files = case
    problems = []
    if num_channels is not None and len(files) != num_channels:
        problems.append(
            f"case {case_id}: {len(files)} channel files, the model needs {num_channels}"
        )
    if read_data:
        return problems + list(check_case(CaseJob(case_id, tuple(files))).errors)
    return problems + _header_problems(files)


def verify_inputs(
    cases: Sequence[InputCase],
    num_channels: int | None = None,
    read_data: bool = True,
    workers: int = 2,
) -> None:
    """Check every case like ``autoseg_verify`` does, before any work starts.

    Args:
        cases: from :func:`discover_cases`.
        num_channels: channels the model expects.
        read_data: read every voxel (unreadable/truncated data, NaN/Inf) rather than only
            the headers (unreadable headers, grids that differ between channels).
        workers: threads reading files (decompression releases the GIL).

    Raises:
        InvalidInputError: every problem of every case, one line each naming the file.
    """
    with ThreadPoolExecutor(max(1, workers), thread_name_prefix="autoseg-verify") as pool:
        results = list(pool.map(lambda c: _case_problems(c, num_channels, read_data), cases))
    problems = [line for lines in results for line in lines]
    if problems:
        raise InvalidInputError(problems)
