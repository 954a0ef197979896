"""npy (and mixed npy / NIfTI) conversion: pairing rules, spacing, channels, geometry."""

from __future__ import annotations

import filecmp
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from autoseg.core.errors import InvalidInputError
from autoseg.data.convert import convert
from tests.data.convert_helpers import nifti, oblique_geometry

SHAPE_ZYX = (4, 6, 5)


def _array(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 1, SHAPE_ZYX).astype(np.float32)


def _mask(seed: int) -> np.ndarray:
    mask = np.zeros(SHAPE_ZYX, np.uint8)
    mask[1:3, seed % 3 : 4, 1:3] = 1
    return mask


def _save(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, array)
    return path


def _volume(path: Path) -> np.ndarray:
    return np.asanyarray(nib.load(path).dataobj).transpose(2, 1, 0)


def _convert(source: Path, dest: Path, **options: object) -> object:
    return convert("npy", source, dest, progress=False, **options)


def test_suffix_pairs_with_sidecar_and_flag_spacing(tmp_path: Path) -> None:
    source = tmp_path / "src"
    for index, case in enumerate(["c1", "c2"]):
        _save(source / f"{case}_dwi.npy", _array(index))
        _save(source / f"{case}_msk.npy", _mask(index) * 255)
    (source / "c1.json").write_text(json.dumps({"spacing_mm": [4.0, 1.5, 1.25]}))
    dest = tmp_path / "raw" / "DWI"
    summary = _convert(source, dest, spacing_mm=(2.0, 1.0, 0.5))
    assert summary.binarised_masks == 2
    np.testing.assert_array_equal(_volume(dest / "imagesTr" / "c2_0000.nii.gz"), _array(1))
    np.testing.assert_array_equal(_volume(dest / "labelsTr" / "c2.nii.gz"), _mask(1))
    sidecar = sitk.ReadImage(str(dest / "imagesTr" / "c1_0000.nii.gz"))
    np.testing.assert_allclose(sidecar.GetSpacing(), (1.25, 1.5, 4.0))
    flag = nib.load(dest / "labelsTr" / "c2.nii.gz").affine
    np.testing.assert_allclose(flag, np.diag([-0.5, -1.0, 2.0, 1.0]))
    payload = json.loads((dest / "dataset.json").read_text())
    assert payload["channel_names"] == {"0": "DWI"}
    assert payload["source"]["spacing_mm"] == [2.0, 1.0, 0.5]


def test_missing_spacing_is_an_error(tmp_path: Path) -> None:
    image = _save(tmp_path / "src" / "c1_image.npy", _array(0))
    _save(tmp_path / "src" / "c1_mask.npy", _mask(0))
    with pytest.raises(InvalidInputError, match="no spacing") as caught:
        _convert(tmp_path / "src", tmp_path / "raw" / "D")
    assert str(image) in str(caught.value)


def test_images_and_masks_folders(tmp_path: Path) -> None:
    source = tmp_path / "src"
    for index, case in enumerate(["a", "b"]):
        _save(source / "images" / f"{case}.npy", _array(index))
        _save(source / "masks" / f"{case}.npy", _mask(index).astype(bool))
    summary = _convert(source, tmp_path / "raw" / "D", spacing_mm=(1, 1, 1))
    assert summary.training_cases == 2
    np.testing.assert_array_equal(_volume(tmp_path / "raw/D/imagesTr/b_0000.nii.gz"), _array(1))
    np.testing.assert_array_equal(_volume(tmp_path / "raw/D/labelsTr/a.nii.gz"), _mask(0))


def test_mixed_npy_and_nifti_cases(tmp_path: Path) -> None:
    source = tmp_path / "src"
    _save(source / "c1_dwi.npy", _array(0))
    _save(source / "c1_msk.npy", _mask(0))
    nii = nifti(source / "c2_dwi.nii.gz", _array(1).transpose(2, 1, 0), **oblique_geometry())
    _save(source / "c2_msk.npy", _mask(1))  # a bare mask takes the NIfTI image's geometry
    dest = tmp_path / "raw" / "D"
    _convert(source, dest, spacing_mm=(3, 1, 1))
    assert filecmp.cmp(nii, dest / "imagesTr" / "c2_0000.nii.gz", shallow=False)
    label = nib.load(dest / "labelsTr" / "c2.nii.gz")
    reference = nib.load(nii)
    np.testing.assert_allclose(label.affine, reference.affine, atol=1e-6)
    assert label.get_sform(coded=True)[1] == 4 and label.get_qform(coded=True)[1] == 1
    np.testing.assert_allclose(label.get_qform(), reference.get_qform(), atol=1e-5)
    np.testing.assert_array_equal(_volume(dest / "labelsTr" / "c2.nii.gz"), _mask(1))


def test_shape_mismatch_is_an_error(tmp_path: Path) -> None:
    _save(tmp_path / "src" / "c1_dwi.npy", _array(0))
    mask = _save(tmp_path / "src" / "c1_msk.npy", np.zeros((4, 6, 6), np.uint8))
    with pytest.raises(InvalidInputError, match="differs from") as caught:
        _convert(tmp_path / "src", tmp_path / "raw" / "D", spacing_mm=(1, 1, 1))
    assert str(mask) in str(caught.value)


def test_two_modalities_become_two_channels(tmp_path: Path) -> None:
    source = tmp_path / "src"
    for index, case in enumerate(["c1", "c2"]):
        _save(source / f"{case}_adc.npy", _array(10 + index))
        _save(source / f"{case}_dwi.npy", _array(index))
        _save(source / f"{case}_msk.npy", _mask(index))
    dest = tmp_path / "raw" / "D"
    _convert(source, dest, spacing_mm=(1, 1, 1))
    assert json.loads((dest / "dataset.json").read_text())["channel_names"] == {
        "0": "DWI",
        "1": "ADC",
    }
    np.testing.assert_array_equal(_volume(dest / "imagesTr" / "c2_0000.nii.gz"), _array(1))
    np.testing.assert_array_equal(_volume(dest / "imagesTr" / "c2_0001.nii.gz"), _array(11))


def test_missing_channel_is_an_error(tmp_path: Path) -> None:
    source = tmp_path / "src"
    for index, case in enumerate(["c1", "c2"]):
        _save(source / f"{case}_dwi.npy", _array(index))
        _save(source / f"{case}_msk.npy", _mask(index))
    _save(source / "c1_adc.npy", _array(5))
    with pytest.raises(InvalidInputError, match="case 'c2' lacks channel ADC"):
        _convert(source, tmp_path / "raw" / "D", spacing_mm=(1, 1, 1))


def test_unpaired_and_unknown_files_are_errors(tmp_path: Path) -> None:
    source = tmp_path / "src"
    _save(source / "c1_dwi.npy", _array(0))
    _save(source / "c1_msk.npy", _mask(0))
    lonely_image = _save(source / "c2_dwi.npy", _array(1))
    lonely_mask = _save(source / "c3_msk.npy", _mask(2))
    unknown = _save(source / "notes.npy", _mask(2))
    with pytest.raises(InvalidInputError) as caught:
        _convert(source, tmp_path / "raw" / "D", spacing_mm=(1, 1, 1))
    text = str(caught.value)
    assert f"{lonely_image}: image of case 'c2' without its mask" in text
    assert f"{lonely_mask}: mask of case 'c3' without any image" in text
    assert f"{unknown}: unrecognised name" in text


def test_testing_folder_cases_go_to_images_ts(tmp_path: Path) -> None:
    source = tmp_path / "src"
    _save(source / "c1_dwi.npy", _array(0))
    _save(source / "c1_msk.npy", _mask(0))
    _save(source / "Testing" / "c1_dwi.npy", _array(3))
    (source / "Testing" / "c1.json").write_text('{"spacing_mm": [2, 2, 2]}')
    summary = _convert(source, tmp_path / "raw" / "D", spacing_mm=(1, 1, 1))
    assert (summary.training_cases, summary.test_cases) == (1, 1)
    test_image = tmp_path / "raw" / "D" / "imagesTs" / "c1_0000.nii.gz"
    np.testing.assert_array_equal(_volume(test_image), _array(3))
    np.testing.assert_allclose(nib.load(test_image).header.get_zooms(), (2, 2, 2))
