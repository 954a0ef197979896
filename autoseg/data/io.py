"""Read and write volumes with their geometry: NIfTI via nibabel, MHA/NRRD via SimpleITK.

Every reader returns ``(array (Z, Y, X), ImageMeta)``; every writer takes the same pair,
so a prediction can be written back in its input's exact frame.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from autoseg.core.atomic import atomic_path
from autoseg.core.errors import InvalidInputError
from autoseg.data.capacity import check_claim, metaimage_header_problem, nifti_claim, sitk_claim
from autoseg.data.records import ImageMeta, matrix_to_tuple, meta_from_affine

NIFTI_ENDINGS = (".nii.gz", ".nii")
SITK_ENDINGS = (".mha", ".mhd", ".nrrd", ".nhdr")
VOLUME_ENDINGS = NIFTI_ENDINGS + SITK_ENDINGS
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
ITK_PREFIX = re.compile(r"^ITK ERROR: \w+\(0x[0-9a-fA-F]+\): ")


def file_ending(path: str | os.PathLike) -> str:
    """The format-defining ending of a file name (``.nii.gz`` counts as one ending)."""
    name = Path(path).name.lower()
    for ending in (*VOLUME_ENDINGS, ".npy", ".png"):
        if name.endswith(ending):
            return ending
    return Path(path).suffix.lower()


def strip_ending(path: str | os.PathLike) -> str:
    """The file name without its format ending (``case_0000.nii.gz`` -> ``case_0000``)."""
    name = Path(path).name
    return name[: len(name) - len(file_ending(path))]


def _check_readable(path: Path) -> None:
    if not path.is_file():
        raise InvalidInputError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise InvalidInputError(f"{path}: empty file (0 bytes)")


def _squeeze_to_3d(array: np.ndarray, path: Path) -> np.ndarray:
    """NIfTI order ``(x, y[, z[, 1...]])`` -> ``(z, y, x)``; 2D images get ``z = 1``."""
    while array.ndim > 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3:
        raise InvalidInputError(f"{path}: expected a 3D volume, got shape {array.shape}")
    return np.ascontiguousarray(array.transpose(2, 1, 0))


def _nifti_meta(image: nib.Nifti1Image, shape_zyx: tuple[int, ...]) -> ImageMeta:
    _, sform_code = image.get_sform(coded=True)
    _, qform_code = image.get_qform(coded=True)
    affine = np.asarray(image.affine)
    qform_matrix = image.get_qform()
    keep_qform = not np.allclose(qform_matrix, affine, rtol=0, atol=0)
    base = meta_from_affine(shape_zyx, affine, "nifti")
    return ImageMeta(
        shape=base.shape,
        spacing_mm=base.spacing_mm,
        affine=base.affine,
        qform=matrix_to_tuple(qform_matrix) if keep_qform else None,
        qform_code=int(qform_code or 0),
        sform_code=int(sform_code or 0),
        source_format="nifti",
    )


def _load_nifti(path: Path) -> nib.Nifti1Image:
    try:
        return nib.load(str(path))
    except Exception as error:  # nibabel raises many types for broken files
        raise InvalidInputError(f"{path}: unreadable NIfTI ({error})") from error


def _check_nifti_claim(path: Path, image: nib.Nifti1Image) -> None:
    """The header's shape and type against the bytes the file holds, before allocating."""
    header = image.header
    shape = tuple(int(v) for v in header.get_data_shape())
    itemsize = header.get_data_dtype().itemsize
    check_claim(path, nifti_claim(path, shape, itemsize, int(header.get_data_offset())))


def _sitk_affine(image: sitk.Image) -> np.ndarray:
    """Voxel-to-RAS affine of a SimpleITK image (ITK works in LPS)."""
    dimension = image.GetDimension()
    direction = np.eye(3)
    direction[:dimension, :dimension] = np.reshape(image.GetDirection(), (dimension, dimension))
    spacing = np.ones(3)
    spacing[:dimension] = image.GetSpacing()
    origin = np.zeros(3)
    origin[:dimension] = image.GetOrigin()
    lps = np.eye(4)
    lps[:3, :3] = direction @ np.diag(spacing)
    lps[:3, 3] = origin
    return LPS_TO_RAS @ lps


def _itk_reason(path: Path, error: RuntimeError) -> str:
    """The line of an ITK error that says what is wrong with the file.

    ITK ends its messages with a stale errno ("No such file or directory" for a file that
    exists) and prints the real reason of a MetaImage failure to stderr only, so the header
    is diagnosed here where it can be, and the errno line is dropped.
    """
    if file_ending(path) in (".mha", ".mhd"):
        problem = metaimage_header_problem(path)
        if problem:
            return problem
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    useful = [
        line
        for line in lines
        if not line.startswith("Exception thrown") and "No such file or directory" not in line
    ]
    text = (useful or lines or ["read error"])[-1]
    return ITK_PREFIX.sub("", text)


def _sitk_reader(path: Path) -> sitk.ImageFileReader:
    """A reader that has read the header only (size, pixel type, geometry)."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as error:
        raise InvalidInputError(f"{path}: unreadable image ({_itk_reason(path, error)})") from error
    if reader.GetNumberOfComponents() != 1:
        raise InvalidInputError(f"{path}: vector images are not supported; one file per channel")
    return reader


def _bytes_per_voxel(reader: sitk.ImageFileReader) -> int:
    probe = sitk.Image([1] * reader.GetDimension(), reader.GetPixelID())
    return int(sitk.GetArrayViewFromImage(probe).nbytes)


def _read_sitk(path: Path, with_data: bool) -> tuple[np.ndarray | None, ImageMeta]:
    reader = _sitk_reader(path)
    size_xyz = list(reader.GetSize()) + [1] * (3 - reader.GetDimension())
    shape_zyx = tuple(int(v) for v in size_xyz[:3][::-1])
    meta = meta_from_affine(shape_zyx, _sitk_affine_from_reader(reader), "sitk")
    if not with_data:
        return None, meta
    claim = sitk_claim(path, tuple(reader.GetSize()), _bytes_per_voxel(reader))
    if claim is not None:
        check_claim(path, claim)
    try:
        array = sitk.GetArrayFromImage(reader.Execute())
    except RuntimeError as error:
        raise InvalidInputError(f"{path}: unreadable image ({_itk_reason(path, error)})") from error
    except MemoryError as error:
        raise InvalidInputError(f"{path}: out of memory reading {shape_zyx} voxels") from error
    return np.ascontiguousarray(array.reshape(shape_zyx)), meta


def _sitk_affine_from_reader(reader: sitk.ImageFileReader) -> np.ndarray:
    image = sitk.Image([1] * reader.GetDimension(), sitk.sitkUInt8)
    image.SetSpacing(reader.GetSpacing())
    image.SetOrigin(reader.GetOrigin())
    image.SetDirection(reader.GetDirection())
    return _sitk_affine(image)


def read_volume(path: str | os.PathLike) -> tuple[np.ndarray, ImageMeta]:
    """Read one single-channel volume as ``(array (Z, Y, X), meta)``; scaling applied.

    Raises:
        InvalidInputError: missing, empty, truncated or unsupported files, naming the file.
    """
    path = Path(path)
    _check_readable(path)
    ending = file_ending(path)
    if ending in NIFTI_ENDINGS:
        image = _load_nifti(path)
        _check_nifti_claim(path, image)
        try:
            raw = np.asanyarray(image.dataobj)
        except MemoryError as error:
            raise InvalidInputError(
                f"{path}: out of memory reading {image.shape} {image.get_data_dtype()} voxels"
            ) from error
        except Exception as error:  # truncated gzip streams, short files
            raise InvalidInputError(f"{path}: truncated or corrupt data ({error})") from error
        array = _squeeze_to_3d(raw, path)
        return array, _nifti_meta(image, array.shape)
    if ending in SITK_ENDINGS:
        array, meta = _read_sitk(path, with_data=True)
        return array, meta
    raise InvalidInputError(f"{path}: unsupported file type '{ending}'")


def read_meta(path: str | os.PathLike) -> ImageMeta:
    """Read only the geometry of a volume (no voxel data is decompressed)."""
    path = Path(path)
    _check_readable(path)
    ending = file_ending(path)
    if ending in NIFTI_ENDINGS:
        image = _load_nifti(path)
        shape_xyz = list(image.shape[:3]) + [1] * (3 - len(image.shape[:3]))
        return _nifti_meta(image, tuple(shape_xyz[::-1]))
    if ending in SITK_ENDINGS:
        return _read_sitk(path, with_data=False)[1]
    raise InvalidInputError(f"{path}: unsupported file type '{ending}'")


def _nifti_image(array_zyx: np.ndarray, meta: ImageMeta) -> nib.Nifti1Image:
    image = nib.Nifti1Image(np.ascontiguousarray(array_zyx.transpose(2, 1, 0)), None)
    image.set_sform(meta.affine_array, code=meta.sform_code)
    image.set_qform(meta.qform_array, code=meta.qform_code)
    image.header.set_xyzt_units("mm", "sec")
    image.header.set_data_dtype(array_zyx.dtype)
    return image


def to_sitk(array_zyx: np.ndarray, meta: ImageMeta) -> sitk.Image:
    """A SimpleITK image of ``array (Z, Y, X)`` placed in the world as ``meta`` says (LPS)."""
    return _sitk_image(array_zyx, meta)


def _sitk_image(array_zyx: np.ndarray, meta: ImageMeta) -> sitk.Image:
    image = sitk.GetImageFromArray(array_zyx)
    lps = np.linalg.inv(LPS_TO_RAS) @ meta.affine_array
    spacing_xyz = np.linalg.norm(lps[:3, :3], axis=0)
    image.SetSpacing([float(v) for v in spacing_xyz])
    image.SetOrigin([float(v) for v in lps[:3, 3]])
    image.SetDirection([float(v) for v in (lps[:3, :3] / spacing_xyz).ravel()])
    return image


def write_volume(
    path: str | os.PathLike, array_zyx: np.ndarray, meta: ImageMeta, dtype: np.dtype | None = None
) -> None:
    """Write ``array (Z, Y, X)`` with ``meta``'s geometry, atomically; format by ending."""
    path = Path(path)
    array = np.asarray(array_zyx if dtype is None else array_zyx.astype(dtype))
    if tuple(array.shape) != tuple(meta.shape):
        raise ValueError(f"{path}: array shape {array.shape} != image shape {meta.shape}")
    ending = file_ending(path)
    with atomic_path(path) as temp:
        if ending in NIFTI_ENDINGS:
            nib.save(_nifti_image(array, meta), str(temp))
        elif ending in SITK_ENDINGS:
            sitk.WriteImage(_sitk_image(array, meta), str(temp), useCompression=True)
        else:
            raise ValueError(f"{path}: cannot write file type '{ending}'")


def write_label(path: str | os.PathLike, labels_zyx: np.ndarray, meta: ImageMeta) -> None:
    """Write a label map as uint8 in the frame of ``meta`` (atomic)."""
    if labels_zyx.size and (labels_zyx.min() < 0 or labels_zyx.max() > 255):
        raise ValueError(f"{path}: label values must fit uint8")
    write_volume(path, labels_zyx, meta, np.uint8)
