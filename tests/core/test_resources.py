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
