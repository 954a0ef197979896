"""Reading and writing volumes keeps arrays and geometry exactly."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from autoseg.core.errors import InvalidInputError
from autoseg.data.io import read_meta, read_volume, write_label, write_volume
from autoseg.data.records import ImageMeta, geometry_mismatch, matrix_to_tuple
from tests.conftest import oblique_affine, tiny_meta


def _lps_oblique_meta() -> ImageMeta:
    """An LPS-oriented (x and y flipped), oblique, anisotropic grid."""
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ oblique_affine((4.0, 0.8, 0.9))
    return ImageMeta(shape=(5, 9, 7), spacing_mm=(4.0, 0.8, 0.9), affine=matrix_to_tuple(affine))


def _world_of_voxel(affine: np.ndarray, ijk: tuple[int, int, int]) -> np.ndarray:
    return (affine @ np.array([*ijk, 1.0]))[:3]


@pytest.mark.parametrize("oblique", [False, True])
def test_nifti_round_trip_keeps_array_and_affine(tmp_path: Path, oblique: bool) -> None:
    meta = tiny_meta(oblique=oblique)
    array = np.arange(np.prod(meta.shape), dtype=np.float32).reshape(meta.shape)
    write_volume(tmp_path / "a.nii.gz", array, meta)
    read_array, read_back = read_volume(tmp_path / "a.nii.gz")
    np.testing.assert_array_equal(read_array, array)
    np.testing.assert_allclose(read_back.affine_array, meta.affine_array, atol=1e-5)
    assert read_back.shape == meta.shape
    np.testing.assert_allclose(read_back.spacing_mm, meta.spacing_mm, rtol=1e-6)


def test_axis_order_is_z_y_x_in_both_readers(tmp_path: Path) -> None:
    """Voxel [z, y, x] of our array is NIfTI voxel (i=x, j=y, k=z) and ITK index (x, y, z)."""
    meta = _lps_oblique_meta()
    array = np.zeros(meta.shape, np.int16)
    array[3, 5, 1] = 7
    write_volume(tmp_path / "a.nii.gz", array, meta)
    assert nib.load(tmp_path / "a.nii.gz").get_fdata()[1, 5, 3] == 7
    image = sitk.ReadImage(str(tmp_path / "a.nii.gz"))
    assert image.GetPixel(1, 5, 3) == 7
    world_itk = np.array(image.TransformIndexToPhysicalPoint((1, 5, 3)))
    world_ras = _world_of_voxel(meta.affine_array, (1, 5, 3))
    np.testing.assert_allclose(world_itk * [-1, -1, 1], world_ras, atol=1e-4)


def test_mha_and_nifti_writers_agree_on_geometry(tmp_path: Path) -> None:
    meta = _lps_oblique_meta()
    array = np.random.default_rng(0).integers(0, 50, meta.shape).astype(np.int16)
    write_volume(tmp_path / "a.nii.gz", array, meta)
    write_volume(tmp_path / "a.mha", array, meta)
    nifti_array, nifti_meta = read_volume(tmp_path / "a.nii.gz")
    mha_array, mha_meta = read_volume(tmp_path / "a.mha")
    np.testing.assert_array_equal(nifti_array, mha_array)
    assert geometry_mismatch(nifti_meta, mha_meta, tolerance_mm=1e-4) is None


def test_differing_qform_and_sform_codes_survive(tmp_path: Path) -> None:
    affine = oblique_affine((2.0, 1.0, 1.0))
    image = nib.Nifti1Image(np.ones((4, 5, 6), np.float32), None)
    image.set_sform(affine, code=4)
    image.set_qform(np.diag([1.0, 1.0, 2.0, 1.0]), code=1)
    nib.save(image, tmp_path / "src.nii.gz")
    array, meta = read_volume(tmp_path / "src.nii.gz")
    assert (meta.sform_code, meta.qform_code) == (4, 1)
    write_label(tmp_path / "out.nii.gz", (array > 0).astype(np.uint8), meta)
    out = nib.load(tmp_path / "out.nii.gz")
    assert int(out.header["sform_code"]) == 4 and int(out.header["qform_code"]) == 1
    np.testing.assert_allclose(out.get_sform(), affine, atol=1e-5)
    np.testing.assert_allclose(out.get_qform(), np.diag([1.0, 1.0, 2.0, 1.0]), atol=1e-6)
    assert out.get_data_dtype() == np.uint8


def test_read_meta_matches_read_volume_without_data(tmp_path: Path) -> None:
    meta = tiny_meta(oblique=True)
    write_volume(tmp_path / "a.nii.gz", np.zeros(meta.shape, np.float32), meta)
    write_volume(tmp_path / "a.nrrd", np.zeros(meta.shape, np.float32), meta)
    assert read_meta(tmp_path / "a.nii.gz") == read_volume(tmp_path / "a.nii.gz")[1]
    assert read_meta(tmp_path / "a.nrrd") == read_volume(tmp_path / "a.nrrd")[1]


@pytest.mark.parametrize("content", [b"", b"not an image at all" * 10])
def test_broken_files_name_the_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "broken.nii.gz"
    path.write_bytes(content)
    with pytest.raises(InvalidInputError, match=r"broken\.nii\.gz"):
        read_volume(path)


def test_truncated_gzip_names_the_file(tmp_path: Path) -> None:
    meta = tiny_meta()
    write_volume(tmp_path / "a.nii.gz", np.ones(meta.shape, np.float32), meta)
    data = (tmp_path / "a.nii.gz").read_bytes()
    (tmp_path / "cut.nii.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidInputError, match=r"cut\.nii\.gz"):
        read_volume(tmp_path / "cut.nii.gz")


def test_failed_write_leaves_nothing(tmp_path: Path) -> None:
    meta = tiny_meta()
    with pytest.raises(ValueError, match="shape"):
        write_volume(tmp_path / "a.nii.gz", np.ones((2, 2, 2), np.float32), meta)
    assert list(tmp_path.iterdir()) == []


def test_label_values_must_fit_uint8(tmp_path: Path) -> None:
    meta = tiny_meta()
    with pytest.raises(ValueError, match="uint8"):
        write_label(tmp_path / "a.nii.gz", np.full(meta.shape, 300), meta)


def test_isles22_nifti_and_mha_read_identically(realdata_dir: Path) -> None:
    folder = realdata_dir / "isles22_case0001_unlabeled"
    for modality in ("dwi", "adc"):
        nifti = folder / f"sub-strokecase0001_ses-0001_{modality}.nii.gz"
        mha = next(folder.glob(f"{modality}-brain-mri_*.mha"))
        nifti_array, nifti_meta = read_volume(nifti)
        mha_array, mha_meta = read_volume(mha)
        np.testing.assert_array_equal(nifti_array, mha_array)
        assert geometry_mismatch(nifti_meta, mha_meta, tolerance_mm=1e-3) is None
        assert mha_meta.source_format == "sitk" and nifti_meta.source_format == "nifti"


def test_isles22_mask_matches_dwi_grid_within_tolerance(realdata_dir: Path) -> None:
    session = "sub-strokecase0009/ses-0001"
    dwi = (
        realdata_dir / "isles22_sample/rawdata" / session / "sub-strokecase0009_ses-0001_dwi.nii.gz"
    )
    mask = (
        realdata_dir
        / "isles22_sample/derivatives"
        / session
        / "sub-strokecase0009_ses-0001_msk.nii.gz"
    )
    dwi_meta, mask_meta = read_meta(dwi), read_meta(mask)
    assert dwi_meta.shape == (73, 112, 112)
    np.testing.assert_allclose(dwi_meta.spacing_mm, (2.0, 2.0, 2.0), atol=1e-4)
    assert dwi_meta.affine != mask_meta.affine  # float noise below 1e-7 ...
    assert geometry_mismatch(dwi_meta, mask_meta) is None  # ... within tolerance
