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
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing.context import BaseContext
from pathlib import Path
from typing import Any

# A Python worker with numpy/scipy/nibabel imported, before it holds any volume.
WORKER_BASE_BYTES = 300 * 1024**2


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS says)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def available_cores() -> int:
    """Cores this process can keep busy: its affinity, capped by a cgroup CPU quota.

    Containers and SLURM often grant a quota (``cpu.max``, ``cpu.cfs_quota_us``) on a host
    whose cores all stay in the affinity mask; counting those cores starts more busy
    threads than the quota runs, and the kernel throttles the whole group for the rest of
    each period. A fractional quota rounds down (1.5 CPUs: one thread), never below one.
    """
    limit = cgroup_cpu_limit()
    cores = usable_cores()
    return cores if limit is None else max(1, min(cores, math.floor(limit)))


PROC_STAT = Path("/proc/stat")
FIRST_READING_S = 0.2  # the first probe has no earlier reading: wait this long for one


class BusyElsewhere:
    """Cores that other processes kept busy on this process's CPUs since the last call.

    Two CPU-heavy processes that each run a full OpenMP pool on 2 cores spin at every
    barrier for threads the scheduler has given to the neighbour: measured with torch
    2.13, a prediction beside a 2-thread matmul took 10-14x its time alone, and with one
    thread fewer 2x. So the caller asks, case by case or epoch by epoch, how much of its
    cores the neighbours used meanwhile and yields that much. The reading covers the CPUs
    in this process's affinity mask (``/proc/stat`` per-CPU lines) less the CPU time of this
    process and, with ``children``, of its child processes (the training loader's workers,
    which the caller reserves cores for already; any other child, such as a second job
    started from the same script, counts as a neighbour); without ``/proc/stat`` it
    reports 0.
    """

    def __init__(self, stat: Path = PROC_STAT, children: bool = False) -> None:
        self._stat, self._children = stat, children
        self._last: _Reading | None = None

    def cores(self) -> float:
        """Mean cores busy with other processes since the previous call (0.0 if unknown)."""
        now = self._reading()
        if now is None:
            return 0.0
        if self._last is None:
            self._last = now
            time.sleep(FIRST_READING_S)
            now = self._reading() or now
        before, self._last = self._last, now
        wall = now.wall_s - before.wall_s
        if wall <= 0:
            return 0.0
        own = now.own_s - before.own_s
        own += sum(t - before.children_s.get(pid, 0.0) for pid, t in now.children_s.items())
        return max(0.0, now.busy_s - before.busy_s - own) / wall

    def _reading(self) -> _Reading | None:
        busy = busy_cpu_seconds(self._stat, usable_cpu_ids())
        if busy is None:
            return None
        children = child_cpu_seconds() if self._children else {}
        return _Reading(time.monotonic(), busy, time.process_time(), children)


@dataclass(frozen=True)
class _Reading:
    wall_s: float
    busy_s: float
    own_s: float
    children_s: dict[int, float]


def child_cpu_seconds(proc: Path = Path("/proc")) -> dict[int, float]:
    """CPU seconds (user + system) of each live child of this process, by pid."""
    me, hertz, seconds = os.getpid(), os.sysconf("SC_CLK_TCK"), {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile, or not ours to read
        if int(fields[1]) == me:  # fields after the name: state, ppid, ... utime(11) stime(12)
            seconds[int(entry.name)] = (int(fields[11]) + int(fields[12])) / hertz
    return seconds


def usable_cpu_ids() -> set[int]:
    """The CPU numbers this process may run on (all of them where the OS does not say)."""
    try:
        return set(os.sched_getaffinity(0))
    except AttributeError:
        return set(range(os.cpu_count() or 1))


def busy_cpu_seconds(stat: Path, cpus: set[int]) -> float | None:
    """Seconds the given CPUs spent on anything but idle and I/O wait since boot.

    Args:
        stat: a ``/proc/stat`` file (per-CPU lines ``cpuN user nice system idle iowait ...``,
            in clock ticks).
        cpus: the CPU numbers to add up.

    Returns:
        Busy seconds, or None where the file cannot be read.
    """
    try:
        lines = stat.read_text().splitlines()
    except OSError:
        return None
    ticks = 0
    for line in lines:
        name, *fields = line.split()
        if not (name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus):
            continue
        values = [int(v) for v in fields]
        ticks += sum(values[:8]) - values[3] - values[4]  # guest time is inside user
    return ticks / os.sysconf("SC_CLK_TCK")


CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")
V1_CPU_FOLDERS = ("cpu", "cpu,cpuacct", "cpuacct,cpu")


def cgroup_cpu_limit(root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> float | None:
    """CPUs the quota of this process's cgroup (or of any cgroup above it) allows, or None.

    Args:
        root: where the cgroup file systems are mounted.
        proc_cgroup: the ``id:controllers:path`` lines naming this process's cgroups.
    """
    limits = [q for folder in _cgroup_folders(root, proc_cgroup) if (q := _quota(folder))]
    return min(limits) if limits else None


def _cgroup_folders(root: Path, proc_cgroup: Path) -> list[Path]:
    """This process's cgroup folders and their ancestors, v2 and v1 (cpu controller)."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return []
    mounts = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        relative = Path(path.lstrip("/"))
        if controllers == "":
            mounts += [root / relative, root / "unified" / relative]
        elif "cpu" in controllers.split(","):
            mounts += [root / folder / relative for folder in V1_CPU_FOLDERS]
    folders = []
    for mount in mounts:  # a namespaced container sees its own cgroup as the mount's root
        folders += [mount, *mount.parents]
    return [f for f in dict.fromkeys(folders) if f.is_relative_to(root) and f.is_dir()]


def _quota(folder: Path) -> float | None:
    """The CPU quota of one cgroup folder, in CPUs (None: no file or no limit)."""
    try:
        if (folder / "cpu.max").is_file():
            return parse_cpu_max((folder / "cpu.max").read_text())
        if (folder / "cpu.cfs_quota_us").is_file():
            quota = (folder / "cpu.cfs_quota_us").read_text()
            return parse_cfs_quota(quota, (folder / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return None


def parse_cpu_max(text: str) -> float | None:
    """cgroup v2 ``cpu.max`` (``"$MAX $PERIOD"``, ``max`` for no limit) -> CPUs or None."""
    fields = text.split()
    if not fields or fields[0] == "max":
        return None
    period = float(fields[1]) if len(fields) > 1 else 100_000.0
    return float(fields[0]) / period if period > 0 else None


def parse_cfs_quota(quota_text: str, period_text: str) -> float | None:
    """cgroup v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` -> CPUs or None (-1: none)."""
    quota, period = float(quota_text.strip()), float(period_text.strip())
    return quota / period if quota > 0 and period > 0 else None


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
    bounds = [available_cores(), by_memory] + [b for b in (jobs, cap) if b is not None]
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
