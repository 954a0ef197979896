"""Tiny source trees for the converter tests (ATLAS, PNG slices, npy), written by hand,
and ISLES'22 trees linking the real cases of ../shared/realdata."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
from PIL import Image

from tests.conftest import oblique_affine

ATLAS_SPACE = "space-MNI152NLin2009aSym"
ATLAS_MASK = "label-L_desc-T1lesion_mask"
SHAPE_XYZ = (7, 9, 5)


def nifti(
    path: Path,
    data: np.ndarray,
    affine: np.ndarray | None = None,
    sform_code: int = 1,
    qform: np.ndarray | None = None,
    qform_code: int = 1,
) -> Path:
    """Save ``data`` (NIfTI order x, y, z) with chosen sform/qform matrices and codes."""
    affine = np.diag([1.0, 1.0, 1.0, 1.0]) if affine is None else affine
    image = nib.Nifti1Image(data, None)
    image.set_sform(affine, code=sform_code)
    image.set_qform(affine if qform is None else qform, code=qform_code)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(image, str(path))
    return path


def random_image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(100, 20, SHAPE_XYZ).astype(np.float32)


def lesion(seed: int, scale: float = 1, dtype: type = np.uint8) -> np.ndarray:
    mask = np.zeros(SHAPE_XYZ, dtype)
    mask[1 + seed % 3 : 4, 2:5, 1:3] = scale
    return mask


def atlas_name(subject: str, kind: str) -> str:
    suffix = "T1w" if kind == "image" else ATLAS_MASK
    return f"sub-{subject}_ses-1_{ATLAS_SPACE}_{suffix}.nii.gz"


def atlas_bids(root: Path, subjects: list[str], test_subjects: tuple[str, ...] = ()) -> Path:
    """``root/Training/R001/sub-X/ses-1/anat/...`` (+ ``Testing``), uint8 0/1 masks."""
    for split, names in (("Training", subjects), ("Testing", test_subjects)):
        for index, subject in enumerate(names):
            anat = root / split / f"R{subject[1:4]}" / f"sub-{subject}" / "ses-1" / "anat"
            nifti(anat / atlas_name(subject, "image"), random_image(index))
            if split == "Training":
                nifti(anat / atlas_name(subject, "mask"), lesion(index))
    return root


def atlas_flat(root: Path, subjects: list[str], test_subjects: tuple[str, ...] = ()) -> Path:
    """``root/Training/Images`` + ``root/Training/Masks`` (+ ``Testing/Images``)."""
    for index, subject in enumerate(subjects):
        nifti(root / "Training" / "Images" / atlas_name(subject, "image"), random_image(index))
        nifti(root / "Training" / "Masks" / atlas_name(subject, "mask"), lesion(index))
    for index, subject in enumerate(test_subjects):
        nifti(root / "Testing" / "Images" / atlas_name(subject, "image"), random_image(index))
    return root


def oblique_geometry() -> dict:
    """Oblique sform (MNI code 4) and a different qform (scanner code 1)."""
    qform = oblique_affine((2.0, 1.0, 1.0))
    qform[:3, 3] += (3.0, -2.0, 1.5)
    return {
        "affine": oblique_affine((3.0, 1.5, 1.25)),
        "sform_code": 4,
        "qform": qform,
        "qform_code": 1,
    }


def png(path: Path, pixels: np.ndarray) -> Path:
    """Save a PNG: uint8 (Y, X) grey, uint16 (Y, X) 16-bit grey, uint8 (Y, X, 3|4) colour."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(pixels)).save(path)
    return path


def png_patient(
    image_dir: Path, mask_dir: Path | None, numbers: list[int], shape: tuple[int, int] = (6, 8)
) -> None:
    """Slices whose every pixel holds its slice number (mask: 255 where number is odd)."""
    for number in numbers:
        png(image_dir / f"slice_{number:03d}.png", np.full(shape, number, np.uint8))
        if mask_dir is not None:
            value = 255 if number % 2 else 0
            png(mask_dir / f"{number}.png", np.full(shape, value, np.uint8))


# --- ISLES'22 (real files, linked) -----------------------------------------------------

S9, S1 = "sub-strokecase0009_ses-0001", "sub-strokecase0001_ses-0001"


def sample_file(realdata: Path, kind: str) -> Path:
    """A file of the labelled sample (``dwi``, ``adc``, ``flair``, ``msk``)."""
    if kind == "msk":
        return realdata / f"isles22_sample/derivatives/sub-strokecase0009/ses-0001/{S9}_msk.nii.gz"
    return realdata / f"isles22_sample/rawdata/sub-strokecase0009/ses-0001/{S9}_{kind}.nii.gz"


def release_tree(
    root: Path, realdata: Path, flair: Path | None = None, unlabelled: bool = True
) -> Path:
    """The release layout (``dwi/`` and ``anat/`` folders, ``_FLAIR``) of both real cases:
    strokecase0009 with its mask and FLAIR, strokecase0001 (DWI + ADC, no mask)."""
    links = {
        f"rawdata/sub-strokecase0009/ses-0001/dwi/{S9}_dwi.nii.gz": sample_file(realdata, "dwi"),
        f"rawdata/sub-strokecase0009/ses-0001/dwi/{S9}_adc.nii.gz": sample_file(realdata, "adc"),
        f"rawdata/sub-strokecase0009/ses-0001/anat/{S9}_FLAIR.nii.gz": flair
        or sample_file(realdata, "flair"),
        f"derivatives/sub-strokecase0009/ses-0001/{S9}_msk.nii.gz": sample_file(realdata, "msk"),
    }
    for kind in ("dwi", "adc") if unlabelled else ():
        links[f"rawdata/sub-strokecase0001/ses-0001/dwi/{S1}_{kind}.nii.gz"] = (
            realdata / f"isles22_case0001_unlabeled/{S1}_{kind}.nii.gz"
        )
    for name, target in links.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).symlink_to(target)
    return root
