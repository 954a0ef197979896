"""Image/mask volumes as ``.npy`` (and ``.nii.gz``) files, as DWI projects keep them.

Recognised names (searched recursively under ``src``; ``.npy``, ``.nii.gz``, ``.nii``):

- suffix pairs: ``<case>_<channel>.npy`` with ``<channel>`` one of :data:`CHANNELS`
  (``dwi``, ``adc``, ``flair``, ``t1``/``t1w``, ``t2``/``t2w``, ``ct``, ``image``/``img``)
  and ``<case>_<msk|mask|label|seg|lesion>.npy``;
- folder pairs: ``images/<case>.npy`` and ``masks/<case>.npy`` (``image``, ``mask``,
  ``labels``, ``label`` too); a channel or mask suffix there is stripped as above, and
  a file without one is the channel ``image``.

Any other array file is an error (nothing is silently left out). Arrays are ``(Z, Y, X)``
(leading axes of length 1 are dropped). Cases under a ``Testing``/``test`` folder are
test cases; a dataset without any masks is converted as test cases only.

Spacing of an array, first found: the sidecar ``<stem>.json`` (e.g. ``case_dwi.json``),
then ``<case>.json`` beside it (``{"spacing_mm": [z, y, x]}``), then the caller's
``spacing_mm``. Bare arrays get the orientation of
:func:`~autoseg.data.convert.cases.array_affine`. A case with a NIfTI file takes that
file's geometry (its first NIfTI image, else its NIfTI mask) for all its arrays, whose
shape must match; NIfTI files themselves keep their headers exactly.

Several channels become channels 0, 1, ... in the order of :data:`CHANNELS` (DWI, ADC,
...); every case must have every channel.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from autoseg.core.errors import InvalidInputError
from autoseg.data.convert.cases import (
    CaseTask,
    ConversionPlan,
    NiftiSource,
    array_affine,
    is_test_path,
    raise_case_problems,
    safe_case_id,
)
from autoseg.data.io import NIFTI_ENDINGS, file_ending, read_meta, strip_ending
from autoseg.data.records import ImageMeta, matrix_to_tuple

logger = logging.getLogger(__name__)

CHANNELS = {
    "dwi": "DWI",
    "adc": "ADC",
    "flair": "FLAIR",
    "t1": "T1w",
    "t1w": "T1w",
    "t2": "T2w",
    "t2w": "T2w",
    "ct": "CT",
    "image": "image",
    "img": "image",
}
CHANNEL_ORDER = ("DWI", "ADC", "FLAIR", "T1w", "T2w", "CT", "image")
MASK_SUFFIXES = ("msk", "mask", "label", "seg", "lesion")
IMAGE_FOLDERS = ("images", "image", "imgs")
MASK_FOLDERS = ("masks", "mask", "labels", "label")
ARRAY_ENDINGS = (".npy", *NIFTI_ENDINGS)
MASK = "mask"


@dataclass(frozen=True)
class ArrayFile:
    """One recognised file: its case, role (a channel name or ``mask``) and split."""

    path: Path
    case: str
    role: str
    is_test: bool


def _folder_role(path: Path, root: Path) -> str | None:
    """``image`` or ``mask`` when an enclosing folder says so."""
    for part in reversed(path.relative_to(root).parts[:-1]):
        if part.lower() in IMAGE_FOLDERS:
            return "image"
        if part.lower() in MASK_FOLDERS:
            return MASK
    return None


def parse_name(path: Path, root: Path) -> ArrayFile | str:
    """Case and role of an array file, or a problem line naming it."""
    stem = strip_ending(path)
    case, _, suffix = stem.rpartition("_")
    suffix = suffix.lower()
    by_suffix = MASK if suffix in MASK_SUFFIXES else CHANNELS.get(suffix)
    folder = _folder_role(path, root)
    is_test = is_test_path(path, root)
    if folder == MASK:
        return ArrayFile(path, case if by_suffix == MASK and case else stem, MASK, is_test)
    if by_suffix is not None and case and (folder is None or by_suffix != MASK):
        return ArrayFile(path, case, by_suffix, is_test)
    if folder == "image":
        return ArrayFile(path, stem, "image", is_test)
    expected = "'<case>_<dwi|adc|image|...>' / '<case>_<msk|mask>' or images/ + masks/"
    return f"{path}: unrecognised name (expected {expected})"


def find_files(root: Path) -> tuple[list[ArrayFile], list[str]]:
    """Every array file under ``root`` with its role, and the names not understood."""
    files, problems = [], []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).parts
        if not path.is_file() or any(p.startswith(".") or p == "__MACOSX" for p in relative):
            continue
        if file_ending(path) in ARRAY_ENDINGS:
            parsed = parse_name(path, root)
            (problems if isinstance(parsed, str) else files).append(parsed)
    return files, problems


def _sidecar_spacing(path: Path, case: str) -> tuple[float, float, float] | str | None:
    """Spacing from ``<stem>.json`` or ``<case>.json`` beside ``path``; a problem line if bad."""
    for sidecar in (path.with_name(f"{strip_ending(path)}.json"), path.with_name(f"{case}.json")):
        if not sidecar.is_file():
            continue
        try:
            spacing = json.loads(sidecar.read_text()).get("spacing_mm")
        except (json.JSONDecodeError, AttributeError) as error:
            return f"{sidecar}: not a JSON object ({error})"
        valid = isinstance(spacing, list) and len(spacing) == 3
        if not valid or not all(isinstance(v, int | float) and v > 0 for v in spacing):
            return f"{sidecar}: 'spacing_mm' must be three positive numbers [z, y, x]"
        return tuple(float(v) for v in spacing)
    return None


def _array_shape(path: Path) -> tuple[int, ...] | str:
    """``(Z, Y, X)`` from the file header (no voxel data is read), or a problem line."""
    try:
        if file_ending(path) == ".npy":
            shape = np.load(path, mmap_mode="r", allow_pickle=False).shape
        else:
            shape = tuple(nib.load(str(path)).shape)[::-1]
    except Exception as error:  # numpy and nibabel raise many types for broken files
        return f"{path}: unreadable ({error})"
    while len(shape) > 3 and shape[0] == 1:
        shape = shape[1:]
    return shape if len(shape) == 3 else f"{path}: expected a (Z, Y, X) volume, got {shape}"


@dataclass(frozen=True)
class NpyVolume:
    """A ``.npy`` volume ``(Z, Y, X)`` with a spacing, or with a NIfTI file's geometry."""

    path: Path
    spacing_mm: tuple[float, float, float] | None = None
    reference: Path | None = None

    def read(self) -> tuple[np.ndarray, ImageMeta]:
        """Load the array and attach its geometry."""
        try:
            array = np.load(self.path, allow_pickle=False)
        except Exception as error:
            raise InvalidInputError(f"{self.path}: unreadable .npy ({error})") from error
        array = array.reshape(array.shape[-3:]) if array.ndim > 3 else array
        if array.dtype == np.bool_:
            array = array.astype(np.uint8)
        if self.reference is not None:
            return array, read_meta(self.reference)
        meta = ImageMeta(
            shape=tuple(int(v) for v in array.shape),
            spacing_mm=self.spacing_mm,
            affine=matrix_to_tuple(array_affine(self.spacing_mm)),
            source_format="npy",
        )
        return array, meta


def _group(files: list[ArrayFile]) -> tuple[dict[tuple[bool, str], dict[str, Path]], list[str]]:
    """``(test?, case) -> {role: path}``; a role given twice is a problem."""
    cases: dict[tuple[bool, str], dict[str, Path]] = {}
    problems = []
    for item in files:
        roles = cases.setdefault((item.is_test, item.case), {})
        if item.role in roles:
            problems.append(f"{item.path}: second '{item.role}' for case '{item.case}'")
        else:
            roles[item.role] = item.path
    return cases, problems


def _source(
    path: Path, case: str, reference: Path | None, flag: tuple[float, float, float] | None
) -> NiftiSource | NpyVolume | str:
    """The source of one file of a case, or a problem line."""
    if file_ending(path) in NIFTI_ENDINGS:
        return NiftiSource(path)
    if reference is not None:
        return NpyVolume(path, reference=reference)
    spacing = _sidecar_spacing(path, case)
    if isinstance(spacing, str):
        return spacing
    if spacing is None and flag is None:
        return f"{path}: no spacing (give --spacing Z Y X or a sidecar {case}.json)"
    return NpyVolume(path, spacing_mm=spacing or flag)


def _reference(roles: dict[str, Path], channels: list[str]) -> Path | None:
    """The NIfTI file whose geometry a mixed case takes: first image, then the mask."""
    for role in [*channels, MASK]:
        path = roles.get(role)
        if path is not None and file_ending(path) in NIFTI_ENDINGS:
            return path
    return None


def _shape_problems(roles: dict[str, Path]) -> list[str]:
    shapes = {role: _array_shape(path) for role, path in roles.items()}
    problems = [shape for shape in shapes.values() if isinstance(shape, str)]
    valid = {role: s for role, s in shapes.items() if not isinstance(s, str)}
    first = next(iter(valid.items()), None)
    return problems + [
        f"{roles[role]}: shape {list(shape)} differs from {roles[first[0]].name} {list(first[1])}"
        for role, shape in valid.items()
        if first is not None and shape != first[1]
    ]


def _case_task(
    case: str,
    roles: dict[str, Path],
    channels: list[str],
    masks_expected: bool,
    test: bool,
    flag: tuple[float, float, float] | None,
) -> tuple[CaseTask | None, list[str]]:
    """The task of one case with every problem found in it."""
    where = next(iter(roles.values()))
    missing = [c for c in channels if c not in roles]
    problems = [f"{where}: case '{case}' lacks channel {c} (other cases have it)" for c in missing]
    if not any(c in roles for c in channels):
        return None, [f"{roles[MASK]}: mask of case '{case}' without any image"]
    if not test and masks_expected and MASK not in roles:
        problems.append(f"{where}: image of case '{case}' without its mask")
    if problems:
        return None, problems
    wanted = {role: path for role, path in roles.items() if role != MASK or not test}
    problems = _shape_problems(wanted)
    reference = _reference(wanted, channels)
    sources = {role: _source(path, case, reference, flag) for role, path in wanted.items()}
    problems += [s for s in sources.values() if isinstance(s, str)]
    images = tuple(sources[c] for c in channels)
    return CaseTask(safe_case_id(case), images, sources.get(MASK)), problems


def _channels(cases: dict[tuple[bool, str], dict[str, Path]]) -> list[str]:
    found = {role for roles in cases.values() for role in roles if role != MASK}
    return sorted(found, key=lambda c: (CHANNEL_ORDER.index(c), c))


def plan(src: Path, spacing_mm: tuple[float, float, float] | None = None) -> ConversionPlan:
    """Find, pair and check every case under ``src``; raise with all problems at once.

    Args:
        src: the folder of arrays (see the module docstring for the names).
        spacing_mm: ``(z, y, x)`` for arrays without a sidecar.
    """
    src = Path(src)
    if not src.is_dir():
        raise InvalidInputError(f"{src}: not a folder")
    files, problems = find_files(src)
    cases, found = _group(files)
    problems += found
    channels = _channels(cases)
    masks_expected = any(MASK in roles for (test, _), roles in cases.items() if not test)
    tasks = []
    for (test, case), roles in sorted(cases.items()):
        task, found = _case_task(case, roles, channels, masks_expected, test, spacing_mm)
        problems += found
        tasks += [task] if task is not None else []
    raise_case_problems(tasks, problems, src, None if tasks else "no .npy / .nii.gz volumes found")
    if not masks_expected:
        logger.warning("%s: no masks anywhere; all %d cases become test cases", src, len(tasks))
    note = {"kind": "npy", "path": str(src.resolve())}
    if spacing_mm is not None:
        note["spacing_mm"] = [float(v) for v in spacing_mm]
    names = {str(i): name for i, name in enumerate(channels)}
    return ConversionPlan(tuple(tasks), names, note)
