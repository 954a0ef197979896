"""ISLES'22 (DWI, ADC, FLAIR and expert masks, BIDS) into the raw layout.

Files are found by their BIDS names, searching ``src`` recursively, so both layouts work:

- the release: ``rawdata/sub-*/ses-*/dwi/..._{dwi,adc}.nii.gz``,
  ``rawdata/sub-*/ses-*/anat/..._FLAIR.nii.gz`` and
  ``derivatives/sub-*/ses-*/..._msk.nii.gz`` (``rawdata/`` may be absent: the release zip
  has the ``sub-*`` folders at its top);
- flattened copies without the ``dwi/`` / ``anat/`` folders (the challenge repository's
  sample), or all files of a case in one folder.

A mask is a ``_msk`` file under a ``derivatives`` folder; images are ``_dwi``, ``_adc``
and ``_flair`` files (any case: the release writes ``_FLAIR``) outside it. Subject and
session entities pair them. Channels are ``--channels`` in the order given (DWI and
ADC by default). Every case is written on the DWI grid, the grid the masks are drawn on:
DWI and ADC must be on it (affines within 1e-3 mm), FLAIR is resampled onto it
(:mod:`autoseg.data.convert.resample`), the mask must be on it. Subjects without a
mask become test cases. Case ids follow ATLAS: the subject label, ``_ses-<label>``
appended for subjects with several sessions. The BIDS origin of every case is recorded
in ``case_sources.json`` (:mod:`autoseg.data.sources`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from autoseg.core.errors import InvalidInputError
from autoseg.data.bids import parse_name
from autoseg.data.convert.cases import (
    CaseTask,
    ConversionPlan,
    NiftiSource,
    Source,
    bids_case_id,
    raise_case_problems,
)
from autoseg.data.convert.resample import METHOD, ResampledSource
from autoseg.data.io import NIFTI_ENDINGS, file_ending, read_meta
from autoseg.data.records import geometry_mismatch
from autoseg.data.sources import CaseSource

logger = logging.getLogger(__name__)

CHANNELS = {"dwi": "DWI", "adc": "ADC", "flair": "FLAIR"}
DEFAULT_CHANNELS = ("dwi", "adc")
GRID_CHANNEL = "dwi"  # the grid the ISLES'22 masks are drawn on
OWN_GRID_CHANNELS = ("flair",)  # shipped in native space: resampled, not required on the grid
MASK_SUFFIX = "msk"
DERIVATIVES = "derivatives"

Key = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class IslesFile:
    """One ISLES'22 image or mask: its entities, role (a channel key or ``msk``), root."""

    path: Path
    key: Key
    role: str
    bids_root: Path

    @property
    def entities(self) -> dict[str, str]:
        return dict(self.key)


def _bids_root(path: Path, root: Path) -> Path:
    """The folder holding the file's ``sub-*`` folder, else the file's own folder."""
    parts = path.relative_to(root).parts[:-1]
    for index, part in enumerate(parts):
        if part.startswith("sub-"):
            return root.joinpath(*parts[:index])
    return path.parent


def classify(path: Path, root: Path) -> IslesFile | None:
    """An :class:`IslesFile` for an ISLES'22 image or mask, None for any other file."""
    relative = path.relative_to(root).parts
    if any(p.startswith(".") or p == "__MACOSX" for p in relative):
        return None
    if file_ending(path) not in NIFTI_ENDINGS:
        return None
    parsed = parse_name(path.name)
    if parsed is None or parsed.get("sub") is None:
        return None
    suffix = parsed.suffix.lower()
    in_derivatives = DERIVATIVES in (p.lower() for p in relative[:-1])
    if in_derivatives and suffix == MASK_SUFFIX:
        return IslesFile(path, parsed.entities, MASK_SUFFIX, _bids_root(path, root))
    if not in_derivatives and suffix in CHANNELS:
        return IslesFile(path, parsed.entities, suffix, _bids_root(path, root))
    return None


def _group(root: Path) -> tuple[dict[Key, dict[str, IslesFile]], list[str]]:
    """``{entities: {role: file}}``; a role found twice for one subject/session is a problem."""
    groups: dict[Key, dict[str, IslesFile]] = {}
    problems = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        item = classify(path, root)
        if item is None:
            continue
        roles = groups.setdefault(item.key, {})
        if item.role in roles:
            problems.append(f"{path}: second {item.role} file of {_who(item.key)} "
                            f"(first: {roles[item.role].path})")  # fmt: skip
        else:
            roles[item.role] = item
    return groups, problems


def _who(key: Key) -> str:
    return "_".join(f"{k}-{v}" for k, v in key)


def _grid_problems(key: Key, roles: dict[str, IslesFile], channels: Sequence[str]) -> list[str]:
    """Channels that must share the DWI grid and the mask, checked from headers only."""
    grid = roles[GRID_CHANNEL]
    reference = read_meta(grid.path)
    problems = []
    for role in [*channels, MASK_SUFFIX]:
        if role not in roles or role in OWN_GRID_CHANNELS or role == GRID_CHANNEL:
            continue
        mismatch = geometry_mismatch(reference, read_meta(roles[role].path))
        if mismatch is not None:
            what = "mask" if role == MASK_SUFFIX else CHANNELS[role]
            problems.append(f"{_who(key)}: {what} {roles[role].path} is not on the DWI grid of "
                            f"{grid.path}: {mismatch}")  # fmt: skip
    return problems


def _missing(key: Key, roles: dict[str, IslesFile], channels: Sequence[str]) -> list[str]:
    where = next(iter(roles.values())).path.parent
    needed = dict.fromkeys([GRID_CHANNEL, *channels])
    return [f"{_who(key)}: no {CHANNELS[c]} image (expected {_who(key)}_{c}.nii.gz, "
            f"e.g. in {where})" for c in needed if c not in roles]  # fmt: skip


def _source(role: str, roles: dict[str, IslesFile]) -> Source:
    """Copied exactly when on the DWI grid; FLAIR resampled when it is not."""
    path, grid = roles[role].path, roles[GRID_CHANNEL].path
    if role in OWN_GRID_CHANNELS and geometry_mismatch(read_meta(grid), read_meta(path)):
        return ResampledSource(path, grid)
    return NiftiSource(path)


def _case_source(case_id: str, roles: dict[str, IslesFile], channels: Sequence[str]) -> CaseSource:
    grid = roles[GRID_CHANNEL]
    root = grid.bids_root
    files = {CHANNELS[c]: os.path.relpath(roles[c].path, root) for c in channels}
    mask = roles.get(MASK_SUFFIX)
    return CaseSource(case_id, grid.entities, "imagesTs" if mask is None else "imagesTr",
                      str(root.resolve()), files,
                      None if mask is None else os.path.relpath(mask.path, root))  # fmt: skip


def check_channels(channels: Sequence[str]) -> list[str]:
    """Problems of a ``--channels`` list (unknown or repeated names)."""
    problems = [f"--channels: unknown channel '{c}' (ISLES'22 has {', '.join(CHANNELS)})"
                for c in channels if c not in CHANNELS]  # fmt: skip
    if len(set(channels)) != len(channels):
        problems.append(f"--channels: a channel is given twice ({' '.join(channels)})")
    return problems


def _multi_session(groups: dict[Key, dict[str, IslesFile]]) -> set[str]:
    sessions: dict[str, set[str | None]] = {}
    for key in groups:
        entities = dict(key)
        sessions.setdefault(entities["sub"], set()).add(entities.get("ses"))
    return {subject for subject, found in sessions.items() if len(found) > 1}


def _plan_cases(
    groups: dict[Key, dict[str, IslesFile]], channels: Sequence[str]
) -> tuple[list[CaseTask], list[CaseSource], list[str]]:
    multi = _multi_session(groups)
    tasks, sources, problems = [], [], []
    for key, roles in sorted(groups.items()):
        if set(roles) == {MASK_SUFFIX}:
            problems.append(f"{roles[MASK_SUFFIX].path}: mask of {_who(key)} without its images")
            continue
        missing = _missing(key, roles, channels)
        if missing or (found := _grid_problems(key, roles, channels)):
            problems += missing or found
            continue
        case_id = bids_case_id(dict(key), multi)
        mask = roles.get(MASK_SUFFIX)
        images = tuple(_source(c, roles) for c in channels)
        tasks.append(CaseTask(case_id, images, None if mask is None else NiftiSource(mask.path)))
        sources.append(_case_source(case_id, roles, channels))
    return tasks, sources, problems


def _resampled(tasks: Sequence[CaseTask], channels: Sequence[str]) -> dict[str, dict]:
    """``{channel: {"onto", "method", "cases"}}`` for dataset.json: what was resampled."""
    found = {}
    for index, channel in enumerate(channels):
        cases = [t.case_id for t in tasks if isinstance(t.images[index], ResampledSource)]
        if cases:
            found[CHANNELS[channel]] = {"onto": CHANNELS[GRID_CHANNEL], "method": METHOD,
                                        "cases": cases}  # fmt: skip
    return found


def _resampling_notes(resampled: dict[str, dict]) -> tuple[str, ...]:
    return tuple(f"{name} resampled onto the {r['onto']} grid for {len(r['cases'])} case(s) "
                 f"({r['method']})" for name, r in resampled.items())  # fmt: skip


def plan(src: Path, channels: Sequence[str] | None = None) -> ConversionPlan:
    """Find, pair and check every ISLES'22 case under ``src``; raise with all problems.

    Args:
        src: the release folder, its ``rawdata`` parent, or any folder of ISLES'22 files.
        channels: channel keys in channel order (``dwi``, ``adc``, ``flair``); None: DWI, ADC.

    Raises:
        InvalidInputError: unknown channels, missing channels, off-grid DWI/ADC or masks,
            duplicates, or no cases (each line names the subject and files).
    """
    src, channels = Path(src), tuple(channels or DEFAULT_CHANNELS)
    if not src.is_dir():
        raise InvalidInputError(f"{src}: not a folder")
    problems = check_channels(channels)
    if problems:
        raise InvalidInputError(problems)
    groups, problems = _group(src)
    tasks, sources, found = _plan_cases(groups, channels)
    nothing = None if groups else "no ISLES'22 images (sub-*_dwi.nii.gz, _adc, _FLAIR) found"
    raise_case_problems(tasks, problems + found, src, nothing)
    if not any(not t.is_test for t in tasks):
        logger.warning("%s: no masks under derivatives/; all %d cases are test cases", src,
                       len(tasks))  # fmt: skip
    tasks.sort(key=lambda t: (t.is_test, t.case_id))
    names = {str(i): CHANNELS[c] for i, c in enumerate(channels)}
    resampled = _resampled(tasks, channels)
    note = {"kind": "isles22", "path": str(src.resolve()), "grid": CHANNELS[GRID_CHANNEL],
            "resampled": resampled}  # fmt: skip
    return ConversionPlan(tuple(tasks), names, note, tuple(sources),
                          _resampling_notes(resampled))  # fmt: skip
