"""Workspace resolution and exit codes of the command-line layer."""

from __future__ import annotations

import argparse
from pathlib import Path

from autoseg.cli import EXIT_FAILURE, EXIT_INVALID, run, workspace_from
from autoseg.core.errors import InvalidInputError


def _args(**flags: str | None) -> argparse.Namespace:
    defaults = {"home": None, "raw": None, "preprocessed": None, "results": None}
    return argparse.Namespace(**{**defaults, **flags})


def test_default_workspace_needs_nothing_set() -> None:
    workspace = workspace_from(_args(), {})
    assert workspace.raw == Path("autoseg_data/raw")
    assert workspace.results == Path("autoseg_data/results")


def test_flags_beat_environment_which_beats_home() -> None:
    environ = {"AUTOSEG_HOME": "/home", "AUTOSEG_RAW": "/slow/raw", "AUTOSEG_RESULTS": "/r"}
    workspace = workspace_from(_args(results="/flag/results"), environ)
    assert workspace.raw == Path("/slow/raw")
    assert workspace.preprocessed == Path("/home/preprocessed")
    assert workspace.results == Path("/flag/results")


def test_invalid_input_exits_2_with_every_problem(capsys) -> None:
    def command(_: argparse.Namespace) -> int:
        raise InvalidInputError(["a.nii.gz: NaN", "b.nii.gz: empty"])

    assert run(command, _args()) == EXIT_INVALID
    assert capsys.readouterr().err.splitlines() == [
        "error: a.nii.gz: NaN",
        "error: b.nii.gz: empty",
    ]


def test_internal_failure_exits_1(capsys) -> None:
    def command(_: argparse.Namespace) -> int:
        raise RuntimeError("boom")

    assert run(command, _args()) == EXIT_FAILURE
    assert "boom" in capsys.readouterr().err
