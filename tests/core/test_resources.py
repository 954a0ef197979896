"""Default worker counts follow cores, jobs, caps and memory; cgroup CPU quotas are read."""

from __future__ import annotations

from pathlib import Path

import pytest

from autoseg.core import resources


def test_worker_count_is_bounded_by_every_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resources, "available_cores", lambda: 8)
    monkeypatch.setattr(resources, "available_memory_bytes", lambda: 10 * 1024**3)
    gib = 1024**3
    assert resources.default_workers(gib) == 8
    assert resources.default_workers(2 * gib) == 4  # 0.8 * 10 GiB / 2 GiB
    assert resources.default_workers(gib, jobs=3) == 3
    assert resources.default_workers(gib, cap=2) == 2
    assert resources.default_workers(100 * gib) == 1  # never zero


def test_available_memory_is_positive() -> None:
    assert resources.available_memory_bytes() > 0
    assert resources.usable_cores() >= 1
    assert 1 <= resources.available_cores() <= resources.usable_cores()


def _cgroup(tmp_path: Path, lines: str, files: dict[str, str]) -> tuple[Path, Path]:
    """A fake cgroup mount under tmp_path and a /proc/self/cgroup naming it."""
    root = tmp_path / "cgroup"
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    proc = tmp_path / "proc_cgroup"
    proc.write_text(lines)
    return root, proc


def test_cgroup_v2_quota_is_read_and_the_tightest_ancestor_wins(tmp_path: Path) -> None:
    root, proc = _cgroup(
        tmp_path,
        "0::/job.slice/step_0\n",
        {"job.slice/cpu.max": "150000 100000\n", "job.slice/step_0/cpu.max": "max 100000\n"},
    )
    assert resources.cgroup_cpu_limit(root, proc) == pytest.approx(1.5)


def test_cgroup_v1_cfs_quota_is_read(tmp_path: Path) -> None:
    root, proc = _cgroup(
        tmp_path,
        "4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n",
        {
            "cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "300000\n",
            "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n",
            "memory/docker/abc/cpu.cfs_quota_us": "100000\n",  # not the cpu controller
            "memory/docker/abc/cpu.cfs_period_us": "100000\n",
        },
    )
    assert resources.cgroup_cpu_limit(root, proc) == pytest.approx(3.0)


def test_no_quota_means_no_limit(tmp_path: Path) -> None:
    root, proc = _cgroup(
        tmp_path,
        "1:cpu:/\n0::/\n",
        {"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n", "cpu.max": "max"},
    )
    assert resources.cgroup_cpu_limit(root, proc) is None
    assert resources.cgroup_cpu_limit(root, tmp_path / "missing") is None
    assert resources.parse_cpu_max("250000 100000") == pytest.approx(2.5)
    assert resources.parse_cfs_quota("-1", "100000") is None


def test_available_cores_rounds_a_quota_down_but_keeps_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(resources, "usable_cores", lambda: 16)
    for quota, cores in ((None, 16), (2.7, 2), (0.5, 1), (64.0, 16)):
        monkeypatch.setattr(resources, "cgroup_cpu_limit", lambda q=quota: q)
        assert resources.available_cores() == cores


def _stat(path: Path, cpu0: tuple[int, ...], cpu1: tuple[int, ...]) -> Path:
    """A /proc/stat with two CPUs (user nice system idle iowait irq softirq steal, ticks)."""
    total = [a + b for a, b in zip(cpu0, cpu1, strict=True)]
    lines = [f"cpu  {' '.join(map(str, total))} 0 0", f"cpu0 {' '.join(map(str, cpu0))} 0 0",
             f"cpu1 {' '.join(map(str, cpu1))} 0 0", "intr 12345 0 0", "ctxt 999"]  # fmt: skip
    path.write_text("\n".join(lines) + "\n")
    return path


def test_busy_cpu_seconds_counts_the_chosen_cpus_without_idle_or_iowait(
    tmp_path: Path,
) -> None:
    import os

    stat = _stat(tmp_path / "stat", (10, 1, 5, 900, 7, 2, 3, 0), (40, 0, 20, 800, 1, 0, 0, 4))
    hertz = os.sysconf("SC_CLK_TCK")
    assert resources.busy_cpu_seconds(stat, {0}) == pytest.approx(21 / hertz)
    assert resources.busy_cpu_seconds(stat, {0, 1}) == pytest.approx(85 / hertz)
    assert resources.busy_cpu_seconds(tmp_path / "missing", {0}) is None


def test_busy_elsewhere_subtracts_this_process_and_divides_by_wall_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    hertz = os.sysconf("SC_CLK_TCK")
    stat = _stat(tmp_path / "stat", (0,) * 8, (0,) * 8)
    clock = {"wall": 100.0, "own": 5.0}
    monkeypatch.setattr(resources.time, "monotonic", lambda: clock["wall"])
    monkeypatch.setattr(resources.time, "process_time", lambda: clock["own"])
    monkeypatch.setattr(resources.time, "sleep", lambda s: None)  # the clock is ours
    monkeypatch.setattr(resources, "usable_cpu_ids", lambda: {0, 1})
    children = {"seconds": {41: 1.0}}  # a child (a loader worker) already ran 1 s
    monkeypatch.setattr(resources, "child_cpu_seconds", lambda: dict(children["seconds"]))
    probe, with_children = resources.BusyElsewhere(stat), resources.BusyElsewhere(stat, True)
    assert probe.cores() == with_children.cores() == 0.0  # the first reading waits: no change
    # 10 s later: both CPUs busy 10 s each (20 CPU-s), this process used 6, its child 3 more
    _stat(stat, (10 * hertz, 0, 0, 0, 0, 0, 0, 0), (10 * hertz, 0, 0, 0, 0, 0, 0, 0))
    clock.update(wall=clock["wall"] + 10, own=clock["own"] + 6)
    children["seconds"] = {41: 4.0}
    assert probe.cores() == pytest.approx(1.4)  # the child is a neighbour here
    assert with_children.cores() == pytest.approx(1.1)  # and one of the job's own here
    assert resources.BusyElsewhere(tmp_path / "missing").cores() == 0.0
