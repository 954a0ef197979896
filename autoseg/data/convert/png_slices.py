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
Masks become ``> 0 -> 1``; 16-bit PNGs keep their values; RGB(A) PNGs whose colour
channels are all equal are read as grey.

Geometry: PNGs carry none, so the spacing comes from the caller (default
:data:`DEFAULT_SPACING_MM`) and the orientation is a stated convention: columns run to
the patient's left, rows to posterior, slices (in increasing number) to superior, origin
at 0 — the NIfTI affine ``diag(-x, -y, z)`` (ITK's identity direction in LPS), so
viewers show each slice as the PNG looks.

A dataset in which some patients have masks must have them for every patient; a
dataset without any masks is converted as test cases only (imagesTs).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from autoseg.data.convert.cases import (
    CaseTask,
    ConversionPlan,
    array_affine,
    duplicate_case_problems,
    safe_case_id,
)
from autoseg.data.errors import InvalidInputError
from autoseg.data.records import ImageMeta, matrix_to_tuple

logger = logging.getLogger(__name__)

DEFAULT_SPACING_MM = (5.0, 0.45, 0.45)
IMAGE_FOLDERS = ("images", "image")
MASK_FOLDERS = ("masks", "mask", "labels", "label")
TRAIN_FOLDERS = ("training", "train")
TEST_FOLDERS = ("testing", "test")
NUMBER = re.compile(r"\d+")


def slice_sort_key(path: Path) -> tuple[int, ...]:
    """Every number in the file stem, in order (``p3_slice12`` -> ``(3, 12)``)."""
    return tuple(int(number) for number in NUMBER.findall(path.stem))


def sorted_slices(folder: Path) -> tuple[list[Path], list[str]]:
    """The PNG slices of a folder in numeric order, and problems with their names."""
    files = [p for p in folder.iterdir() if p.suffix.lower() == ".png" and p.name[0] != "."]
    problems = [f"{p}: no slice number in the name" for p in files if not slice_sort_key(p)]
    files = sorted(files, key=lambda p: (slice_sort_key(p), p.name))
    keys = [slice_sort_key(p) for p in files]
    problems += [
        f"{files[i]}: same slice number as {files[i - 1].name}"
        for i in range(1, len(files))
        if keys[i] and keys[i] == keys[i - 1]
    ]
    return files, problems


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
    """``(width, height)`` from the PNG header, or a problem line."""
    try:
        with Image.open(path) as image:
            return image.size
    except OSError as error:
        return f"{path}: unreadable PNG ({error})"


def _size_problems(files: list[Path]) -> list[str]:
    """Slices whose size differs from the first slice's (checked from headers only)."""
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
    if mask_dir is None:
        if masks_expected:
            problems.append(f"{image_dir}: image folder of '{name}' without its mask folder")
        return (images, None), problems + _size_problems(images)
    masks, mask_problems = sorted_slices(mask_dir)
    problems += mask_problems
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
    problems += duplicate_case_problems(tasks, src)
    if not tasks and not problems:
        problems.append(f"{src}: no patient folders with images/ found")
    if problems:
        raise InvalidInputError(problems)
    if not masks_expected:
        logger.warning("%s: no masks anywhere; all %d patients become test cases", src, len(tasks))
    note = {"kind": "png-slices", "path": str(src.resolve()), "spacing_mm": list(spacing)}
    return ConversionPlan(tuple(tasks), {"0": "CT"}, note)
