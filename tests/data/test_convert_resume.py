"""Conversion is per case, atomic and resumable; failures name their case; options checked."""

from __future__ import annotations

from pathlib import Path

import pytest

from autoseg.core.atomic import TEMP_PREFIX
from autoseg.core.errors import InvalidInputError
from autoseg.data.convert import convert, list_kinds, writing
from tests.data.convert_helpers import atlas_flat, atlas_name

SUBJECTS = ["r001s001", "r001s002", "r001s003"]


def _outputs(dest: Path) -> dict[str, int]:
    """Every file under ``dest`` with its modification time (ns)."""
    return {str(p.relative_to(dest)): p.stat().st_mtime_ns for p in dest.rglob("*") if p.is_file()}


def test_rerun_redoes_only_the_missing_output(tmp_path: Path) -> None:
    atlas_flat(tmp_path / "src", SUBJECTS)
    dest = tmp_path / "raw" / "A"
    convert("atlas", tmp_path / "src", dest, progress=False, num_processes=1)
    before = _outputs(dest)
    (dest / "labelsTr" / "r001s002.nii.gz").unlink()
    summary = convert("atlas", tmp_path / "src", dest, progress=False, num_processes=1)
    assert (summary.converted, summary.skipped) == (1, 2)
    after = _outputs(dest)
    assert after.keys() == before.keys()
    changed = {name for name in after if after[name] != before[name]}
    assert changed == {"labelsTr/r001s002.nii.gz", "dataset.json", "case_sources.json"}


def test_overwrite_rewrites_every_case(tmp_path: Path) -> None:
    atlas_flat(tmp_path / "src", SUBJECTS)
    dest = tmp_path / "raw" / "A"
    convert("atlas", tmp_path / "src", dest, progress=False)
    summary = convert("atlas", tmp_path / "src", dest, progress=False, overwrite=True)
    assert (summary.converted, summary.skipped) == (3, 0)


def test_interrupted_conversion_leaves_only_whole_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    atlas_flat(tmp_path / "src", SUBJECTS)
    dest = tmp_path / "raw" / "A"
    real_copy = writing.shutil.copyfile
    calls = []

    def copy_then_fail(source: str, target: str) -> None:
        calls.append(source)
        real_copy(source, target)  # a half-written temp file exists when the error hits
        if len(calls) == 2:
            raise OSError("disk full")

    monkeypatch.setattr(writing.shutil, "copyfile", copy_then_fail)
    with pytest.raises(RuntimeError, match="case r001s002: OSError: disk full"):
        convert("atlas", tmp_path / "src", dest, progress=False, num_processes=1)
    files = sorted(_outputs(dest))
    assert files == ["imagesTr/r001s001_0000.nii.gz", "labelsTr/r001s001.nii.gz"]
    assert not [p for p in dest.rglob("*") if p.name.startswith(TEMP_PREFIX)]
    monkeypatch.undo()
    summary = convert("atlas", tmp_path / "src", dest, progress=False, num_processes=1)
    assert (summary.converted, summary.skipped) == (2, 1)
    assert (dest / "dataset.json").is_file()


def test_leftover_temp_files_of_a_killed_run_are_removed(tmp_path: Path) -> None:
    atlas_flat(tmp_path / "src", SUBJECTS)
    leftover = tmp_path / "raw" / "A" / "imagesTr" / f"{TEMP_PREFIX}1234-r001s001_0000.nii.gz"
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(b"half")
    convert("atlas", tmp_path / "src", tmp_path / "raw" / "A", progress=False)
    assert not leftover.exists()


def test_parallel_failure_names_the_case(tmp_path: Path) -> None:
    source = atlas_flat(tmp_path / "src", SUBJECTS)
    (source / "Training" / "Masks" / atlas_name("r001s003", "mask")).write_bytes(b"\x1f\x8b junk")
    with pytest.raises(RuntimeError, match="case r001s003"):
        convert("atlas", source, tmp_path / "raw" / "A", progress=False, num_processes=2)
    assert not (tmp_path / "raw" / "A" / "dataset.json").exists()


def test_parallel_conversion_writes_every_case(tmp_path: Path) -> None:
    atlas_flat(tmp_path / "src", SUBJECTS)
    summary = convert("atlas", tmp_path / "src", tmp_path / "raw" / "A", num_processes=2)
    assert summary.converted == 3
    assert len(list((tmp_path / "raw" / "A" / "labelsTr").iterdir())) == 3


def test_files_of_another_source_are_refused(tmp_path: Path) -> None:
    atlas_flat(tmp_path / "src", SUBJECTS)
    stranger = tmp_path / "raw" / "A" / "imagesTr" / "other_0000.nii.gz"
    stranger.parent.mkdir(parents=True)
    stranger.write_bytes(b"x")
    with pytest.raises(
        InvalidInputError, match=r"other_0000\.nii\.gz: not part of this conversion"
    ):
        convert("atlas", tmp_path / "src", tmp_path / "raw" / "A", progress=False)
    convert("atlas", tmp_path / "src", tmp_path / "raw" / "A", progress=False, overwrite=True)
    assert not stranger.exists()


def test_options_that_do_not_fit_the_kind(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="--spacing does not apply to 'atlas'"):
        convert("atlas", tmp_path, tmp_path / "raw" / "A", spacing_mm=(1, 1, 1))
    with pytest.raises(InvalidInputError, match="--copy applies to 'nnunet' only"):
        convert("npy", tmp_path, tmp_path / "raw" / "A", copy=True)
    with pytest.raises(InvalidInputError, match="three positive numbers"):
        convert("npy", tmp_path, tmp_path / "raw" / "A", spacing_mm=(1, 0, 1))
    with pytest.raises(InvalidInputError, match="--channels applies to isles22 only, not 'npy'"):
        convert("npy", tmp_path, tmp_path / "raw" / "A", channels=["dwi"])
    with pytest.raises(InvalidInputError, match="known: atlas, isles22, png-slices, npy, nnunet"):
        convert("dicom", tmp_path, tmp_path / "raw" / "A")
    assert list_kinds() == ["atlas", "isles22", "png-slices", "npy", "nnunet"]
