"""Registering an existing nnU-Net v2 raw dataset: link by default, copy on request."""

from __future__ import annotations

import filecmp
import json
from pathlib import Path

import pytest

from autoseg.core.errors import InvalidInputError
from autoseg.data.convert import convert
from autoseg.data.io import read_volume, write_volume
from autoseg.data.layout import RawDataset
from tests.conftest import tiny_meta, write_tiny_dataset


def test_link_is_a_symlink_and_idempotent(tmp_path: Path) -> None:
    source = write_tiny_dataset(tmp_path / "nnUNet_raw" / "Dataset012_Foo")
    dest = tmp_path / "raw" / "Foo"
    summary = convert("nnunet", source, dest, progress=False)
    assert dest.is_symlink() and dest.resolve() == source.resolve()
    assert (summary.linked, summary.training_cases, summary.converted) == (True, 3, 3)
    assert RawDataset.open(dest).training_cases()[0].case_id == "case000"
    again = convert("nnunet", source, dest, progress=False)
    assert (again.converted, again.skipped) == (0, 3)


def test_link_refuses_to_replace_another_dataset(tmp_path: Path) -> None:
    first = write_tiny_dataset(tmp_path / "src" / "A")
    second = write_tiny_dataset(tmp_path / "src" / "B", cases=2)
    dest = tmp_path / "raw" / "X"
    convert("nnunet", first, dest, progress=False)
    with pytest.raises(InvalidInputError, match="already links to"):
        convert("nnunet", second, dest, progress=False)
    convert("nnunet", second, dest, overwrite=True, progress=False)
    assert dest.resolve() == second.resolve()
    (tmp_path / "raw" / "Real").mkdir()
    with pytest.raises(InvalidInputError, match="exists as a folder"):
        convert("nnunet", first, tmp_path / "raw" / "Real", progress=False)


def test_copy_keeps_files_and_their_ending(tmp_path: Path) -> None:
    source = write_tiny_dataset(tmp_path / "src" / "M", cases=2)
    for path in sorted(source.rglob("*.nii.gz")):  # turn it into an .mha dataset
        write_volume(path.with_name(path.name.replace(".nii.gz", ".mha")), *read_volume(path))
        path.unlink()
    payload = json.loads((source / "dataset.json").read_text())
    (source / "dataset.json").write_text(json.dumps({**payload, "file_ending": ".mha"}))
    write_volume(
        source / "imagesTs" / "t1_0000.mha", *read_volume(source / "imagesTr" / "case000_0000.mha")
    )
    (source / "splits_final.json").write_text("[]")
    dest = tmp_path / "raw" / "M"
    summary = convert("nnunet", source, dest, copy=True, progress=False)
    assert not dest.is_symlink()
    assert (summary.training_cases, summary.test_cases, summary.converted) == (2, 1, 3)
    for name in ("imagesTr/case001_0000.mha", "labelsTr/case001.mha", "imagesTs/t1_0000.mha"):
        assert filecmp.cmp(source / name, dest / name, shallow=False)
    assert (dest / "splits_final.json").read_text() == "[]"
    copied = json.loads((dest / "dataset.json").read_text())
    assert copied["file_ending"] == ".mha"
    assert copied["source"]["kind"] == "nnunet"
    (dest / "labelsTr" / "case001.mha").unlink()
    again = convert("nnunet", source, dest, copy=True, progress=False)
    assert (again.converted, again.skipped) == (1, 2)
    assert filecmp.cmp(
        source / "labelsTr/case001.mha", dest / "labelsTr/case001.mha", shallow=False
    )


def test_source_with_missing_label_is_refused(tmp_path: Path) -> None:
    source = write_tiny_dataset(tmp_path / "src" / "A", meta=tiny_meta())
    (source / "labelsTr" / "case001.nii.gz").unlink()
    with pytest.raises(InvalidInputError, match=r"case001\.nii\.gz: missing"):
        convert("nnunet", source, tmp_path / "raw" / "A", progress=False)
    assert not (tmp_path / "raw" / "A").exists()


def test_folder_without_dataset_json_is_refused(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    with pytest.raises(InvalidInputError, match=r"dataset\.json: missing"):
        convert("nnunet", tmp_path / "src", tmp_path / "raw" / "A", progress=False)
