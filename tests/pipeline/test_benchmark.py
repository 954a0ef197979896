"""autoseg_benchmark end to end on a tiny planned CPU dataset: JSON values and the table."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from unittest import mock

import pytest
import torch

from autoseg.cli import benchmark_main
from autoseg.core.workspace import Workspace
from autoseg.pipeline.benchmark_report import format_table
from autoseg.pipeline.plan import PlanOptions, run_plan
from autoseg.planning import device
from autoseg.training import speed
from autoseg.training.speed import lever_names
from tests.conftest import tiny_meta, write_tiny_dataset
from tests.pipeline.model_helpers import single_thread  # noqa: F401  (fixture)

ITERATIONS = 3


@pytest.fixture(scope="module")
def planned(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """raw/Tiny (4 cases, 2 mm) planned for a CPU, with the 3d_hybrid cache."""
    workspace = Workspace.under(tmp_path_factory.mktemp("bench"))
    meta = tiny_meta(shape_zyx=(16, 20, 16), spacing_zyx=(2.0, 2.0, 2.0))
    write_tiny_dataset(workspace.raw / "Tiny", cases=4, meta=meta)
    options = PlanOptions(device="cpu", configurations=("3d_hybrid",), num_processes=1,
                          progress=False)  # fmt: skip
    with mock.patch.object(device, "CPU_GFLOPS_PER_ITERATION", 4.0):  # small CPU plans
        run_plan(workspace, "Tiny", options)
    return workspace


def _failing_compile(model: torch.nn.Module) -> object:
    def compiled(*args: object, **kwargs: object) -> object:
        raise RuntimeError("inductor unavailable")

    return compiled


def test_sweep_measures_every_lever_on_the_cpu(
    planned: Workspace, tmp_path: Path, capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch, single_thread: None,  # noqa: F811
) -> None:  # fmt: skip
    monkeypatch.setattr(speed.torch, "compile", _failing_compile)  # compiling takes minutes
    monkeypatch.setattr(speed, "cpu_bf16_faster", lambda purpose: False)  # baseline in float32
    out = tmp_path / "bench.json"
    argv = ["-d", "Tiny", "-c", "3d_hybrid", "--device", "cpu", "--iterations", str(ITERATIONS),
            "--warmup", "1", "-nw", "0", "--prediction-cases", "1", "--sweep", "--no-progress",
            "--home", str(planned.raw.parent), "--out", str(out)]  # fmt: skip
    assert benchmark_main(argv) == 0
    report = json.loads(out.read_text())
    runs = {run["name"].split("=")[0]: run for run in report["runs"]}
    assert set(runs) == {"baseline", *lever_names()}
    for name in ("cudnn_benchmark", "fused_optimizer", "pin_memory"):
        assert runs[name]["status"] == "n/a on cpu"
    ran = [runs["baseline"], runs["channels_last"], runs["precision"], runs["compile"]]
    assert [r["status"] for r in ran] == ["ran"] * 4
    assert not runs["channels_last"]["levers"]["channels_last"]
    assert runs["baseline"]["lever_status"]["precision"] == "fp32"
    assert runs["precision"]["lever_status"]["precision"] == "bf16"  # forced, as asked
    assert runs["compile"]["compile"] == "eager: RuntimeError: inductor unavailable"
    for run in ran:
        assert len(run["real_s"]) == len(run["fixed_s"]) == ITERATIONS  # warm-up left out
        assert run["s_per_iteration_real"] == statistics.median(run["real_s"]) > 0
        assert run["s_per_iteration_fixed_batch"] == statistics.median(run["fixed_s"]) > 0
        assert all(0 < w < r for w, r in zip(run["wait_s"], run["real_s"], strict=True))
        assert 0 < run["loader_wait_share"] < 1
        assert run["device_busy_share"] == pytest.approx(
            run["s_per_iteration_fixed_batch"] / run["s_per_iteration_real"]
        )
        assert run["peak_memory_gb"] > 0.05  # a Python process with torch, at least
        assert run["memory_estimate_gb"] == report["memory_estimate_gb"] > 0
    plans = json.loads((planned.preprocessed / "Tiny" / "plans.json").read_text())
    assert (
        report["memory_estimate_gb"] == plans["configurations"]["3d_hybrid"]["memory_estimate_gb"]
    )
    prediction = report["prediction"]
    assert len(prediction["cases"]) == 1 and "briefly trained" in prediction["weights"]
    no_tta, tta = prediction["no_tta"]["median_s_per_case"], prediction["tta"]["median_s_per_case"]
    assert 0 < no_tta < tta  # 8 mirrored passes cost more than one
    screen = capsys.readouterr().out
    assert "torch.compile failed, running eagerly (RuntimeError: inductor unavailable)" in screen
    assert "n/a on cpu" in screen and f"wrote {out}" in screen
    assert not list(tmp_path.glob(".*"))  # written atomically: no temporary left


def test_table_columns_are_aligned() -> None:
    text = format_table(["run", "s/iter"], [["baseline", "0.1234"], ["compile=on", "1.5"]])
    lines = text.splitlines()
    assert len({len(line) for line in lines}) == 1
    assert lines[2] == "baseline    0.1234" and lines[3] == "compile=on     1.5"


def test_missing_plans_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert benchmark_main(["-d", "Nope", "-c", "3d_hybrid", "--home", str(tmp_path)]) == 2
    assert "error:" in capsys.readouterr().err


def test_device_augmentation_is_benchmarked_as_training_runs_it(
    planned: Workspace,
    tmp_path: Path,
    single_thread: None,  # noqa: F811
) -> None:
    """--augment-on device: the loader only cuts (larger than the patch) and the trainer's
    step augments, so a real-loading step still trains on the plans' patch."""
    out = tmp_path / "device.json"
    argv = ["-d", "Tiny", "-c", "3d_hybrid", "--device", "cpu", "--iterations", "2",
            "--warmup", "0", "-nw", "0", "--prediction-cases", "0", "--augment-on", "device",
            "--no-progress", "--home", str(planned.raw.parent), "--out", str(out)]  # fmt: skip
    assert benchmark_main(argv) == 0
    report = json.loads(out.read_text())
    assert report["augmentation_on"] == "device"
    (run,) = report["runs"]
    assert run["real_s"] and all(s > 0 for s in run["real_s"])
