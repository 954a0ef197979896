"""autoseg_demo end to end on tiny data: every step runs, outputs land, a re-run resumes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autoseg.pipeline.demo import DemoOptions, format_summary, run_demo


@pytest.mark.slow
def test_demo_runs_every_step_and_resumes(tmp_path: Path) -> None:
    options = DemoOptions(home=tmp_path, cases=5, holdout_cases=2, size="tiny", device="cpu",
                          progress=False, epochs=1, iterations_per_epoch=2)  # fmt: skip
    summary = run_demo(options)
    assert summary.configuration == "3d_hybrid"  # isotropic MRI
    assert (summary.model_folder / "checkpoint_final.pt").is_file()
    assert sorted(p.name for p in summary.predictions.glob("*.nii.gz")) == [
        "r001s001.nii.gz",
        "r001s002.nii.gz",
    ]
    metrics = json.loads(summary.metrics_path.read_text())
    assert metrics["num_cases"] == 2 and 0.0 <= metrics["mean"]["dice"] <= 1.0
    assert summary.report.is_file() and "<html" in summary.report.read_text()[:200].lower()
    text = format_summary(summary, 1.0)
    assert "held-out mean : Dice" in text and str(summary.report) in text
    final = (summary.model_folder / "checkpoint_final.pt").stat().st_mtime_ns
    again = run_demo(options)  # resumes: the trained model is kept, not retrained
    assert (again.model_folder / "checkpoint_final.pt").stat().st_mtime_ns == final
