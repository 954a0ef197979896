"""PNG slice folders: numeric order, both arrangements, stated geometry, every bad input."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from autoseg.core.errors import InvalidInputError
from autoseg.data.convert import DEFAULT_SPACING_MM, convert
from autoseg.data.convert.png_slices import slice_sort_key
from tests.data.convert_helpers import png, png_patient

NUMBERS = [10, 8, 12, 9, 11]  # text order would put 10-12 before 8


def _volume(path: Path) -> np.ndarray:
    return np.asanyarray(nib.load(path).dataobj).transpose(2, 1, 0)  # (Z, Y, X)


def _convert(source: Path, dest: Path, **options: object) -> object:
    return convert("png-slices", source, dest, progress=False, **options)


def test_numeric_order_not_text_order() -> None:
    names = ["slice_10.png", "slice_2.png", "slice_1.png", "slice_012.png"]
    ordered = sorted((Path(n) for n in names), key=slice_sort_key)
    assert [p.name for p in ordered] == [
        "slice_1.png",
        "slice_2.png",
        "slice_10.png",
        "slice_012.png",
    ]


@pytest.mark.parametrize("arrangement", ["per-patient", "per-kind"])
def test_stacks_slices_in_numeric_order(tmp_path: Path, arrangement: str) -> None:
    source = tmp_path / "src"
    for patient in ("p1", "p2"):
        if arrangement == "per-patient":
            folders = (source / patient / "images", source / patient / "masks")
        else:
            folders = (source / "image" / patient, source / "mask" / patient)
        png_patient(*folders, NUMBERS)
    dest = tmp_path / "raw" / "CT"
    summary = _convert(source, dest)
    assert summary.training_cases == 2
    image = _volume(dest / "imagesTr" / "p2_0000.nii.gz")
    assert image.shape == (5, 6, 8)
    assert image[:, 0, 0].tolist() == [8, 9, 10, 11, 12]
    label = _volume(dest / "labelsTr" / "p2.nii.gz")
    assert label.dtype == np.uint8
    assert label[:, 3, 4].tolist() == [0, 1, 0, 1, 0]  # 255 on odd slices -> 1
    assert summary.binarised_masks == 2


def test_spacing_and_orientation(tmp_path: Path) -> None:
    png_patient(tmp_path / "src" / "a" / "images", tmp_path / "src" / "a" / "masks", [1, 2, 3])
    _convert(tmp_path / "src", tmp_path / "raw" / "D")
    affine = nib.load(tmp_path / "raw" / "D" / "imagesTr" / "a_0000.nii.gz").affine
    z, y, x = DEFAULT_SPACING_MM
    np.testing.assert_allclose(affine, np.diag([-x, -y, z, 1.0]))
    _convert(tmp_path / "src", tmp_path / "raw" / "S", spacing_mm=(3.0, 0.7, 0.6))
    path = tmp_path / "raw" / "S" / "imagesTr" / "a_0000.nii.gz"
    image = sitk.ReadImage(str(path))
    np.testing.assert_allclose(image.GetSpacing(), (0.6, 0.7, 3.0))
    np.testing.assert_allclose(image.GetDirection(), np.eye(3).ravel())  # LPS identity
    assert sitk.GetArrayFromImage(image)[:, 0, 0].tolist() == [1, 2, 3]
    note = json.loads((tmp_path / "raw" / "S" / "dataset.json").read_text())["source"]
    assert note["spacing_mm"] == [3.0, 0.7, 0.6]


def test_16_bit_values_kept_and_grey_rgb_accepted(tmp_path: Path) -> None:
    source = tmp_path / "src"
    png(source / "a" / "images" / "1.png", np.full((4, 5), 40000, np.uint16))
    png(source / "a" / "images" / "2.png", np.full((4, 5), 1234, np.uint16))
    png(source / "a" / "masks" / "1.png", np.zeros((4, 5, 3), np.uint8))
    png(source / "a" / "masks" / "2.png", np.full((4, 5, 4), 200, np.uint8))
    _convert(source, tmp_path / "raw" / "D")
    image = _volume(tmp_path / "raw" / "D" / "imagesTr" / "a_0000.nii.gz")
    assert image.dtype == np.uint16
    assert image[:, 0, 0].tolist() == [40000, 1234]
    label = _volume(tmp_path / "raw" / "D" / "labelsTr" / "a.nii.gz")
    assert label[:, 0, 0].tolist() == [0, 1]


def test_colour_slice_is_an_error_naming_it(tmp_path: Path) -> None:
    source = tmp_path / "src"
    png_patient(source / "a" / "images", source / "a" / "masks", [1, 2])
    colour = np.zeros((6, 8, 3), np.uint8)
    colour[..., 0] = 90
    bad = png(source / "a" / "images" / "slice_002.png", colour)
    with pytest.raises(InvalidInputError, match="colour PNG") as caught:
        _convert(source, tmp_path / "raw" / "D", num_processes=1)
    assert str(bad) in str(caught.value)
    assert not list((tmp_path / "raw" / "D").rglob("*.nii.gz"))


def test_every_folder_problem_listed(tmp_path: Path) -> None:
    source = tmp_path / "src"
    png_patient(source / "good" / "images", source / "good" / "masks", [1, 2])
    png_patient(source / "nomask" / "images", None, [1, 2])
    png_patient(source / "noimage" / "masks", None, [1, 2])  # masks only
    png_patient(source / "short" / "images", source / "short" / "masks", [1, 2])
    (source / "short" / "masks" / "2.png").unlink()
    png_patient(source / "sizes" / "images", source / "sizes" / "masks", [1, 2])
    png(source / "sizes" / "images" / "slice_002.png", np.zeros((7, 8), np.uint8))
    with pytest.raises(InvalidInputError) as caught:
        _convert(source, tmp_path / "raw" / "D")
    text = str(caught.value)
    assert f"{source / 'nomask' / 'images'}: image folder of 'nomask' without its mask" in text
    assert f"{source / 'noimage' / 'masks'}: mask folder of 'noimage' without its image" in text
    assert f"{source / 'short' / 'masks'}: 1 mask slices but 2 image slices" in text
    assert f"{source / 'sizes' / 'images' / 'slice_002.png'}: slice size 8x7 differs" in text
    assert len(caught.value.problems) == 4
    assert not (tmp_path / "raw" / "D").exists()


def test_per_kind_mask_folder_without_images(tmp_path: Path) -> None:
    source = tmp_path / "src"
    png_patient(source / "images" / "a", source / "masks" / "a", [1])
    png_patient(source / "masks" / "b", None, [1])
    with pytest.raises(InvalidInputError, match="mask folder of 'b' without its image folder"):
        _convert(source, tmp_path / "raw" / "D")


def test_no_masks_anywhere_gives_test_cases(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    png_patient(tmp_path / "src" / "a" / "images", None, [1, 2])
    png_patient(tmp_path / "src" / "b" / "images", None, [1, 2])
    with caplog.at_level(logging.WARNING):
        summary = _convert(tmp_path / "src", tmp_path / "raw" / "D")
    assert (summary.training_cases, summary.test_cases) == (0, 2)
    assert sorted(p.name for p in (tmp_path / "raw" / "D" / "imagesTs").iterdir()) == [
        "a_0000.nii.gz",
        "b_0000.nii.gz",
    ]
    assert "no masks anywhere" in caplog.text


def test_testing_folder_patients_are_test_cases(tmp_path: Path) -> None:
    source = tmp_path / "src"
    png_patient(source / "p1" / "images", source / "p1" / "masks", [1, 2])
    png_patient(source / "Testing" / "p9" / "images", None, [1, 2, 3])
    summary = _convert(source, tmp_path / "raw" / "D")
    assert (summary.training_cases, summary.test_cases) == (1, 1)
    test_image = _volume(tmp_path / "raw" / "D" / "imagesTs" / "p9_0000.nii.gz")
    assert test_image.shape == (3, 6, 8)


def test_duplicate_slice_numbers_are_an_error(tmp_path: Path) -> None:
    source = tmp_path / "src"
    png_patient(source / "a" / "images", source / "a" / "masks", [1, 2])
    png(source / "a" / "images" / "slice_02.png", np.zeros((6, 8), np.uint8))
    with pytest.raises(InvalidInputError, match="same slice number"):
        _convert(source, tmp_path / "raw" / "D")
