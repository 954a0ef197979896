"""File layouts of the synthetic datasets: ATLAS v2.0 BIDS/flat, CT PNG folders, DWI npy/NIfTI.

Every file is written atomically, so an interrupted run never leaves a half-written case.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from autoseg.core.atomic import atomic_path, write_json
from autoseg.data.io import write_volume
from autoseg.data.records import ImageMeta, matrix_to_tuple
from autoseg.synthetic.anatomy import AnatomyPlan
from autoseg.synthetic.fields import Grid

ATLAS_SPACE = "space-MNI152NLin2009aSym"
ATLAS_MASK_SUFFIX = "label-L_desc-T1lesion_mask"
NIFTI_CODE_MNI = 4
NIFTI_CODE_SCANNER = 1
SUBJECTS_PER_SITE = 4  # a new site (scanner look) every four subjects
FIRST_TEST_SITE = 501


@dataclass(frozen=True)
class SynthOptions:
    """Settings shared by every case of one ``synthesize`` call (see its docstring)."""

    size: str = "small"
    spacing_mm: tuple[float, float, float] | None = None
    layout: str | None = None
    mask_dtype: str = "uint8"
    mask_scale: int = 1
    empty_fraction: float = 0.05
    skull_stripped: bool = False
    png_bits: int = 8
    background: str = "rician"


@dataclass(frozen=True)
class SyntheticCase:
    """One rendered case: ``image`` and ``mask`` are ``(Z, Y, X)``; mask is uint8 {0, 1}.

    ``tissue`` holds the uint8 tissue labels (see :mod:`autoseg.synthetic.anatomy`) in
    the same frame, for checks and figures; it is never written. ``extra`` holds further
    channels by file suffix (DWI's ``adc``).
    """

    image: np.ndarray
    mask: np.ndarray
    grid: Grid
    plan: AnatomyPlan
    tissue: np.ndarray
    extra: dict[str, np.ndarray] = field(default_factory=dict)


def atlas_site(index: int, split: int = 0) -> int:
    """Site number of a case: four subjects per site; test sites start at R501."""
    first = FIRST_TEST_SITE if split else 1
    return index // SUBJECTS_PER_SITE + first


def atlas_subject(index: int, split: int = 0) -> str:
    """BIDS subject label ``sub-rSSSsNNN`` of a case (site SSS, subject NNN within it)."""
    return f"sub-r{atlas_site(index, split):03d}s{index % SUBJECTS_PER_SITE + 1:03d}"


def _atlas_folder(dest: Path, index: int, split: int, layout: str, images: bool) -> Path:
    root = Path(dest) / ("Testing" if split else "Training")
    if layout == "flat":
        return root / ("Images" if images else "Masks")
    subject = atlas_subject(index, split)
    return root / f"R{atlas_site(index, split):03d}" / subject / "ses-1" / "anat"


def atlas_image_path(dest: Path, index: int, split: int = 0, layout: str = "bids") -> Path:
    """Where the T1w image of a case goes in the ATLAS v2.0 layout."""
    name = f"{atlas_subject(index, split)}_ses-1_{ATLAS_SPACE}_T1w.nii.gz"
    return _atlas_folder(dest, index, split, layout, images=True) / name


def atlas_mask_path(dest: Path, index: int, split: int = 0, layout: str = "bids") -> Path:
    """Where the lesion mask of a case goes in the ATLAS v2.0 layout."""
    name = f"{atlas_subject(index, split)}_ses-1_{ATLAS_SPACE}_{ATLAS_MASK_SUFFIX}.nii.gz"
    return _atlas_folder(dest, index, split, layout, images=False) / name


def grid_meta(grid: Grid, code: int) -> ImageMeta:
    """NIfTI geometry of a synthetic grid with the given qform/sform code."""
    return ImageMeta(
        shape=grid.shape,
        spacing_mm=grid.spacing_mm,
        affine=matrix_to_tuple(grid.affine()),
        qform_code=code,
        sform_code=code,
    )


def _stored_mask(case: SyntheticCase, options: SynthOptions) -> np.ndarray:
    return case.mask.astype(np.dtype(options.mask_dtype)) * np.dtype(options.mask_dtype).type(
        options.mask_scale
    )


def write_atlas_case(
    dest: Path, case: SyntheticCase, index: int, split: int, options: SynthOptions
) -> list[Path]:
    """Write an ATLAS case (image, plus the mask for training cases) with MNI codes (4)."""
    meta = grid_meta(case.grid, NIFTI_CODE_MNI)
    image_path = atlas_image_path(dest, index, split, options.layout)
    write_volume(image_path, case.image, meta, np.float32)
    if split:
        return [image_path]
    mask_path = atlas_mask_path(dest, index, split, options.layout)
    write_volume(mask_path, _stored_mask(case, options), meta)
    return [image_path, mask_path]


def _write_png(path: Path, pixels: np.ndarray) -> None:
    with atomic_path(path) as temp:
        Image.fromarray(np.ascontiguousarray(pixels)).save(temp, format="PNG")


def ct_patient_name(index: int) -> str:
    """Folder name of CT patient ``index`` (0-based): ``patient_001`` ..."""
    return f"patient_{index + 1:03d}"


def write_ct_case(
    dest: Path, case: SyntheticCase, index: int, split: int, options: SynthOptions
) -> list[Path]:
    """Write slices ``1.png..N.png`` (inferior to superior) to ``images/`` and ``masks/``.

    Slices are shown radiologically: anterior at the top, the patient's right on the image
    left. Masks are 0/255. Test patients (``split=1``) go to ``dest/Testing`` without masks.
    """
    root = Path(dest) / ("Testing" if split else "") / ct_patient_name(index)
    written = []
    for number, (pixels, mask) in enumerate(zip(case.image, case.mask, strict=True), start=1):
        image_path = root / "images" / f"{number}.png"
        _write_png(image_path, pixels[::-1, ::-1])
        written.append(image_path)
        if not split:
            mask_path = root / "masks" / f"{number}.png"
            _write_png(mask_path, (mask[::-1, ::-1] > 0).astype(np.uint8) * 255)
            written.append(mask_path)
    return written


def dwi_case_name(index: int) -> str:
    """Case id of DWI case ``index`` (0-based): ``case_0001`` ..."""
    return f"case_{index + 1:04d}"


def dwi_as_nifti(index: int, layout: str) -> bool:
    """Whether a DWI case is stored as NIfTI: all (``nifti``), every third (``mixed``), none."""
    return layout == "nifti" or (layout == "mixed" and index % 3 == 2)


def _write_npy(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as temp, open(temp, "wb") as handle:
        np.save(handle, np.ascontiguousarray(array))


def write_dwi_case(
    dest: Path, case: SyntheticCase, index: int, split: int, options: SynthOptions
) -> list[Path]:
    """Write ``<case>_dwi``, ``<case>_adc`` and ``<case>_msk`` (npy or NIfTI) and
    ``<case>.json`` spacing.

    The JSON sidecar ``{"spacing_mm": [z, y, x]}`` is written for every case, NIfTI too.
    Test cases (``split=1``) go to ``dest/Testing`` without masks.
    """
    root = Path(dest) / ("Testing" if split else "")
    name = dwi_case_name(index)
    arrays = {"dwi": case.image.astype(np.float32), **case.extra}
    if not split:
        arrays["msk"] = _stored_mask(case, options)
    written = []
    for suffix, array in arrays.items():
        if dwi_as_nifti(index, options.layout):
            path = root / f"{name}_{suffix}.nii.gz"
            write_volume(path, array, grid_meta(case.grid, NIFTI_CODE_SCANNER))
        else:
            path = root / f"{name}_{suffix}.npy"
            _write_npy(path, array)
        written.append(path)
    sidecar = root / f"{name}.json"
    write_json(sidecar, {"spacing_mm": list(case.grid.spacing_mm)})
    return [*written, sidecar]
