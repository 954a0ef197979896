"""Input discovery (nnU-Net or plain names) and the checks before work starts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from autoseg.core.errors import InvalidInputError
from autoseg.data.io import write_volume
from autoseg.inference.inputs import discover_cases, verify_inputs
from tests.conftest import tiny_meta, write_tiny_dataset


def test_nnunet_names_group_channels_in_order(tmp_path: Path) -> None:
    images = write_tiny_dataset(tmp_path / "Tiny", cases=2, channels=2) / "imagesTr"
    cases = discover_cases(images, 2)
    assert [c for c, _ in cases] == ["case000", "case001"]
    assert [p.name for p in cases[1][1]] == ["case001_0000.nii.gz", "case001_0001.nii.gz"]
    verify_inputs(cases, 2, read_data=True)


def test_plain_single_channel_files_are_cases(tmp_path: Path) -> None:
    meta, image = tiny_meta(), np.ones((8, 12, 10), np.float32)
    write_volume(tmp_path / "brain.nii.gz", image, meta)
    write_volume(tmp_path / "patient_0001.mha", image, meta)
    (tmp_path / "notes.txt").write_text("not an image")
    cases = discover_cases(tmp_path)
    assert [(c, [p.name for p in f]) for c, f in cases] == [
        ("brain", ["brain.nii.gz"]),
        ("patient_0001", ["patient_0001.mha"]),
    ]


def test_missing_channels_are_listed_per_case(tmp_path: Path) -> None:
    images = write_tiny_dataset(tmp_path / "Tiny", cases=2, channels=2) / "imagesTr"
    (images / "case001_0001.nii.gz").unlink()
    with pytest.raises(InvalidInputError, match="case001 lacks channel files case001_0001"):
        discover_cases(images, 2)
    with pytest.raises(InvalidInputError, match="needs 3 channels"):
        discover_cases(tmp_path / "Tiny" / "labelsTr", 3)


def test_every_bad_file_is_named_before_work_starts(tmp_path: Path) -> None:
    images = write_tiny_dataset(tmp_path / "Tiny", cases=3) / "imagesTr"
    nan_image = np.full((8, 12, 10), np.nan, np.float32)
    write_volume(images / "case000_0000.nii.gz", nan_image, tiny_meta())
    (images / "case002_0000.nii.gz").write_bytes(b"\x1f\x8b broken")
    with pytest.raises(InvalidInputError) as error:
        verify_inputs(discover_cases(images, 1), 1)
    problems = error.value.problems
    assert len(problems) == 2
    assert "case000_0000.nii.gz: 960 NaN" in problems[0]
    assert "case002_0000.nii.gz" in problems[1]


def test_channels_on_different_grids_are_reported_from_headers(tmp_path: Path) -> None:
    write_volume(tmp_path / "a_0000.nii.gz", np.ones((8, 12, 10), np.float32), tiny_meta())
    write_volume(tmp_path / "a_0001.nii.gz", np.ones((8, 12, 9), np.float32), tiny_meta((8, 12, 9)))
    with pytest.raises(InvalidInputError, match=r"a_0001\.nii\.gz: not on the grid of a_0000"):
        verify_inputs(discover_cases(tmp_path, 2), 2, read_data=False)
