"""autoseg_evaluate end to end on two small label folders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from autoseg.cli import EXIT_INVALID, EXIT_OK, evaluate_main
from autoseg.data.io import write_label
from tests.conftest import tiny_meta


def test_evaluate_writes_summary_and_csv(tmp_path: Path, capsys) -> None:
    meta = tiny_meta()
    reference = np.zeros(meta.shape, np.uint8)
    reference[2:6, 3:9, 2:8] = 1
    prediction = np.zeros_like(reference)
    prediction[2:6, 3:9, 2:5] = 1  # half of the lesion: Dice = 2*72 / (144 + 72)
    write_label(tmp_path / "ref" / "c1.nii.gz", reference, meta)
    write_label(tmp_path / "pred" / "c1.nii.gz", prediction, meta)
    out = tmp_path / "metrics.json"
    argv = ["-r", str(tmp_path / "ref"), "-p", str(tmp_path / "pred"), "-o", str(out)]
    assert evaluate_main(argv) == EXIT_OK
    summary = json.loads(out.read_text())
    assert summary["mean"]["dice"] == np.float64(2 * 72 / 216)
    assert out.with_suffix(".csv").is_file()
    assert "Dice 0.6667" in capsys.readouterr().out


def test_missing_prediction_exits_2_naming_the_case(tmp_path: Path, capsys) -> None:
    meta = tiny_meta()
    write_label(tmp_path / "ref" / "c1.nii.gz", np.zeros(meta.shape, np.uint8), meta)
    (tmp_path / "pred").mkdir()
    argv = ["-r", str(tmp_path / "ref"), "-p", str(tmp_path / "pred"), "-o", str(tmp_path / "m")]
    assert evaluate_main(argv) == EXIT_INVALID
    assert "c1" in capsys.readouterr().err
