"""ATLAS v2.0 conversion: both layouts, test cases, exact geometry, mask binarisation."""

from __future__ import annotations

import filecmp
import gzip
import json
import logging
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from autoseg.core.errors import InvalidInputError
from autoseg.data.convert import convert
from tests.data.convert_helpers import (
    atlas_bids,
    atlas_flat,
    atlas_name,
    lesion,
    nifti,
    oblique_geometry,
    random_image,
)

SUBJECTS = ["r001s001", "r001s002", "r002s001"]


def _listing(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


def test_bids_tree_in_any_wrapper_folder(tmp_path: Path) -> None:
    source = atlas_bids(tmp_path / "download" / "ATLAS_R2.0", SUBJECTS, ("r501s001",))
    dest = tmp_path / "raw" / "ATLAS"
    summary = convert("atlas", tmp_path / "download", dest, progress=False)
    assert _listing(dest / "imagesTr") == [f"{s}_0000.nii.gz" for s in SUBJECTS]
    assert _listing(dest / "labelsTr") == [f"{s}.nii.gz" for s in SUBJECTS]
    assert _listing(dest / "imagesTs") == ["r501s001_0000.nii.gz"]
    original = source / "Training/R001/sub-r001s002/ses-1/anat" / atlas_name("r001s002", "image")
    assert filecmp.cmp(original, dest / "imagesTr" / "r001s002_0000.nii.gz", shallow=False)
    payload = json.loads((dest / "dataset.json").read_text())
    assert payload["name"] == "ATLAS"
    assert payload["channel_names"] == {"0": "T1w"}
    assert payload["labels"] == {"background": 0, "lesion": 1}
    assert payload["numTraining"] == 3
    assert payload["file_ending"] == ".nii.gz"
    assert payload["source"] == {"kind": "atlas", "path": str(tmp_path.resolve() / "download")}
    assert (summary.training_cases, summary.test_cases, summary.converted) == (3, 1, 4)


def test_flat_layout_from_the_training_folder_itself(tmp_path: Path) -> None:
    atlas_flat(tmp_path / "ATLAS_2", SUBJECTS[:2])
    dest = tmp_path / "raw" / "A"
    convert("atlas", tmp_path / "ATLAS_2" / "Training", dest, progress=False)
    assert _listing(dest / "labelsTr") == ["r001s001.nii.gz", "r001s002.nii.gz"]
    label = nib.load(dest / "labelsTr" / "r001s002.nii.gz")
    np.testing.assert_array_equal(np.asanyarray(label.dataobj), lesion(1))


def test_flat_layout_with_testing_images(tmp_path: Path) -> None:
    atlas_flat(tmp_path / "src", SUBJECTS, ("r501s001", "r501s002"))
    summary = convert("atlas", tmp_path / "src", tmp_path / "raw" / "A", progress=False)
    assert (summary.training_cases, summary.test_cases) == (3, 2)
    assert _listing(tmp_path / "raw" / "A" / "imagesTs") == [
        "r501s001_0000.nii.gz",
        "r501s002_0000.nii.gz",
    ]


def _oblique_case(root: Path, subject: str, mask: np.ndarray, image_ending: str) -> None:
    folder = root / "Training" / "Images"
    name = atlas_name(subject, "image").replace(".nii.gz", image_ending)
    nifti(folder / name, random_image(3), **oblique_geometry())
    nifti(root / "Training" / "Masks" / atlas_name(subject, "mask"), mask, **oblique_geometry())


def _sitk_geometry(path: Path) -> tuple:
    image = sitk.ReadImage(str(path))
    return image.GetOrigin(), image.GetSpacing(), image.GetDirection()


@pytest.fixture
def oblique_dataset(tmp_path: Path) -> tuple[Path, Path]:
    """A float 0/1 mask with a .nii.gz image and a 0/255 mask with an uncompressed .nii image."""
    source = tmp_path / "src"
    _oblique_case(source, "r001s001", lesion(0, 1.0, np.float32), ".nii.gz")
    _oblique_case(source, "r001s002", lesion(1, 255, np.uint8), ".nii")
    return source, tmp_path / "raw" / "Oblique"


def test_geometry_and_codes_survive_exactly(oblique_dataset: tuple[Path, Path]) -> None:
    source, dest = oblique_dataset
    convert("atlas", source, dest, progress=False)
    for subject in ("r001s001", "r001s002"):
        original = next((source / "Training" / "Images").glob(f"sub-{subject}_*"))
        converted = dest / "imagesTr" / f"{subject}_0000.nii.gz"
        with gzip.open(converted) as stream:
            raw = original.read_bytes()
            assert stream.read() == (gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw)
        a, b = nib.load(original), nib.load(converted)
        np.testing.assert_array_equal(a.get_sform(coded=True)[0], b.get_sform(coded=True)[0])
        assert b.get_sform(coded=True)[1] == 4 and b.get_qform(coded=True)[1] == 1
        np.testing.assert_allclose(b.get_qform(), a.get_qform(), atol=1e-6)
        assert not np.allclose(b.get_qform(), b.get_sform())
        np.testing.assert_array_equal(
            sitk.GetArrayFromImage(sitk.ReadImage(str(original))),
            sitk.GetArrayFromImage(sitk.ReadImage(str(converted))),
        )
        assert _sitk_geometry(original) == _sitk_geometry(converted)


def test_masks_binarised_with_header_kept(
    oblique_dataset: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    source, dest = oblique_dataset
    with caplog.at_level(logging.INFO, logger="autoseg.data.convert"):
        summary = convert("atlas", source, dest, progress=False)
    assert summary.binarised_masks == 2
    lines = [r.getMessage() for r in caplog.records if "binarised" in r.getMessage()]
    assert lines == ["binarised 2 mask(s) to uint8 {0,1} (values > 0 -> 1)"]
    for index, subject in enumerate(("r001s001", "r001s002")):
        original = source / "Training" / "Masks" / atlas_name(subject, "mask")
        converted = dest / "labelsTr" / f"{subject}.nii.gz"
        image = nib.load(converted)
        assert image.get_data_dtype() == np.uint8
        np.testing.assert_array_equal(np.asanyarray(image.dataobj), lesion(index))
        header_a, header_b = nib.load(original).header, image.header
        for key in ("sform_code", "qform_code", "srow_x", "srow_y", "srow_z", "quatern_b"):
            np.testing.assert_array_equal(header_a[key], header_b[key])
        np.testing.assert_array_equal(header_a["pixdim"], header_b["pixdim"])
        assert _sitk_geometry(original) == _sitk_geometry(converted)


def test_uint8_binary_masks_are_not_counted(tmp_path: Path) -> None:
    atlas_flat(tmp_path / "src", SUBJECTS)
    summary = convert("atlas", tmp_path / "src", tmp_path / "raw" / "A", progress=False)
    assert summary.binarised_masks == 0


def test_unpaired_files_are_all_named(tmp_path: Path) -> None:
    source = atlas_flat(tmp_path / "src", SUBJECTS)
    lonely_image = source / "Training" / "Masks" / atlas_name("r001s002", "mask")
    lonely_image.unlink()
    lonely_mask = nifti(source / "Training" / "Masks" / atlas_name("r009s009", "mask"), lesion(0))
    with pytest.raises(InvalidInputError) as caught:
        convert("atlas", source, tmp_path / "raw" / "A", progress=False)
    problems = caught.value.problems
    assert len(problems) == 2
    assert any(str(lonely_mask) in p and "without its T1w image" in p for p in problems)
    image = source / "Training" / "Images" / atlas_name("r001s002", "image")
    assert any(str(image) in p and "without its lesion mask" in p for p in problems)
    assert not (tmp_path / "raw" / "A").exists()


def test_same_case_in_both_layouts_is_an_error(tmp_path: Path) -> None:
    atlas_flat(tmp_path / "src", SUBJECTS[:1])
    atlas_bids(tmp_path / "src", SUBJECTS[:1])
    with pytest.raises(InvalidInputError, match="same case as"):
        convert("atlas", tmp_path / "src", tmp_path / "raw" / "A", progress=False)


def test_no_training_images(tmp_path: Path) -> None:
    (tmp_path / "empty" / "Training").mkdir(parents=True)
    with pytest.raises(InvalidInputError, match="no ATLAS training images"):
        convert("atlas", tmp_path / "empty", tmp_path / "raw" / "A", progress=False)


def test_second_session_keeps_ids_unique(tmp_path: Path) -> None:
    source = atlas_bids(tmp_path / "src", ["r001s001"])
    anat = source / "Training" / "R001" / "sub-r001s001" / "ses-2" / "anat"
    stem = f"sub-r001s001_ses-2_{'space-MNI152NLin2009aSym'}"
    nifti(anat / f"{stem}_T1w.nii.gz", random_image(5))
    nifti(anat / f"{stem}_label-L_desc-T1lesion_mask.nii.gz", lesion(2))
    convert("atlas", source, tmp_path / "raw" / "A", progress=False)
    assert _listing(tmp_path / "raw" / "A" / "labelsTr") == [
        "r001s001_ses-1.nii.gz",
        "r001s001_ses-2.nii.gz",
    ]


def test_bids_entities_are_recorded_per_case(tmp_path: Path) -> None:
    from autoseg.data.sources import CASE_SOURCES_JSON, read_case_sources

    source = atlas_bids(tmp_path / "src", SUBJECTS[:2], ("r501s001",))
    convert("atlas", source, tmp_path / "raw" / "A", progress=False)
    sources = read_case_sources(tmp_path / "raw" / "A" / CASE_SOURCES_JSON)
    assert sorted(sources) == ["r001s001", "r001s002", "r501s001"]
    record = sources["r001s002"]
    assert record.entities == {"sub": "r001s002", "ses": "1", "space": "MNI152NLin2009aSym"}
    assert record.split == "imagesTr" and sources["r501s001"].split == "imagesTs"
    assert record.source_paths[0].is_file() and record.source_paths[0].name.endswith("_T1w.nii.gz")
    assert (Path(record.bids_root) / record.mask).is_file()
