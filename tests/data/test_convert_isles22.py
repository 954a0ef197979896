"""``autoseg_convert isles22`` on the real ISLES'22 cases: both layouts, FLAIR, errors."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from autoseg.cli import EXIT_INVALID, EXIT_OK, convert_main
from autoseg.core.errors import InvalidInputError
from autoseg.data.convert import convert
from autoseg.data.io import read_meta, read_volume
from autoseg.data.sources import CASE_SOURCES_JSON, read_case_sources
from autoseg.data.verify import verify_dataset
from tests.data.convert_helpers import S1, S9, release_tree, sample_file


def test_flattened_sample_with_flair(tmp_path: Path, realdata_dir: Path, capsys) -> None:
    home = ["--home", str(tmp_path / "home")]
    argv = ["isles22", str(realdata_dir / "isles22_sample"), "-d", "ISLES", "--channels",
            "dwi", "adc", "flair", *home]  # fmt: skip
    assert convert_main(argv) == EXIT_OK
    printed = capsys.readouterr().out
    assert "FLAIR resampled onto the DWI grid for 1 case(s) (SimpleITK" in printed
    dataset = tmp_path / "home/raw/ISLES"
    payload = json.loads((dataset / "dataset.json").read_text())
    assert payload["channel_names"] == {"0": "DWI", "1": "ADC", "2": "FLAIR"}
    assert payload["source"]["resampled"]["FLAIR"]["cases"] == ["strokecase0009"]
    dwi = dataset / "imagesTr/strokecase0009_0000.nii.gz"
    assert dwi.read_bytes() == sample_file(realdata_dir, "dwi").read_bytes()
    flair = read_meta(dataset / "imagesTr/strokecase0009_0002.nii.gz")
    assert flair.shape == (73, 112, 112)
    assert np.allclose(flair.affine_array, read_meta(dwi).affine_array)
    [source] = read_case_sources(dataset / CASE_SOURCES_JSON).values()
    assert source.entities == {"sub": "strokecase0009", "ses": "0001"}
    assert source.split == "imagesTr" and sorted(source.files) == ["ADC", "DWI", "FLAIR"]
    assert all(p.is_file() for p in source.source_paths)
    report = verify_dataset(dataset, num_processes=1, progress=False)
    assert report.errors == [] and report.num_training == 1


def test_release_layout_unlabelled_subject_is_a_test_case(
    tmp_path: Path, realdata_dir: Path
) -> None:
    src = release_tree(tmp_path / "ISLES-2022", realdata_dir)
    summary = convert("isles22", src, tmp_path / "raw/ISLES", progress=False)
    assert (summary.training_cases, summary.test_cases, summary.notes) == (1, 1, ())
    raw = tmp_path / "raw/ISLES"
    assert sorted(p.name for p in (raw / "imagesTs").iterdir()) == [
        "strokecase0001_0000.nii.gz", "strokecase0001_0001.nii.gz"]  # fmt: skip
    assert sorted(p.name for p in (raw / "labelsTr").iterdir()) == ["strokecase0009.nii.gz"]
    sources = read_case_sources(raw / CASE_SOURCES_JSON)
    assert sources["strokecase0001"].split == "imagesTs"
    assert sources["strokecase0001"].entities == {"sub": "strokecase0001", "ses": "0001"}
    dwi = f"sub-strokecase0009/ses-0001/dwi/{S9}_dwi.nii.gz"
    assert sources["strokecase0009"].files["DWI"] == dwi
    assert Path(sources["strokecase0009"].bids_root) == (src / "rawdata").resolve()
    assert verify_dataset(raw, num_processes=1, progress=False).errors == []


def _world(meta, zyx: np.ndarray) -> np.ndarray:
    return (meta.affine_array @ np.r_[zyx[::-1], 1.0])[:3]


def _blob_centre(array: np.ndarray, threshold: float) -> np.ndarray:
    """Intensity-weighted centre ``(z, y, x)`` of the voxels above ``threshold``."""
    weights = np.where(array > threshold, array, 0.0)
    grid = np.indices(array.shape).reshape(3, -1)
    return (grid * weights.ravel()).sum(axis=1) / weights.sum()


def test_resampled_flair_keeps_world_positions(tmp_path: Path, realdata_dir: Path) -> None:
    """A bright landmark painted into the FLAIR lands, after conversion, within one DWI
    voxel (2 mm) of its world position; so does the centre of the brain."""
    image = nib.load(sample_file(realdata_dir, "flair"))
    data = np.asanyarray(image.dataobj).astype(np.float32)  # (x, y, z)
    landmark_xyz = (300, 220, 14)
    data[296:305, 216:225, 14] = 20 * data.max()  # about 4 x 4 x 5 mm
    flair = tmp_path / "flair_landmark.nii.gz"
    nib.save(nib.Nifti1Image(data, image.affine, image.header), flair)
    src = release_tree(tmp_path / "src", realdata_dir, flair=flair, unlabelled=False)
    convert("isles22", src, tmp_path / "raw/I", channels=["dwi", "flair"], progress=False)
    resampled, meta = read_volume(tmp_path / "raw/I/imagesTr/strokecase0009_0001.nii.gz")
    original, original_meta = read_volume(flair)
    expected = _world(original_meta, np.array(landmark_xyz[::-1], float))
    found = _world(meta, _blob_centre(resampled, 5 * float(np.percentile(original, 99.9))))
    assert np.linalg.norm(found - expected) < 2.0  # one DWI voxel
    brain_before = _world(original_meta, _blob_centre(original, 0.0))
    brain_after = _world(meta, _blob_centre(resampled, 0.0))
    assert np.linalg.norm(brain_after - brain_before) < 2.0


def test_adc_on_another_grid_names_the_subject_and_files(
    tmp_path: Path, realdata_dir: Path
) -> None:
    src = release_tree(tmp_path / "src", realdata_dir)
    adc = src / f"rawdata/sub-strokecase0009/ses-0001/dwi/{S9}_adc.nii.gz"
    adc.unlink()
    adc.symlink_to(sample_file(realdata_dir, "flair"))
    with pytest.raises(InvalidInputError) as error:
        convert("isles22", src, tmp_path / "raw/I", progress=False)
    [line] = error.value.problems
    assert line.startswith(f"{S9}: ADC {adc} is not on the DWI grid of ")
    assert line.endswith(f"{S9}_dwi.nii.gz: shape [73, 112, 112] != [29, 512, 512] (z, y, x)")


def test_missing_channel_and_mask_on_another_grid(tmp_path: Path, realdata_dir: Path) -> None:
    src = release_tree(tmp_path / "src", realdata_dir)
    wrong = src / f"derivatives/sub-strokecase0001/ses-0001/{S1}_msk.nii.gz"
    wrong.parent.mkdir(parents=True)
    wrong.symlink_to(sample_file(realdata_dir, "msk"))  # strokecase0009's mask: other affine
    with pytest.raises(InvalidInputError) as error:
        convert("isles22", src, tmp_path / "raw/I", channels=["dwi", "adc", "flair"],
                progress=False)  # fmt: skip
    [missing] = error.value.problems
    assert missing.startswith(f"{S1}: no FLAIR image (expected {S1}_flair.nii.gz")
    with pytest.raises(InvalidInputError) as error:
        convert("isles22", src, tmp_path / "raw/I", progress=False)
    [line] = error.value.problems
    assert line.startswith(f"{S1}: mask {wrong} is not on the DWI grid of ")
    assert "affine differs by up to" in line


def test_bad_channel_flags_exit_2(tmp_path: Path, realdata_dir: Path, capsys) -> None:
    argv = ["isles22", str(realdata_dir / "isles22_sample"), "-d", "I", "--channels", "dwi",
            "t1", "--home", str(tmp_path)]  # fmt: skip
    assert convert_main(argv) == EXIT_INVALID
    error = capsys.readouterr().err
    assert "--channels: unknown channel 't1' (ISLES'22 has dwi, adc, flair)" in error
