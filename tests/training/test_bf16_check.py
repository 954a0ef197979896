"""The child-process check of a CPU bf16 training step."""

from __future__ import annotations

import sys

import pytest

from autoseg.training import bf16_check
from autoseg.training.bf16_check import bf16_step_survives
from tests.networks.conftest import TINY

HYBRID = {"name": "3d_hybrid", "kwargs": TINY["3d_hybrid"][0]}
SHAPE = (1, TINY["3d_hybrid"][0]["in_channels"], *TINY["3d_hybrid"][1])


@pytest.fixture(autouse=True)
def fresh_verdicts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bf16_check, "_verdicts", {})


def test_a_sound_step_survives_and_is_asked_once(monkeypatch: pytest.MonkeyPatch) -> None:
    assert bf16_step_survives(HYBRID, SHAPE, channels_last=True)
    crash = [sys.executable, "-c", "import os; os.abort()"]
    monkeypatch.setattr(bf16_check, "probe_command", lambda: crash)
    assert bf16_step_survives(HYBRID, SHAPE, channels_last=True)  # remembered
    assert not bf16_step_survives(HYBRID, SHAPE, channels_last=False)  # another layout


@pytest.mark.parametrize(
    "child", ["import os; os.abort()", "import sys; sys.exit(3)", "import time; time.sleep(30)"]
)
def test_a_child_that_aborts_fails_or_hangs_says_no(
    monkeypatch: pytest.MonkeyPatch, child: str
) -> None:
    monkeypatch.setattr(bf16_check, "probe_command", lambda: [sys.executable, "-c", child])
    assert not bf16_step_survives(HYBRID, SHAPE, timeout_s=2.0)


def test_a_network_the_child_cannot_build_says_no() -> None:
    assert not bf16_step_survives({"name": "no_such_network", "kwargs": {}}, SHAPE)
