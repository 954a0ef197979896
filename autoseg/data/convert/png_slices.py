"""Non-contrast CT as folders of numbered PNG slices into the raw layout.

Two arrangements are recognised:

- per patient: ``src/<patient>/images/*.png`` and ``src/<patient>/masks/*.png``;
- per kind: ``src/images/<patient>/*.png`` and ``src/masks/<patient>/*.png``
  (chosen when ``src`` has an ``images`` folder).

Training patients may also sit in ``src/Training``; patients in ``src/Testing`` become
test cases (their masks, if any, are ignored). ``image``/``images`` and
``mask``/``masks``/``label``/``labels`` are accepted, in any case. Slices are stacked
along Z in numeric order of the numbers in their names (``2`` before ``10``;
``slice_012.png`` is slice 12); masks pair with images slice by slice in that order.
The numbering must be unbroken (in its own step) and a slice folder must hold PNGs only:
a missing or skipped slice would shift the z geometry of every slice above it.
Masks become ``> 0 -> 1``; 16-bit PNGs keep their values; RGB(A) PNGs whose colour
channels are all equal are read as grey, others are refused before anything is written.

Geometry: PNGs carry none, so the spacing comes from the caller (default
:data:`DEFAULT_SPACING_MM`) and the orientation is a stated convention: columns run to
the patient's left, rows to posterior, slices (in increasing number) to superior, origin
at 0 — the NIfTI affine ``diag(-x, -y, z)`` (ITK's identity direction in LPS), so
viewers show each slice as the PNG looks.

A dataset in which some patients have masks must have them for every patient; a
dataset without any masks is converted as test cases only (imagesTs).
"""

from __future__ import annotations

import itertools
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from autoseg.core.errors import InvalidInputError
from autoseg.data.convert.cases import (
    CaseTask,
    ConversionPlan,
    array_affine,
    raise_case_problems,
    safe_case_id,
)
from autoseg.data.records import ImageMeta, matrix_to_tuple

logger = logging.getLogger(__name__)

DEFAULT_SPACING_MM = (5.0, 0.45, 0.45)
IMAGE_FOLDERS = ("images", "image")
MASK_FOLDERS = ("masks", "mask", "labels", "label")
TRAIN_FOLDERS = ("training", "train")
TEST_FOLDERS = ("testing", "test")
NUMBER = re.compile(r"\d+")
# Files that image viewers leave in folders; they are not slices and not a user's mistake.
IGNORED_FILES = ("thumbs.db", "desktop.ini")
# Modes whose pixels are grey by construction; any other mode is read to compare channels.
GREY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")


def slice_sort_key(path: Path) -> tuple[int, ...]:
    """Every number in the file stem, in order (``p3_slice12`` -> ``(3, 12)``)."""
    return tuple(int(number) for number in NUMBER.findall(path.stem))


def sorted_slices(folder: Path) -> tuple[list[Path], list[str]]:
    """The PNG slices of a folder in numeric order, and problems with their names.

    Anything else in the folder is a problem, not skipped: a ``.jpg`` slice left out would
    give the volume one slice less and the wrong z geometry, and verification could not
    tell afterwards.
    """
    entries = [
        p for p in folder.iterdir() if p.name[0] != "." and p.name.lower() not in IGNORED_FILES
    ]
    files = [p for p in entries if p.suffix.lower() == ".png" and p.is_file()]
    problems = [
        f"{p}: not a PNG slice (a slice folder holds .png files only)"
        for p in sorted(set(entries) - set(files))
    ]
    problems += [f"{p}: no slice number in the name" for p in files if not slice_sort_key(p)]
    files = sorted(files, key=lambda p: (slice_sort_key(p), p.name))
    keys = [slice_sort_key(p) for p in files]
    problems += [
        f"{files[i]}: same slice number as {files[i - 1].name}"
        for i in range(1, len(files))
        if keys[i] and keys[i] == keys[i - 1]
    ]
    return files, problems


def slice_numbers(files: list[Path]) -> list[int]:
    """The slice number of each file: the number in the names that changes from file to file
    (``p3_slice12.png``: 12), the last one when names differ in how many they hold."""
    keys = [key for key in map(slice_sort_key, files) if key]
    if not keys:
        return []
    index = -1
    if len({len(key) for key in keys}) == 1:
        varying = [i for i in range(len(keys[0])) if len({key[i] for key in keys}) > 1]
        index = varying[-1] if varying else -1
    return [key[index] for key in keys]


def gap_problem(folder: Path, patient: str, files: list[Path]) -> str | None:
    """A line naming the missing slice numbers, or None when the numbering is unbroken.

    Slices count in ones unless 3+ of them share one larger step (``0, 5, 10`` is whole);
    a missing slice would shift every slice above it by one thickness.
    """
    numbers = sorted(set(slice_numbers(files)))
    if len(numbers) < 2:
        return None
    steps = {b - a for a, b in itertools.pairwise(numbers)}
    # A constant step over 3+ slices (0, 5, 10) is a numbering of its own; else steps of 1.
    step = steps.pop() if len(steps) == 1 and len(numbers) > 2 else 1
    present = set(numbers)
    missing = [n for n in range(numbers[0], numbers[-1] + 1, step) if n not in present]
    if not missing:
        return None
    return (
        f"{folder}: slices of '{patient}' are not numbered without gaps: "
        f"{_number_ranges(missing, step)} missing between {numbers[0]} and {numbers[-1]}"
    )


def _number_ranges(numbers: list[int], step: int) -> str:
    """``[4, 5, 6, 9]`` -> ``"4-6, 9"`` (at most ten runs, then a count)."""
    runs: list[list[int]] = []
    for number in numbers:
        if runs and number - runs[-1][-1] == step:
            runs[-1].append(number)
        else:
            runs.append([number])
    text = [f"{r[0]}-{r[-1]}" if len(r) > 1 else str(r[0]) for r in runs[:10]]
    more = [f"{len(runs) - 10} more runs"] if len(runs) > 10 else []
    return ", ".join(text + more)


def read_grey(path: Path) -> np.ndarray:
    """One PNG as a 2D array ``(Y, X)``, keeping 8/16-bit values; equal-channel colour -> grey.

    Raises:
        InvalidInputError: colour PNGs whose channels differ, unreadable files.
    """
    try:
        with Image.open(path) as image:
            if image.mode == "P":
                image = image.convert("RGBA")
            if image.mode == "1":
                image = image.convert("L")
            array = np.asarray(image)
    except OSError as error:
        raise InvalidInputError(f"{path}: unreadable PNG ({error})") from error
    if array.ndim == 2:
        return array
    colour = array[..., : 1 if array.shape[-1] <= 2 else 3]  # drop alpha
    if not np.all(colour == colour[..., :1]):
        raise InvalidInputError(f"{path}: colour PNG with differing channels (expected grey)")
    return np.ascontiguousarray(colour[..., 0])


@dataclass(frozen=True)
class PngStack:
    """A folder of PNG slices stacked into one volume ``(Z, Y, X)``."""

    files: tuple[Path, ...]
    spacing_mm: tuple[float, float, float]

    def read(self) -> tuple[np.ndarray, ImageMeta]:
        """Stack the slices in order and attach the stated geometry."""
        slices = [read_grey(path) for path in self.files]
        shapes = {s.shape for s in slices}
        if len(shapes) > 1:
            raise InvalidInputError(f"{self.files[0].parent}: slices differ in size {shapes}")
        volume = np.stack(slices)
        meta = ImageMeta(
            shape=tuple(int(v) for v in volume.shape),
            spacing_mm=tuple(float(v) for v in self.spacing_mm),
            affine=matrix_to_tuple(array_affine(self.spacing_mm)),
            qform_code=1,
            sform_code=1,
            source_format="png",
        )
        return volume, meta


def _named_child(folder: Path, names: tuple[str, ...]) -> Path | None:
    """The first child folder whose lower-cased name is one of ``names``."""
    children = {p.name.lower(): p for p in folder.iterdir() if p.is_dir()}
    return next((children[name] for name in names if name in children), None)


def _subfolders(folder: Path) -> dict[str, Path]:
    return {
        p.name: p
        for p in sorted(folder.iterdir())
        if p.is_dir() and not p.name.startswith((".", "__"))
    }


def split_roots(src: Path) -> list[tuple[Path, bool]]:
    """``(folder, is_test)`` of the training patients and, if present, the test patients.

    Training patients are in ``src`` (or ``src/Training``); test patients in ``src/Testing``.
    """
    train = _named_child(src, TRAIN_FOLDERS) or src
    test = _named_child(src, TEST_FOLDERS)
    return [(train, False)] + ([(test, True)] if test is not None else [])


def find_patients(src: Path) -> tuple[dict[str, tuple[Path | None, Path | None]], list[str]]:
    """``patient -> (image folder, mask folder)`` for either arrangement, plus problems."""
    images_root = _named_child(src, IMAGE_FOLDERS)
    if images_root is not None:
        masks_root = _named_child(src, MASK_FOLDERS)
        images = _subfolders(images_root)
        masks = _subfolders(masks_root) if masks_root is not None else {}
        return {p: (images.get(p), masks.get(p)) for p in sorted(images.keys() | masks.keys())}, []
    patients, problems = {}, []
    for name, folder in _subfolders(src).items():
        if name.lower() in TEST_FOLDERS:
            continue
        pair = (_named_child(folder, IMAGE_FOLDERS), _named_child(folder, MASK_FOLDERS))
        if pair == (None, None):
            problems.append(f"{folder}: neither an images/ nor a masks/ folder")
        patients[name] = pair
    return patients, problems


def _png_size(path: Path) -> tuple[int, int] | str:
    """``(width, height)`` from the PNG header, or a problem line.

    A colour-mode slice is decoded here to compare its channels, so a colour mask is
    refused in the check, before any case is written (not half-way through writing).
    """
    try:
        with Image.open(path) as image:
            size, mode = image.size, image.mode
    except OSError as error:
        return f"{path}: unreadable PNG ({error})"
    if mode not in GREY_MODES:
        try:
            read_grey(path)
        except InvalidInputError as error:
            return error.problems[0]
    return size


def _size_problems(files: list[Path]) -> list[str]:
    """Unreadable or colour slices, and slices whose size differs from the first slice's."""
    sizes = [_png_size(path) for path in files]
    problems = [size for size in sizes if isinstance(size, str)]
    valid = [(p, s) for p, s in zip(files, sizes, strict=True) if not isinstance(s, str)]
    if not valid:
        return problems
    first_path, first = valid[0]
    return problems + [
        f"{path}: slice size {size[0]}x{size[1]} differs from {first_path.name} "
        f"({first[0]}x{first[1]})"
        for path, size in valid[1:]
        if size != first
    ]


def _patient_slices(
    name: str, image_dir: Path | None, mask_dir: Path | None, masks_expected: bool
) -> tuple[tuple[list[Path], list[Path] | None], list[str]]:
    """The image and mask slices of one patient, with every problem found."""
    if image_dir is None:
        return ([], None), [f"{mask_dir}: mask folder of '{name}' without its image folder"]
    images, problems = sorted_slices(image_dir)
    if not images:
        problems.append(f"{image_dir}: no PNG slices")
    problems += [p for p in [gap_problem(image_dir, name, images)] if p]
    if mask_dir is None:
        if masks_expected:
            problems.append(f"{image_dir}: image folder of '{name}' without its mask folder")
        return (images, None), problems + _size_problems(images)
    masks, mask_problems = sorted_slices(mask_dir)
    problems += mask_problems + [p for p in [gap_problem(mask_dir, name, masks)] if p]
    if len(masks) != len(images):
        problems.append(f"{mask_dir}: {len(masks)} mask slices but {len(images)} image slices")
    return (images, masks), problems + _size_problems(images + masks)


def _patient_task(
    name: str,
    folders: tuple[Path | None, Path | None],
    masks_expected: bool,
    spacing: tuple[float, float, float],
) -> tuple[CaseTask, list[str]]:
    """The task of one patient and every problem found in its folders."""
    (images, masks), problems = _patient_slices(name, *folders, masks_expected)
    mask_source = PngStack(tuple(masks), spacing) if masks is not None else None
    return CaseTask(safe_case_id(name), (PngStack(tuple(images), spacing),), mask_source), problems


def plan(src: Path, spacing_mm: tuple[float, float, float] | None = None) -> ConversionPlan:
    """Find every patient under ``src`` and check its slices; raise with all problems.

    Args:
        src: the dataset folder (either arrangement, see the module docstring).
        spacing_mm: voxel size ``(z, y, x)``; default :data:`DEFAULT_SPACING_MM`.
    """
    src = Path(src)
    if not src.is_dir():
        raise InvalidInputError(f"{src}: not a folder")
    spacing = tuple(float(v) for v in (spacing_mm or DEFAULT_SPACING_MM))
    tasks, problems, masks_expected = [], [], False
    for root, is_test in split_roots(src):
        patients, found = find_patients(root)
        problems += found
        if is_test:  # test patients have no labels: masks there are ignored
            patients = {name: (images, None) for name, (images, _) in patients.items()}
        else:
            masks_expected = any(mask is not None for _, mask in patients.values())
        for name, folders in patients.items():
            task, found = _patient_task(name, folders, masks_expected and not is_test, spacing)
            tasks.append(task)
            problems += found
    nothing = None if tasks else "no patient folders with images/ found"
    raise_case_problems(tasks, problems, src, nothing)
    if not masks_expected:
        logger.warning("%s: no masks anywhere; all %d patients become test cases", src, len(tasks))
    note = {"kind": "png-slices", "path": str(src.resolve()), "spacing_mm": list(spacing)}
    return ConversionPlan(tuple(tasks), {"0": "CT"}, note)
