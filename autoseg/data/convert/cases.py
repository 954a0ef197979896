"""What converters hand to the writer: sources, case tasks, the plan, and the summary.

Also the naming and geometry conventions every converter shares (safe case ids, test
folders, the orientation of bare arrays).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from autoseg.core.errors import InvalidInputError
from autoseg.data.records import ImageMeta
from autoseg.data.sources import CaseSource

FILE_ENDING = ".nii.gz"
LABELS = {"background": 0, "lesion": 1}
OUTPUT_FOLDERS = ("imagesTr", "labelsTr", "imagesTs")


class ArraySource(Protocol):
    """A source that is read into memory and written with a stated geometry (PNG, npy)."""

    def read(self) -> tuple[np.ndarray, ImageMeta]:
        """Return ``(array (Z, Y, X), meta)``."""
        ...


@dataclass(frozen=True)
class NiftiSource:
    """A NIfTI file whose geometry is kept exactly (images are copied byte for byte)."""

    path: Path


Source = NiftiSource | ArraySource


@dataclass(frozen=True)
class CaseTask:
    """One case to write: its channel sources in channel order and its mask source.

    ``mask`` is None for a test case (written to imagesTs).
    """

    case_id: str
    images: tuple[Source, ...]
    mask: Source | None = None

    @property
    def is_test(self) -> bool:
        return self.mask is None

    def outputs(self, dataset_dir: Path) -> list[tuple[Path, Source, bool]]:
        """``(output path, source, is_mask)`` for every file of this case."""
        folder = dataset_dir / ("imagesTs" if self.is_test else "imagesTr")
        files = [
            (folder / f"{self.case_id}_{channel:04d}{FILE_ENDING}", source, False)
            for channel, source in enumerate(self.images)
        ]
        if not self.is_test:
            label = dataset_dir / "labelsTr" / f"{self.case_id}{FILE_ENDING}"
            files.append((label, self.mask, True))
        return files


@dataclass(frozen=True)
class ConversionPlan:
    """Everything a converter found in its source, checked before any file is written."""

    tasks: tuple[CaseTask, ...]
    channel_names: dict[str, str]
    source_note: dict[str, Any] = field(default_factory=dict)
    case_sources: tuple[CaseSource, ...] = ()
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class CaseResult:
    case_id: str
    skipped: bool
    binarised: int = 0


@dataclass(frozen=True)
class ConversionSummary:
    """What a conversion did, for the CLI to print.

    Attributes:
        kind: the source kind (``atlas``, ``png-slices``, ``npy``, ``nnunet``).
        dataset_dir: the raw dataset folder written (or linked).
        training_cases: cases in imagesTr/labelsTr.
        test_cases: cases in imagesTs.
        converted: cases written by this run.
        skipped: cases already finished by an earlier run.
        binarised_masks: masks whose values or type changed on the way to uint8 {0, 1}.
        linked: True when the dataset folder is a symlink to the source.
        notes: lines saying what was done to the data beyond copying (resampling).
    """

    kind: str
    dataset_dir: Path
    training_cases: int
    test_cases: int
    converted: int
    skipped: int
    binarised_masks: int = 0
    linked: bool = False
    notes: tuple[str, ...] = ()

    def lines(self) -> list[str]:
        """Human-readable lines for the CLI."""
        action = "linked" if self.linked else "converted"
        return [
            f"{self.kind} -> {self.dataset_dir} ({action})",
            f"  training cases: {self.training_cases}, test cases: {self.test_cases}",
            f"  written now: {self.converted}, already finished: {self.skipped}",
            f"  masks binarised: {self.binarised_masks}",
            *(f"  {note}" for note in self.notes),
        ]


SAFE_CHARACTERS = re.compile(r"[^A-Za-z0-9._-]+")
TEST_FOLDER_NAMES = {"testing", "test", "imagests"}


def array_affine(spacing_mm: tuple[float, float, float]) -> np.ndarray:
    """The stated geometry of bare arrays (PNG stacks, npy): ITK's identity direction.

    Voxel axes X, Y, Z run to the patient's left, posterior and superior (LPS, as
    ``SimpleITK.GetArrayFromImage`` of an axial scan gives them), origin at 0; as a
    NIfTI (RAS) affine that is ``diag(-x, -y, z)``.
    """
    z, y, x = (float(v) for v in spacing_mm)
    return np.diag([-x, -y, z, 1.0])


def bids_case_id(entities: dict[str, str], multi_session: set[str]) -> str:
    """The case id of a BIDS source: the subject label, ``_ses-<label>`` appended for a
    subject with several sessions (``sub-r001s001_ses-1`` -> ``r001s001``)."""
    subject, session = entities["sub"], entities.get("ses")
    if subject in multi_session and session is not None:
        return safe_case_id(f"{subject}_ses-{session}")
    return safe_case_id(subject)


def safe_case_id(name: str) -> str:
    """A case id that is safe as a file name on every system (other characters -> ``-``)."""
    return SAFE_CHARACTERS.sub("-", name).strip("-.") or "case"


def is_test_path(path: Path, root: Path) -> bool:
    """True when a folder between ``root`` and ``path`` says the file is a test case."""
    parts = path.relative_to(root).parts[:-1]
    return any(part.lower() in TEST_FOLDER_NAMES for part in parts)


def duplicate_case_problems(tasks: Iterable[CaseTask], where: Path) -> list[str]:
    """One line per case id used twice in one split (e.g. two names that sanitise alike).

    A training and a test case may share an id: they live in different folders.
    """
    seen: dict[tuple[bool, str], int] = {}
    for task in tasks:
        key = (task.is_test, task.case_id)
        seen[key] = seen.get(key, 0) + 1
    return [f"{where}: case id '{c}' occurs {n} times" for (_, c), n in seen.items() if n > 1]


def raise_case_problems(
    tasks: Sequence[CaseTask], problems: list[str], src: Path, nothing: str | None
) -> None:
    """Raise every problem of a source at once: those found, case ids used twice, and
    ``nothing`` (what was looked for and not found) when there is no case to convert."""
    problems = [*problems, *duplicate_case_problems(tasks, src)]
    if nothing is not None and not problems:
        problems.append(f"{src}: {nothing}")
    if problems:
        raise InvalidInputError(problems)
