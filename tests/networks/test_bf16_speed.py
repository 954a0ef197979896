"""bf16 on a CPU: AMX counts as faster, no bf16 instructions as slower, the rest is timed."""

from __future__ import annotations

import json
import subprocess

import pytest
import torch

from autoseg.networks import bf16_speed
from autoseg.networks.bf16_speed import Bf16Speed, cpu_bf16_faster, measured_speed

REAL_MEASUREMENT = measured_speed.__wrapped__  # conftest stubs the cached one out


def _cpu(monkeypatch: pytest.MonkeyPatch, amx: bool, avx512_bf16: bool) -> None:
    monkeypatch.setattr(bf16_speed, "cpu_has_amx", lambda: amx)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16,
                        raising=False)  # fmt: skip


def _never_timed() -> Bf16Speed:
    raise AssertionError("the CPU flags decide; nothing should be timed")


@pytest.mark.parametrize(
    ("amx", "avx512_bf16", "faster"), [(True, True, True), (False, False, False)]
)
def test_cpu_flags_decide_without_timing(
    monkeypatch: pytest.MonkeyPatch, amx: bool, avx512_bf16: bool, faster: bool
) -> None:
    _cpu(monkeypatch, amx, avx512_bf16)
    monkeypatch.setattr(bf16_speed, "measured_speed", _never_timed)
    assert cpu_bf16_faster("training") is faster
    assert cpu_bf16_faster("inference") is faster


@pytest.mark.parametrize(
    ("speed", "training", "inference"),
    [(Bf16Speed(0.68, 0.55), True, True),  # the AMD EPYC of this project
     (Bf16Speed(1.13, 0.95), False, False),  # a Xeon limited to AVX512-BF16
     (Bf16Speed(0.7, 0.92), True, False),  # each purpose by its own ratio
     (None, False, False)],  # the timing child crashed or hung: float32
)  # fmt: skip
def test_bf16_instructions_without_amx_are_timed(
    monkeypatch: pytest.MonkeyPatch, speed: Bf16Speed | None, training: bool, inference: bool
) -> None:
    _cpu(monkeypatch, amx=False, avx512_bf16=True)
    monkeypatch.setattr(bf16_speed, "measured_speed", lambda: speed)
    assert cpu_bf16_faster("training") is training
    assert cpu_bf16_faster("inference") is inference


def _child_printing(monkeypatch: pytest.MonkeyPatch, stdout: str, code: int = 0) -> list:
    commands: list = []

    def run(command: list[str], **_kwargs: object) -> subprocess.CompletedProcess:
        commands.append(command)
        return subprocess.CompletedProcess(command, code, stdout=stdout, stderr="")

    monkeypatch.setattr(bf16_speed.subprocess, "run", run)
    return commands


def test_the_child_s_seconds_become_ratios(monkeypatch: pytest.MonkeyPatch) -> None:
    seconds = {"fp32_training": 0.2, "bf16_training": 0.11, "fp32_inference": 0.08,
               "bf16_inference": 0.1}  # fmt: skip
    commands = _child_printing(monkeypatch, "a warning\n" + json.dumps(seconds) + "\n")
    assert REAL_MEASUREMENT() == Bf16Speed(training=pytest.approx(0.55), inference=1.25)
    assert commands[0][1:3] == ["-m", "autoseg.networks.bf16_speed"]


@pytest.mark.parametrize("stdout", ["", "Segmentation fault\n", '{"fp32_training": 0.2}\n'])
def test_a_child_that_crashed_or_printed_nonsense_means_float32(
    monkeypatch: pytest.MonkeyPatch, stdout: str
) -> None:
    _child_printing(monkeypatch, stdout, code=-11)
    assert REAL_MEASUREMENT() is None


def test_a_child_that_hangs_means_float32(monkeypatch: pytest.MonkeyPatch) -> None:
    def hang(command: list[str], **kwargs: object) -> None:
        raise subprocess.TimeoutExpired(command, kwargs["timeout"])

    monkeypatch.setattr(bf16_speed.subprocess, "run", hang)
    assert REAL_MEASUREMENT() is None


def test_the_probe_times_both_precisions_and_both_purposes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(bf16_speed, "PROBE_SHAPE", (1, 1, 16, 16, 16))
    calls: list[None] = []
    monkeypatch.setattr(bf16_speed, "median_seconds", lambda step: calls.append(step()) or 0.5)
    seconds = bf16_speed.time_probe()
    assert seconds == {f"{p}_{u}": 0.5 for p in ("fp32", "bf16") for u in ("training", "inference")}
    assert len(calls) == 4


def test_median_seconds_skips_the_warmup_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    durations = iter([5.0, 5.0, 0.0, 0.0, 0.0])  # the first calls pick kernels: slow
    clock = {"now": 0.0}

    def step() -> None:
        clock["now"] += next(durations)

    monkeypatch.setattr(bf16_speed.time, "perf_counter", lambda: clock["now"])
    assert bf16_speed.median_seconds(step, warmup=2, steps=3) == 0.0


@pytest.mark.slow
def test_the_real_child_times_this_cpu() -> None:
    speed = REAL_MEASUREMENT()
    assert speed is not None
    assert 0.05 < speed.training < 5 and 0.05 < speed.inference < 5
