"""Gap 2: PNG slice folders: stray files, gaps in the numbering, colour masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from autoseg.cli import EXIT_INVALID, convert_main
from tests.data.convert_helpers import png, png_patient
from tests.reliability.helpers import error_lines, run_cli


def _convert(tmp_path: Path, capsys) -> tuple[int, list[str]]:
    argv = ["png-slices", str(tmp_path / "src"), "-d", "CT", "--home", str(tmp_path), "-np", "1"]
    code, err = run_cli(convert_main, argv, capsys)
    return code, error_lines(err)


def test_jpg_slice_is_an_error_not_dropped(tmp_path: Path, capsys) -> None:
    png_patient(tmp_path / "src" / "p1" / "images", tmp_path / "src" / "p1" / "masks", [1, 2, 3])
    images = tmp_path / "src" / "p1" / "images"
    (images / "slice_002.png").unlink()
    Image.fromarray(np.full((6, 8), 2, np.uint8)).save(images / "slice_002.jpg")
    code, lines = _convert(tmp_path, capsys)
    assert code == EXIT_INVALID
    masks = tmp_path / "src" / "p1" / "masks"
    assert sorted(lines) == sorted([
        f"error: {images / 'slice_002.jpg'}: not a PNG slice (a slice folder holds .png "
        "files only)",
        f"error: {images}: slices of 'p1' are not numbered without gaps: 2 missing between 1 and 3",
        f"error: {masks}: 3 mask slices but 2 image slices",
    ])  # fmt: skip
    assert not (tmp_path / "raw" / "CT").exists()


def test_gap_in_the_numbering_names_patient_and_numbers(tmp_path: Path, capsys) -> None:
    source = tmp_path / "src"
    png_patient(source / "p1" / "images", source / "p1" / "masks", [1, 2, 3, 4])
    png_patient(source / "p2" / "images", source / "p2" / "masks", [1, 2, 5, 6, 7, 9])
    code, lines = _convert(tmp_path, capsys)
    assert code == EXIT_INVALID
    missing = "3-4, 8 missing between 1 and 9"
    assert lines == [
        f"error: {source / 'p2' / 'images'}: slices of 'p2' are not numbered without gaps: "
        + missing,
        f"error: {source / 'p2' / 'masks'}: slices of 'p2' are not numbered without gaps: "
        + missing,
    ]


def test_numbering_in_a_constant_step_is_whole(tmp_path: Path, capsys) -> None:
    source = tmp_path / "src"
    png_patient(source / "p1" / "images", source / "p1" / "masks", [0, 5, 10, 15])
    code, lines = _convert(tmp_path, capsys)
    assert (code, lines) == (0, [])


def test_colour_mask_is_refused_before_anything_is_written(tmp_path: Path, capsys) -> None:
    source = tmp_path / "src"
    for patient in ("p1", "p2", "p3"):
        png_patient(source / patient / "images", source / patient / "masks", [1, 2])
    red = np.zeros((6, 8, 3), np.uint8)
    red[2:4, 2:4, 0] = 255  # a lesion drawn in red: channels differ
    bad = png(source / "p3" / "masks" / "2.png", red)
    code, lines = _convert(tmp_path, capsys)
    assert code == EXIT_INVALID
    assert lines == [f"error: {bad}: colour PNG with differing channels (expected grey)"]
    assert not (tmp_path / "raw" / "CT").exists()  # not p1 and p2 written, p3 missing
