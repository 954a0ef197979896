"""What this machine can give a pool of workers: cores and memory.

Every parallel step (conversion, verification, fingerprint, preprocessing, evaluation,
the training loader) sizes its default worker count here, from the memory one worker needs,
so a 2-core laptop and a 64-core node both get a count that neither thrashes nor swaps.
Every such pool is made by :func:`worker_pool`, whose workers die with their parent: a
SIGKILLed ``autoseg_plan`` on a cluster node must not leave workers writing on and then
blocking forever on a pipe nobody reads, each holding its memory.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from multiprocessing.context import BaseContext
from typing import Any

# A Python worker with numpy/scipy/nibabel imported, before it holds any volume.
WORKER_BASE_BYTES = 300 * 1024**2


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS says)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def available_memory_bytes() -> int:
    """Memory the system can give without swapping: Linux MemAvailable, else total RAM."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return total_memory_bytes()


def total_memory_bytes() -> int:
    """Physical memory of the machine (what a run can use at most, whatever else runs)."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def default_workers(
    per_worker_bytes: int,
    jobs: int | None = None,
    cap: int | None = None,
    memory_share: float = 0.8,
) -> int:
    """Worker count: at most one per core, per job and ``cap``, and what RAM holds.

    Args:
        per_worker_bytes: peak memory of one worker (volumes it holds plus imports).
        jobs: number of tasks; more workers than tasks would idle.
        cap: an upper bound of the step's own (e.g. disk-bound work gains little past 2).
        memory_share: the share of available memory the pool may use.
    """
    by_memory = int(memory_share * available_memory_bytes() // max(per_worker_bytes, 1))
    bounds = [usable_cores(), by_memory] + [b for b in (jobs, cap) if b is not None]
    return max(1, min(bounds))


PR_SET_PDEATHSIG = 1  # linux/prctl.h
WATCHDOG_SECONDS = 0.5


def worker_pool(
    max_workers: int,
    mp_context: BaseContext | None = None,
    initializer: Callable[..., Any] | None = None,
    initargs: tuple[Any, ...] = (),
) -> ProcessPoolExecutor:
    """A process pool whose workers exit when this process dies, however it dies.

    Args:
        max_workers: worker processes.
        mp_context: multiprocessing context (None: the platform default).
        initializer: the step's own worker initialiser, run after the death guard.
        initargs: its arguments.
    """
    guard_args = (os.getpid(), initializer, initargs)
    return ProcessPoolExecutor(max_workers, mp_context, _init_worker, guard_args)


def _init_worker(
    parent_pid: int, initializer: Callable[..., Any] | None, initargs: tuple[Any, ...]
) -> None:
    die_with_parent(parent_pid)
    if initializer is not None:
        initializer(*initargs)


def die_with_parent(parent_pid: int) -> None:
    """Make this worker exit when its parent dies (SIGKILL included).

    Linux delivers SIGTERM on the parent's death (``PR_SET_PDEATHSIG``; the default action,
    since a forked worker inherits the parent's Python handlers). Linux counts the death of
    the *thread* that started the worker, so a pool must live within the thread that made
    it (every pool here is a ``with`` block). A thread watching the parent id covers other
    systems and the moment before prctl took effect.
    """
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):  # the watchdog still ends it
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM))
    if not _process_exists(parent_pid):
        os._exit(1)
    watched = os.getppid()
    thread = threading.Thread(target=_watch_parent, args=(watched,), daemon=True,
                              name="autoseg-parent-watchdog")  # fmt: skip
    thread.start()


def _watch_parent(parent_pid: int) -> None:
    """Exit once the worker has been handed to another parent (its own has died)."""
    while os.getppid() == parent_pid:
        time.sleep(WATCHDOG_SECONDS)
    os._exit(1)


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
