"""What this machine can give a pool of workers: cores and memory.

Every parallel step (conversion, verification, fingerprint, preprocessing, evaluation,
the training loader) sizes its default worker count here, from the memory one worker needs,
so a 2-core laptop and a 64-core node both get a count that neither thrashes nor swaps.
"""

from __future__ import annotations

import os

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
