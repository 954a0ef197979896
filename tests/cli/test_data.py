"""autoseg_synth -> autoseg_convert -> autoseg_verify through the command-line layer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autoseg.cli import EXIT_INVALID, EXIT_OK, convert_main, synth_main, verify_main


@pytest.mark.parametrize(
    ("synth_kind", "convert_kind", "extra"),
    [("atlas", "atlas", []), ("ct-png", "png-slices", ["--spacing", "10", "5", "5"])],
)
def test_synth_convert_verify(
    tmp_path: Path, synth_kind: str, convert_kind: str, extra: list[str]
) -> None:
    source = tmp_path / "source"
    assert synth_main([synth_kind, str(source), "--cases", "2", "--size", "tiny"]) == EXIT_OK
    home = ["--home", str(tmp_path / "home")]
    assert convert_main([convert_kind, str(source), "-d", "Demo", *home, *extra]) == EXIT_OK
    dataset_json = json.loads((tmp_path / "home/raw/Demo/dataset.json").read_text())
    assert dataset_json["numTraining"] == 2
    assert verify_main(["-d", "Demo", *home, "--no-progress"]) == EXIT_OK


def test_convert_of_a_missing_source_exits_2(tmp_path: Path, capsys) -> None:
    argv = ["atlas", str(tmp_path / "nothing"), "-d", "X", "--home", str(tmp_path)]
    assert convert_main(argv) == EXIT_INVALID
    assert "nothing" in capsys.readouterr().err
