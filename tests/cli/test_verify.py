"""autoseg_verify: exit codes and where the report goes."""

from __future__ import annotations

from pathlib import Path

from autoseg.cli import EXIT_INVALID, EXIT_OK, verify_main


def test_valid_dataset_exits_0_with_summary(tiny_dataset: Path, capsys) -> None:
    argv = ["-d", "Tiny", "--raw", str(tiny_dataset.parent), "--no-progress"]
    assert verify_main(argv) == EXIT_OK
    assert "Tiny: 3 training cases, 0 test cases: 0 errors" in capsys.readouterr().out


def test_broken_dataset_exits_2_naming_the_file(tiny_dataset: Path, capsys) -> None:
    (tiny_dataset / "labelsTr" / "case001.nii.gz").write_bytes(b"")
    argv = ["-d", "Tiny", "--raw", str(tiny_dataset.parent), "--no-progress"]
    assert verify_main(argv) == EXIT_INVALID
    assert "case001.nii.gz" in capsys.readouterr().err


def test_unknown_dataset_lists_known_ones(tiny_dataset: Path, capsys) -> None:
    assert verify_main(["-d", "Nope", "--raw", str(tiny_dataset.parent)]) == EXIT_INVALID
    assert "found: Tiny" in capsys.readouterr().err
