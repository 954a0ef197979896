"""The CPU side of torch: the denormal guard and the intra-op thread count.

Both are per-process CPU settings every stage that computes with torch needs (training,
inference, the benchmark), so they live on the ground floor rather than with the networks.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from autoseg.core.resources import available_cores


@contextlib.contextmanager
def flushed_denormals(device: torch.device | str) -> Iterator[None]:
    """Treat subnormal floats as zero while torch computes on the CPU, then restore.

    With SGD momentum, weights and activations drift into the subnormal range, where x86
    arithmetic is an order of magnitude slower: measured here, a 1.3 s training step
    became 5-17 s. Flushing changes only values below float32's normal range (~1e-38).
    The mode is a CPU flag of each thread (MXCSR), so it is set in every intra-op thread
    (:func:`set_flush_denormal_everywhere`) and switched off again afterwards: scipy's
    cKDTree (surface distances in evaluation) crashes with it on.
    """
    if torch.device(device).type != "cpu":
        yield
        return
    set_flush_denormal_everywhere(True)
    try:
        yield
    finally:
        set_flush_denormal_everywhere(False)


def set_flush_denormal_everywhere(enabled: bool) -> bool:
    """Set torch's denormal flush in this thread and in every thread of its OpenMP pool.

    ``torch.set_flush_denormal`` sets FTZ/DAZ in the calling thread only. Pool threads
    copy the flag when they are created, but torch creates them at its first parallel op,
    long before a training step: measured with torch 2.13 and two threads, ``x * 1.0`` on
    a tensor of 1e-39 came out zero in the main thread's half and subnormal in the
    worker's half, so every parallel region waited on the slow thread. Here an OpenMP
    parallel region of the pool's size runs the flush in each of its threads.

    Returns:
        Whether the pool threads were reached (False: no OpenMP runtime found, or torch
        runs single-threaded, where the calling thread is all there is).
    """
    torch.set_flush_denormal(enabled)
    threads = torch.get_num_threads()
    runtime = _openmp_runtime()
    if runtime is None or threads < 2:
        return False
    callback = _THREAD_CALLBACK(lambda _data: torch.set_flush_denormal(enabled))
    runtime.GOMP_parallel(callback, None, threads, 0)
    return True


_THREAD_CALLBACK = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
_OPENMP_NAMES = re.compile(r"lib(gomp|iomp5|omp)[-.\w]*\.(so|dylib)")


@functools.cache
def _openmp_runtime() -> ctypes.CDLL | None:
    """The OpenMP runtime torch already loaded (GNU, Intel or LLVM: all export the GNU
    ``GOMP_parallel`` entry), found among the process's mapped files; None elsewhere."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if _OPENMP_NAMES.search(line)}
    except OSError:
        return None
    torch_lib = os.path.dirname(torch.__file__)
    for path in sorted(paths, key=lambda p: (not p.startswith(torch_lib), p)):  # torch's own first
        try:
            runtime = ctypes.CDLL(path)
            parallel = runtime.GOMP_parallel
        except (OSError, AttributeError):
            continue
        parallel.argtypes = [_THREAD_CALLBACK, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
        parallel.restype = None
        return runtime
    return None


@dataclass
class _ThreadCeiling:
    """The pool size before autoseg lowered it, so a later call may raise it again."""

    ceiling: int = 0
    set_by_autoseg: int = 0


_POOL = _ThreadCeiling()


def cpu_threads(reserve: int = 0, busy_elsewhere: float = 0.0) -> int:
    """Fit torch's intra-op threads to the cores this process may use and finds free.

    torch sizes its pool from the machine's cores; under a cgroup quota (containers, SLURM),
    beside loader workers or beside another CPU-heavy process it then runs more busy threads
    than cores, and every parallel region spins waiting for the thread the scheduler put
    aside. The count never exceeds what torch had before autoseg first changed it (an
    explicit ``OMP_NUM_THREADS`` or ``torch.set_num_threads`` stays the ceiling) and comes
    back up to it when the neighbours go quiet.

    Args:
        reserve: cores kept for other busy processes of this job (the training loader's
            workers); the network keeps at least one thread.
        busy_elsewhere: cores other processes keep busy now
            (:class:`autoseg.core.resources.BusyElsewhere`); rounded, as many are yielded.

    Returns:
        The thread count now in force.
    """
    current = torch.get_num_threads()
    if current != _POOL.set_by_autoseg:  # first call, or the count was set by someone else
        _POOL.ceiling = current
    free = available_cores() - max(0, reserve) - math.floor(max(0.0, busy_elsewhere) + 0.5)
    threads = max(1, min(_POOL.ceiling, free))
    if threads != current:
        torch.set_num_threads(threads)
    _POOL.set_by_autoseg = threads
    return threads


def cpu_has_amx() -> bool:
    """Whether this CPU has AMX tiles, the only CPU bf16 measured faster than float32."""
    return bool(getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)())
