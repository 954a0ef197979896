"""Gap 3: killed parents leave no orphans: pool workers exit when their parent dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import write_tiny_dataset
from tests.data.convert_helpers import atlas_flat
from tests.reliability.helpers import alive, child_pids, repo_env
from tests.reliability.slow_workers import MARKER_DIR

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
WORKERS = 2
START_SECONDS = 60  # a cold interpreter importing torch on a busy 2-core machine
GONE_SECONDS = 5


def _start(tmp_path: Path, target: str, command: str, args: list[str]) -> subprocess.Popen:
    markers = tmp_path / "markers"
    markers.mkdir()
    env = {**repo_env(), MARKER_DIR: str(markers)}
    argv = [sys.executable, "-m", "tests.reliability.slow_workers", target, command, *args]
    return subprocess.Popen(argv, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)  # fmt: skip


def _busy_workers(process: subprocess.Popen, markers: Path) -> list[int]:
    """Wait until WORKERS pool workers have started a task; their pids."""
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        busy = [int(p.name) for p in markers.iterdir()]
        if len(busy) >= WORKERS:
            return busy
        if process.poll() is not None:
            pytest.fail(f"exited {process.returncode}: {process.stderr.read().decode()[-2000:]}")
        time.sleep(0.1)
    pytest.fail("the pool workers never started")


def _kill_and_watch(process: subprocess.Popen, markers: Path) -> list[int]:
    """SIGKILL the parent once its workers are busy; the processes still alive after."""
    busy = _busy_workers(process, markers)
    children = set(child_pids(process.pid)) | set(busy)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    deadline = time.monotonic() + GONE_SECONDS
    while time.monotonic() < deadline and any(alive(pid) for pid in children):
        time.sleep(0.1)
    left = [pid for pid in children if alive(pid)]
    for pid in left:  # do not leave them to the next test
        os.kill(pid, signal.SIGKILL)
    return left


def _home(tmp_path: Path) -> list[str]:
    return ["--home", str(tmp_path), "-np", str(WORKERS)]


def test_verify_workers_die_with_a_killed_parent(tmp_path: Path) -> None:
    write_tiny_dataset(tmp_path / "raw" / "Tiny", cases=4)
    args = ["-d", "Tiny", "--no-progress", *_home(tmp_path)]
    process = _start(tmp_path, "autoseg.data.verify:check_case", "verify_main", args)
    assert _kill_and_watch(process, tmp_path / "markers") == []


def test_convert_workers_die_with_a_killed_parent(tmp_path: Path) -> None:
    atlas_flat(tmp_path / "src", ["r001s001", "r001s002", "r001s003", "r001s004"])
    args = ["atlas", str(tmp_path / "src"), "-d", "A", *_home(tmp_path)]
    target = "autoseg.data.convert.writing:_convert_case_named"
    process = _start(tmp_path, target, "convert_main", args)
    assert _kill_and_watch(process, tmp_path / "markers") == []
    assert not (tmp_path / "raw" / "A" / "dataset.json").exists()


def test_plan_preprocessing_workers_die_with_a_killed_parent(tmp_path: Path) -> None:
    """The preprocessing pool spawns (not forks) its workers: the guard holds there too."""
    write_tiny_dataset(tmp_path / "raw" / "Tiny", cases=4)
    args = ["-d", "Tiny", "--no-progress", "-c", "3d_hybrid", *_home(tmp_path)]
    target = "autoseg.preprocessing.dataset:preprocess_and_save"
    process = _start(tmp_path, target, "plan_main", args)
    assert _kill_and_watch(process, tmp_path / "markers") == []
    assert (tmp_path / "preprocessed" / "Tiny" / "plans.json").is_file()  # earlier work kept


def _pid() -> int:
    return os.getpid()


def test_pool_workers_run_the_death_guard() -> None:
    from autoseg.core.resources import worker_pool

    with worker_pool(1) as pool:
        worker = pool.submit(_pid).result()
    assert worker != os.getpid()
