"""Speed levers: what applies where, the sweep's runs, and compile's eager fallback."""

from __future__ import annotations

import pytest
import torch

from autoseg.core.errors import InvalidInputError
from autoseg.training import speed
from autoseg.training.speed import (
    CompiledOrEager,
    SpeedLevers,
    autocast_dtype,
    backend_flags,
    lever_names,
    lever_status,
    optimizer_flags,
    pins_memory,
    sweep,
)
from autoseg.training.trainer import TrainSettings
from tests.training.trainer_helpers import make_trainer, synthetic_batch

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def test_defaults_are_the_trainers_behaviour() -> None:
    assert TrainSettings(1, 1).levers == SpeedLevers()
    assert SpeedLevers().channels_last and SpeedLevers().precision == "auto"
    off = ("cudnn_benchmark", "compile", "fused_optimizer", "pin_memory")
    assert not any(getattr(SpeedLevers(), name) for name in off)


def test_unknown_precision_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="bf32"):
        SpeedLevers(precision="bf32")


def test_cuda_levers_are_reported_not_applicable_on_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(speed, "cpu_bf16_faster", lambda purpose: False)
    status = lever_status(SpeedLevers(cudnn_benchmark=True, fused_optimizer=True), CPU)
    assert status == {"cudnn_benchmark": "n/a on cpu", "channels_last": "on",
                      "precision": "fp32", "fused_optimizer": "n/a on cpu",
                      "pin_memory": "n/a on cpu", "compile": "off"}  # fmt: skip
    assert lever_status(SpeedLevers(), CPU, is_3d=False)["channels_last"] == "n/a for 2D"
    assert optimizer_flags(SpeedLevers(fused_optimizer=True), CPU) == {}
    assert optimizer_flags(SpeedLevers(fused_optimizer=True), CUDA) == {"fused": True}
    assert not pins_memory(SpeedLevers(pin_memory=True), CPU)
    assert pins_memory(SpeedLevers(pin_memory=True), CUDA)


@pytest.mark.parametrize(
    ("precision", "bf16_supported", "expected"),
    [("auto", True, torch.bfloat16), ("auto", False, torch.float16),
     ("fp16", True, torch.float16), ("bf16", True, torch.bfloat16), ("fp32", True, None)],
)  # fmt: skip
def test_autocast_dtype_on_cuda(
    monkeypatch: pytest.MonkeyPatch, precision: str, bf16_supported: bool, expected: object
) -> None:
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: bf16_supported)
    assert autocast_dtype(SpeedLevers(precision=precision), CUDA, True) is expected
    assert autocast_dtype(SpeedLevers(precision=precision), CUDA, False) is None


@pytest.mark.parametrize(
    ("precision", "native", "expected"),
    [("auto", True, torch.bfloat16), ("auto", False, None), ("bf16", False, torch.bfloat16),
     ("fp16", True, None), ("fp32", True, None)],
)  # fmt: skip
def test_autocast_dtype_on_cpu_is_bf16_where_the_cpu_computes_it(
    monkeypatch: pytest.MonkeyPatch, precision: str, native: bool, expected: object
) -> None:
    monkeypatch.setattr(speed, "cpu_bf16_faster", lambda purpose: native)
    assert autocast_dtype(SpeedLevers(precision=precision), CPU, True) is expected
    assert autocast_dtype(SpeedLevers(precision=precision), CPU, False) is None


def test_auto_takes_bf16_from_amx_and_never_from_a_cpu_without_bf16_instructions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The CPU flags decide through the real rule, with nothing timed (the conftest's
    stubbed timing would say float32 if it were asked)."""
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert autocast_dtype(SpeedLevers(), CPU, True) is torch.bfloat16
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    assert autocast_dtype(SpeedLevers(), CPU, True) is None
    assert autocast_dtype(SpeedLevers(precision="bf16"), CPU, True) is torch.bfloat16


def test_a_cpu_step_under_bf16_autocast_rounds_but_keeps_float32_weights() -> None:
    batch = synthetic_batch("3d_hybrid", 0)
    steps = {}
    for precision in ("fp32", "bf16"):
        trainer = make_trainer(None)
        trainer.settings = TrainSettings(2, 3, levers=SpeedLevers(precision=precision))
        trainer.dtype = autocast_dtype(trainer.settings.levers, CPU, True)
        steps[precision] = trainer.train_step(batch)
        assert all(p.dtype == torch.float32 for p in trainer.network.parameters())
    assert steps["bf16"] != steps["fp32"]  # autocast ran
    assert steps["bf16"] == pytest.approx(steps["fp32"], rel=0.05)


def test_sweep_toggles_each_lever_once_from_the_baseline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    monkeypatch.setattr(speed, "cpu_bf16_faster", lambda purpose: True)
    runs = dict(sweep(SpeedLevers(), CUDA))
    assert list(runs) == ["baseline", "cudnn_benchmark=on", "channels_last=off",
                          "precision=fp16", "fused_optimizer=on", "pin_memory=on",
                          "compile=on"]  # fmt: skip
    assert runs["precision=fp16"] == SpeedLevers(precision="fp16")
    assert runs["channels_last=off"] == SpeedLevers(channels_last=False)
    on_cpu = dict(sweep(SpeedLevers(compile=True), CPU))
    assert on_cpu["compile=off"] == SpeedLevers()
    assert on_cpu["cudnn_benchmark"] == "n/a on cpu"
    assert on_cpu["precision=fp32"] == SpeedLevers(precision="fp32", compile=True)
    assert {n.split("=")[0] for n in on_cpu} == {"baseline", *lever_names()}
    some = sweep(SpeedLevers(), CPU, only=("channels_last", "precision"))
    assert [name for name, _ in some] == ["baseline", "channels_last=off", "precision=fp32"]
    with pytest.raises(InvalidInputError, match=r"unknown lever.*'bf17'"):
        sweep(SpeedLevers(), CPU, only=("bf17",))


def test_backend_flags_restore_cudnn_benchmark() -> None:
    before = torch.backends.cudnn.benchmark
    with backend_flags(SpeedLevers(cudnn_benchmark=True), CUDA):
        assert torch.backends.cudnn.benchmark
    with backend_flags(SpeedLevers(cudnn_benchmark=True), CPU):
        assert not torch.backends.cudnn.benchmark  # nothing to tune on the CPU
    assert torch.backends.cudnn.benchmark == before


def _failing_compile(model: torch.nn.Module) -> object:
    def compiled(*args: object) -> object:
        raise RuntimeError("no C++ compiler found\nsecond line")

    return compiled


def test_failed_compile_runs_eagerly_and_says_why(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setattr(speed.torch, "compile", _failing_compile)
    guard = CompiledOrEager(torch.nn.Identity(), enabled=True)
    assert guard.active
    assert guard.run(lambda model: model(3)) == 3
    assert not guard.active and guard.failure == "RuntimeError: no C++ compiler found"
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines == ["torch.compile failed, running eagerly (RuntimeError: no C++ compiler found)"]
    assert guard.run(lambda model: model(4)) == 4  # no second attempt, no second line
    assert capsys.readouterr().out == ""


def test_errors_after_a_compiled_step_are_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(speed.torch, "compile", lambda model: model)
    guard = CompiledOrEager(torch.nn.Identity(), enabled=True)
    assert guard.run(lambda model: model(1)) == 1
    with pytest.raises(ValueError, match="the step's own"):
        guard.run(lambda model: (_ for _ in ()).throw(ValueError("the step's own error")))


def test_trainer_step_after_a_failed_compile_equals_an_eager_step(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    batch = synthetic_batch("3d_hybrid", 0)
    eager = make_trainer(None).train_step(batch)
    monkeypatch.setattr(speed.torch, "compile", _failing_compile)
    trainer = make_trainer(None)
    trainer.settings = TrainSettings(2, 3, levers=SpeedLevers(compile=True))
    trainer.compiled = CompiledOrEager(trainer.model, enabled=True)
    assert trainer.train_step(batch) == pytest.approx(eager, rel=1e-6)
    assert trainer.compiled.failure.startswith("RuntimeError")
