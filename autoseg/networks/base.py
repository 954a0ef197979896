"""What every autoseg network offers beyond ``nn.Module``.

Output contract (all networks): in training mode ``forward`` returns a list of logits,
full resolution first, then each coarser deep-supervision scale (a one-element list
without deep supervision); in eval mode it returns the full-resolution logits tensor
``(B, num_classes, *patch)`` only, so sliding-window inference and ONNX export see one
tensor. Networks with an auxiliary training loss (the LCNN) expose ``auxiliary_loss()``,
valid after a training-mode forward.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import math
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call

from autoseg.data.errors import InvalidInputError
from autoseg.data.resources import available_cores


@dataclass(frozen=True)
class FeatureMap:
    """One activation a training step keeps: module name, kind, shape without batch."""

    name: str
    kind: str
    shape: tuple[int, ...]

    @property
    def elements(self) -> int:
        return math.prod(self.shape)


@contextlib.contextmanager
def seeded(seed: int | None) -> Iterator[None]:
    """Draw from a private generator seeded with ``seed`` (global RNG untouched)."""
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def init_conv_weights(module: nn.Module) -> None:
    """Kaiming-normal convolutions (slope of the leaky ReLU), zero biases."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.Conv3d | nn.ConvTranspose2d | nn.ConvTranspose3d):
            nn.init.kaiming_normal_(m.weight, a=1e-2)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def check_divisible(shape: Sequence[int], divisors: Sequence[int], axes: str, network: str) -> None:
    """Raise InvalidInputError when a spatial size is not a multiple of its pooling factor."""
    problems = [
        f"{network}: input size {size} along {axis} is not divisible by {d} "
        f"(the product of the strides on that axis); pad or choose another patch size"
        for size, d, axis in zip(shape, divisors, axes, strict=True)
        if size % d
    ]
    if problems:
        raise InvalidInputError(problems)


def tracing() -> bool:
    """True while exporting or tracing, when Python-side shape checks must stay silent."""
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()


class SegmentationNetwork(nn.Module):
    """Base class: parameter count, feature-map shapes for the memory model, shape checks.

    Subclasses set ``self.dim``, ``self.in_channels`` and ``self.divisors`` (the factor
    each spatial axis must be a multiple of).
    """

    dim: int
    in_channels: int
    divisors: tuple[int, ...]

    def parameter_count(self, trainable_only: bool = False) -> int:
        """Number of parameters (all, or only those with ``requires_grad``)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def check_input(self, x: torch.Tensor) -> None:
        """Fail with a clear message on a wrong channel count or indivisible size."""
        if tracing():
            return
        name = type(self).__name__
        if x.dim() != self.dim + 2 or x.shape[1] != self.in_channels:
            raise InvalidInputError(
                f"{name}: expected input (B, {self.in_channels}, {self.dim} spatial axes), "
                f"got {tuple(x.shape)}"
            )
        check_divisible(x.shape[2:], self.divisors, "ZYX"[-self.dim :], name)

    def feature_maps(self, patch_size: Sequence[int], batch_size: int = 1) -> list[FeatureMap]:
        """Every module output of one training-mode forward at ``patch_size``.

        Runs on the meta device (no memory, no compute), so a planner can size a
        22 M-parameter network for a large patch in milliseconds. In-place activations
        are left out (they reuse their input's memory). Attention matrices inside
        ``scaled_dot_product_attention`` are not module outputs and are not listed.
        """
        records: list[FeatureMap] = []
        hooks = [
            m.register_forward_hook(_recorder(name, records))
            for name, m in self.named_modules()
            if not list(m.children())
            and not getattr(m, "inplace", False)
            and ".parametrizations." not in name  # weight transforms, not activations
        ]
        state = {k: torch.empty_like(v, device="meta") for k, v in self.state_dict().items()}
        x = torch.empty(batch_size, self.in_channels, *patch_size, device="meta")
        was_training = self.training
        try:
            self.train()
            with torch.no_grad():
                functional_call(self, state, (x,), strict=False)
        finally:
            self.train(was_training)
            for h in hooks:
                h.remove()
        return records

    def feature_map_shapes(self, patch_size: Sequence[int]) -> list[tuple[int, ...]]:
        """Shapes ``(channels, *spatial)`` of the activations of one sample (see feature_maps)."""
        return [r.shape for r in self.feature_maps(patch_size)]


def _recorder(name: str, records: list[FeatureMap]) -> Callable[[nn.Module, tuple, object], None]:
    def hook(module: nn.Module, _inputs: tuple, output: object) -> None:
        if isinstance(output, torch.Tensor):
            records.append(FeatureMap(name, type(module).__name__, tuple(output.shape[1:])))

    return hook


def channels_last(tensor: torch.Tensor) -> torch.Tensor:
    """A 5D ``(B, C, Z, Y, X)`` tensor in channels-last memory order (others unchanged).

    oneDNN's 3D convolutions are much faster channels-last on the CPU: measured here on a
    2-core machine, the backward of an 8-channel 3x3x3 convolution at 40x56x40 took 65 ms
    contiguous and 19 ms channels-last, and a whole 3d_hybrid training step 0.32 s against
    0.20 s with two threads. Values are unchanged; only the strides differ.
    """
    if tensor.ndim != 5:
        return tensor
    return tensor.contiguous(memory_format=torch.channels_last_3d)


def to_channels_last(module: nn.Module) -> nn.Module:
    """Put a module's 5D weights (3D convolutions) channels-last, in place (see
    :func:`channels_last`); a network without 3D convolutions is left as it is."""
    return module.to(memory_format=torch.channels_last_3d)


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
            (:class:`autoseg.data.resources.BusyElsewhere`); rounded, as many are yielded.

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
