"""The CPU guards of every network: denormal flush in all intra-op threads, thread caps."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from autoseg.networks import base

SUBNORMAL = 1e-39  # below float32's smallest normal (1.2e-38), above its smallest subnormal


@pytest.fixture
def two_threads() -> Iterator[None]:
    """Two intra-op threads whose pool already exists (as in any run past its first op)."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    (torch.ones(1 << 20) * 2).sum()  # a parallel op creates the worker thread
    yield
    torch.set_num_threads(before)


def _times_one(values: torch.Tensor) -> torch.Tensor:
    """An elementwise op split across both threads (far above torch's grain size)."""
    return values * 1.0


def test_flush_reaches_the_worker_threads_and_is_undone(two_threads: None) -> None:
    x = torch.full((1 << 20,), SUBNORMAL)
    with base.flushed_denormals("cpu"):
        flushed = _times_one(x)
    restored = _times_one(x)
    # torch.set_flush_denormal alone zeroes only the calling thread's half
    assert [bool((half == 0).all()) for half in flushed.chunk(2)] == [True, True]
    assert bool((restored == SUBNORMAL).all())


def test_flush_everywhere_reports_reaching_the_pool(two_threads: None) -> None:
    try:
        assert base.set_flush_denormal_everywhere(True)
    finally:
        base.set_flush_denormal_everywhere(False)
    assert bool((_times_one(torch.full((1 << 20,), SUBNORMAL)) != 0).all())


def test_cpu_threads_only_lowers_the_count(monkeypatch: pytest.MonkeyPatch) -> None:
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        monkeypatch.setattr(base, "available_cores", lambda: 4)
        assert base.cpu_threads() == 2  # never raised past what was asked
        assert base.cpu_threads(reserve=3) == 1
        assert torch.get_num_threads() == 1
        torch.set_num_threads(4)
        assert base.cpu_threads(reserve=10) == 1  # the network keeps one thread
    finally:
        torch.set_num_threads(before)


def test_cpu_threads_yields_to_busy_neighbours_and_comes_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(3)
        monkeypatch.setattr(base, "available_cores", lambda: 4)
        assert base.cpu_threads(busy_elsewhere=0.4) == 3  # a shell's worth is ignored
        assert base.cpu_threads(busy_elsewhere=1.6) == 2  # 4 cores less 2 busy elsewhere
        assert base.cpu_threads(busy_elsewhere=3.7) == 1
        assert base.cpu_threads(busy_elsewhere=0.0) == 3  # back up to the ceiling, not 4
        torch.set_num_threads(2)  # someone else sets the count: that is the new ceiling
        assert base.cpu_threads(busy_elsewhere=0.0) == 2
    finally:
        torch.set_num_threads(before)
