"""Default worker counts follow cores, jobs, caps and memory."""

from __future__ import annotations

import pytest

from autoseg.data import resources


def test_worker_count_is_bounded_by_every_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resources, "usable_cores", lambda: 8)
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
