"""``python -m autoseg COMMAND``: the console scripts behind one entry (the torchrun target)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from autoseg.cli import COMMANDS, EXIT_INVALID
from autoseg.cli.dispatch import main


def test_every_console_script_is_a_command() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    scripts = {name.removeprefix("autoseg_") for name in pyproject["project"]["scripts"]}
    assert scripts == set(COMMANDS)


def test_a_command_runs_with_its_own_parser(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["train", "--help"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith("usage: autoseg_train")


def test_unknown_command_is_bad_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["nope"]) == EXIT_INVALID
    assert "unknown command 'nope'" in capsys.readouterr().err


def test_python_dash_m_autoseg() -> None:
    done = subprocess.run([sys.executable, "-m", "autoseg", "verify", "--help"],
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert done.returncode == 0 and done.stdout.startswith("usage: autoseg_verify")
