"""SIGKILL mid-run, then resume: what was finished stays, the rest is done, results match.

Each command runs as a subprocess slowed down per case (``slow_workers --delay``), is
killed once its first output exists, and is run again; the outputs must equal those of
an uninterrupted run and the files written before the kill must be untouched.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from autoseg import cli
from autoseg.core.atomic import is_temporary
from autoseg.core.workspace import Workspace
from autoseg.data.io import read_volume
from tests.conftest import write_tiny_dataset
from tests.data.convert_helpers import atlas_flat
from tests.pipeline.model_helpers import hybrid_spec, make_plans, make_workspace, write_results
from tests.pipeline.test_training_pipeline import write_plans as write_training_plans
from tests.reliability.helpers import repo_env
from tests.training.cache_helpers import lesion_cache

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="POSIX signals")
START_SECONDS = 90


def _kill_when(first_output: Path, target: str, command: str, argv: list[str]) -> None:
    """Run ``autoseg.cli.COMMAND`` slowed at ``target``; SIGKILL once ``first_output`` exists."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.reliability.slow_workers", "--delay", "1", target,
         command, *argv],
        env=repo_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.monotonic() + START_SECONDS
    while not first_output.exists():
        if process.poll() is not None:
            pytest.fail(f"finished before the kill: {process.stderr.read().decode()[-2000:]}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("no output appeared")
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()


def _files(root: Path) -> dict[str, bytes]:
    """Every finished file below ``root`` (temporary leftovers of a kill excluded)."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not is_temporary(p)
    }


def test_convert_resumes_after_sigkill(tmp_path: Path) -> None:
    source = atlas_flat(tmp_path / "src", ["r001s001", "r001s002", "r001s003", "r001s004"])
    reference = tmp_path / "reference"
    args = ["atlas", str(source), "-d", "A", "-np", "1"]
    assert cli.convert_main([*args, "--home", str(reference)]) == 0
    home = tmp_path / "killed"
    dataset = home / "raw" / "A"
    _kill_when(dataset / "labelsTr" / "r001s001.nii.gz",
               "autoseg.data.convert.writing:convert_case", "convert_main",
               [*args, "--home", str(home)])  # fmt: skip
    before = _files(dataset)
    assert "dataset.json" not in before  # written last: the dataset is visibly unfinished
    expected = _files(reference / "raw" / "A")
    assert all(expected[name] == data for name, data in before.items())  # whole, not partial
    assert cli.convert_main([*args, "--home", str(home)]) == 0
    assert _files(dataset) == expected


def test_predict_resumes_after_sigkill(tmp_path: Path) -> None:
    workspace = make_workspace(tmp_path, cases=3)
    write_results(
        workspace, make_plans({"3d_hybrid": hybrid_spec()}), {"3d_hybrid": [hybrid_spec()]}
    )
    images = workspace.raw / "Tiny" / "imagesTr"
    flags = ["-d", "Tiny", "--home", str(tmp_path), "--device", "cpu", "--disable-tta",
             "--step", "1", "--no-progress"]  # fmt: skip
    assert cli.predict_main(["-i", str(images), "-o", str(tmp_path / "reference"), *flags]) == 0
    output = tmp_path / "killed"
    _kill_when(output / "case000.nii.gz", "autoseg.inference.folder_prediction:_load",
               "predict_main", ["-i", str(images), "-o", str(output), *flags])  # fmt: skip
    first = (output / "case000.nii.gz").stat().st_mtime_ns
    assert len(_files(output)) < 3
    assert cli.predict_main(["-i", str(images), "-o", str(output), *flags, "--continue"]) == 0
    assert (output / "case000.nii.gz").stat().st_mtime_ns == first  # not redone
    assert sorted(_files(output)) == sorted(_files(tmp_path / "reference"))
    reference = _files(tmp_path / "reference")
    for name, content in _files(output).items():
        if not name.endswith(".nii.gz"):  # the lesion tables and their column dictionaries
            assert content == reference[name], name
            continue
        np.testing.assert_array_equal(read_volume(output / name)[0],
                                      read_volume(tmp_path / "reference" / name)[0])  # fmt: skip


@pytest.mark.slow
def test_plan_resumes_after_sigkill(tmp_path: Path) -> None:
    """Caches of a killed plan, resumed, equal those of an uninterrupted one (3 plans: slow)."""
    for home in (tmp_path / "reference", tmp_path / "killed"):
        write_tiny_dataset(home / "raw" / "Tiny", cases=4)
    args = ["-d", "Tiny", "-np", "1", "--no-progress", "-c", "3d_hybrid"]
    assert cli.plan_main([*args, "--home", str(tmp_path / "reference")]) == 0
    reference = tmp_path / "reference" / "preprocessed" / "Tiny"
    plans = json.loads((reference / "plans.json").read_text())
    cache = plans["configurations"]["3d_hybrid"]["data_id"]
    home = tmp_path / "killed"
    killed = home / "preprocessed" / "Tiny"
    _kill_when(killed / cache / "case000.npz",
               "autoseg.preprocessing.dataset:preprocess_and_save", "plan_main",
               [*args, "--home", str(home)])  # fmt: skip
    first = (killed / cache / "case000.npz").stat().st_mtime_ns
    assert cli.plan_main([*args, "--home", str(home)]) == 0
    assert (killed / cache / "case000.npz").stat().st_mtime_ns == first
    assert _files(killed / cache) == _files(reference / cache)
    assert (killed / "plans.json").read_bytes() == (reference / "plans.json").read_bytes()


@pytest.mark.slow
def test_train_resumes_after_sigkill(tmp_path: Path) -> None:
    """A killed fold continues from checkpoint_latest.pt: every epoch logged once, then final."""
    workspace = Workspace.under(tmp_path)
    folder = workspace.preprocessed / "TINY"
    (folder / "tiny").mkdir(parents=True)
    lesion_cache(folder / "tiny", cases=5, shape=(12, 24, 28), lesion=5)
    write_training_plans(folder)
    (workspace.raw / "TINY").mkdir(parents=True)
    (workspace.raw / "TINY" / "dataset.json").write_text('{"name": "TINY"}')
    args = ["TINY", "2.5d_unet", "0", "--home", str(tmp_path), "--device", "cpu", "-nw", "0",
            "--epochs", "4", "--skip-validation", "--no-progress"]  # fmt: skip
    fold = workspace.results / "TINY" / "2.5d_unet" / "fold_0"
    slowed = "autoseg.training.callbacks:Checkpointer.after_epoch"
    _kill_when(fold / "checkpoint_latest.pt", slowed, "train_main", args)
    assert not (fold / "checkpoint_final.pt").exists()
    assert cli.train_main([*args, "--continue"]) == 0
    rows = list(csv.DictReader((fold / "training_log.csv").open()))
    assert [row["epoch"] for row in rows] == ["0", "1", "2", "3"]
    assert (fold / "checkpoint_final.pt").is_file()
