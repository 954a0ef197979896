"""ATLAS v2.0 (T1w MRI in MNI space) into the raw layout.

Both layouts seen in the wild are found by searching ``src`` recursively, so ``src``
may be the download's wrapper folder (any name), ``ATLAS_2``, or ``Training`` itself:

- BIDS: ``Training/R0xx/sub-rXXXsYYY/ses-1/anat/sub-rXXXsYYY_ses-1_space-..._T1w.nii.gz``
  with ``..._label-L_desc-T1lesion_mask.nii.gz`` beside it;
- flattened: ``Training/Images/*_T1w.nii.gz`` and ``Training/Masks/*_mask.nii.gz``.

Images under a ``Testing`` (or ``test``) folder become test cases (imagesTs); masks
there are ignored. An image and a mask belong together when the names agree up to the
suffix (``_T1w`` / ``_label-L_desc-T1lesion_mask``).

Case ids are the BIDS subject label without ``sub-`` (``sub-r001s001_ses-1`` ->
``r001s001``); ``_ses-<label>`` is appended for subjects with more than one session.
Files without a ``sub-`` entity use their name before the suffix. Ids keep only
``[A-Za-z0-9._-]`` (anything else becomes ``-``) and must be unique. The entities of
BIDS-named cases (``sub``, ``ses``, ``space``) are recorded in ``case_sources.json``.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from autoseg.core.errors import InvalidInputError
from autoseg.data.convert.cases import (
    CaseTask,
    ConversionPlan,
    NiftiSource,
    bids_case_id,
    is_test_path,
    raise_case_problems,
    safe_case_id,
)
from autoseg.data.io import NIFTI_ENDINGS, file_ending, strip_ending
from autoseg.data.sources import CaseSource

logger = logging.getLogger(__name__)

IMAGE_SUFFIX = re.compile(r"_T1w$", re.IGNORECASE)
MASK_SUFFIX = re.compile(r"(_label-[^_]+)?(_desc-[^_]+)?_mask$", re.IGNORECASE)


@dataclass(frozen=True)
class AtlasFile:
    """One ATLAS image or mask file and the name it is paired by."""

    path: Path
    key: str
    is_mask: bool
    is_test: bool

    @property
    def entities(self) -> dict[str, str]:
        """BIDS entities of the name (``sub-r001s001_ses-1`` -> ``{sub: r001s001, ses: 1}``)."""
        pairs = (part.split("-", 1) for part in self.key.split("_") if "-" in part)
        return {name.lower(): value for name, value in pairs}


def _is_hidden(path: Path, root: Path) -> bool:
    """Dot files (macOS ``._`` copies) and ``__MACOSX`` folders that unzipping leaves."""
    parts = path.relative_to(root).parts
    return any(part.startswith(".") or part == "__MACOSX" for part in parts)


def classify(path: Path, root: Path) -> AtlasFile | None:
    """An :class:`AtlasFile` for a T1w image or lesion mask, None for any other file."""
    if file_ending(path) not in NIFTI_ENDINGS or _is_hidden(path, root):
        return None
    stem = strip_ending(path)
    is_test = is_test_path(path, root)
    if IMAGE_SUFFIX.search(stem):
        return AtlasFile(path, IMAGE_SUFFIX.sub("", stem), False, is_test)
    if MASK_SUFFIX.search(stem):
        return AtlasFile(path, MASK_SUFFIX.sub("", stem), True, is_test)
    return None


def find_files(root: Path) -> list[AtlasFile]:
    """Every ATLAS image and mask under ``root``, in path order."""
    found = (classify(path, root) for path in sorted(root.rglob("*")) if path.is_file())
    return [item for item in found if item is not None]


def _group(files: list[AtlasFile]) -> tuple[dict[tuple, list[AtlasFile]], list[str]]:
    """Group files by (test?, key); two images or two masks under one key is a problem."""
    groups: dict[tuple, list[AtlasFile]] = {}
    problems = []
    for item in files:
        group = groups.setdefault((item.is_test, item.key), [])
        twin = next((other for other in group if other.is_mask == item.is_mask), None)
        if twin is not None:
            problems.append(f"{item.path}: same case as {twin.path}")
        else:
            group.append(item)
    return groups, problems


def _pair_problems(group: list[AtlasFile]) -> list[str]:
    image = next((item for item in group if not item.is_mask), None)
    mask = next((item for item in group if item.is_mask), None)
    if image is None and mask is not None and not mask.is_test:
        return [f"{mask.path}: lesion mask without its T1w image (expected '{mask.key}_T1w')"]
    if mask is None and image is not None and not image.is_test:
        hint = f"'{image.key}_label-L_desc-T1lesion_mask.nii.gz'"
        return [f"{image.path}: training image without its lesion mask (expected {hint})"]
    return []


def case_id_for(image: AtlasFile, multi_session: set[str]) -> str:
    """The case id of an image (see the module docstring)."""
    if "sub" not in image.entities:
        return safe_case_id(image.key)
    return bids_case_id(image.entities, multi_session)


def _multi_session_subjects(images: list[AtlasFile]) -> set[str]:
    sessions: dict[str, set[str | None]] = {}
    for image in images:
        entities = image.entities
        if "sub" in entities:
            sessions.setdefault(entities["sub"], set()).add(entities.get("ses"))
    return {subject for subject, found in sessions.items() if len(found) > 1}


def _bids_root(path: Path) -> Path:
    """The folder holding the image's ``sub-*`` folder (its own folder when flattened)."""
    return next((p.parent for p in path.parents if p.name.startswith("sub-")), path.parent)


def case_source(case_id: str, image: AtlasFile, mask: AtlasFile | None) -> CaseSource | None:
    """The BIDS origin of a case (None for a file without a ``sub-`` entity)."""
    if "sub" not in image.entities:
        return None
    root = _bids_root(image.path)
    return CaseSource(case_id, image.entities, "imagesTs" if image.is_test else "imagesTr",
                      str(root.resolve()), {"T1w": os.path.relpath(image.path, root)},
                      None if mask is None else os.path.relpath(mask.path, root))  # fmt: skip


def _tasks(groups: dict[tuple, list[AtlasFile]]) -> tuple[list[CaseTask], list[CaseSource]]:
    images = [item for group in groups.values() for item in group if not item.is_mask]
    multi_session = _multi_session_subjects(images)
    tasks, sources = [], []
    for group in groups.values():
        image = next((item for item in group if not item.is_mask), None)
        mask = next((item for item in group if item.is_mask), None)
        if image is None or (mask is None and not image.is_test):
            continue  # reported by _pair_problems
        mask_source = None if image.is_test else NiftiSource(mask.path)
        case_id = case_id_for(image, multi_session)
        tasks.append(CaseTask(case_id, (NiftiSource(image.path),), mask_source))
        source = case_source(case_id, image, None if image.is_test else mask)
        sources += [] if source is None else [source]
    return sorted(tasks, key=lambda task: (task.is_test, task.case_id)), sources


def plan(src: Path) -> ConversionPlan:
    """Find and pair every ATLAS case under ``src``; raise with all problems at once.

    Raises:
        InvalidInputError: unpaired images or masks, duplicates, ids used twice, no
            training images.
    """
    src = Path(src)
    if not src.is_dir():
        raise InvalidInputError(f"{src}: not a folder")
    groups, problems = _group(find_files(src))
    for group in groups.values():
        problems += _pair_problems(group)
    tasks, sources = _tasks(groups)
    trains = any(not task.is_test for task in tasks)
    nothing = None if trains else "no ATLAS training images ('*_T1w.nii.gz' outside 'Testing/')"
    raise_case_problems(tasks, problems, src, nothing)
    ignored = sum(item.is_mask and item.is_test for g in groups.values() for item in g)
    if ignored:
        logger.info("ignored %d lesion mask(s) under Testing/ (test cases have no labels)", ignored)
    note = {"kind": "atlas", "path": str(src.resolve())}
    return ConversionPlan(tuple(tasks), {"0": "T1w"}, note, tuple(sources))
