"""Peak training memory (bytes) and compute (FLOPs) of a network, without a GPU.

The network is built on the ``meta`` device (shapes only, no storage) and one training
step is traced: a forward pass, a Dice+CE-like loss on every output, and the backward.
Every tensor autograd saves for the backward is recorded through
``torch.autograd.graph.saved_tensors_hooks`` (deduplicated by storage, parameters
excluded): what a real step keeps alive when the backward starts. The backward frees
them as it goes while it allocates gradients, so whether it rises above that level
depends on the order: a U-Net's full-resolution decoder gradients come first, beside
every saved tensor; the 3D slice encoder of 2d_lcnn comes last, after most of them are
freed. So the step runs under a dispatch mode that follows every storage from
allocation to release, and the peak's rise above the backward's start (gradients,
recomputation under checkpointing) is the workspace.

FLOPs are counted on convolutions and linear layers by forward hooks (forward x 3 for
forward + backward); ``torch.utils.flop_counter`` gives the same figures within ~10 %
but makes the trace several times slower. AMP is emulated by a function mode that casts
like CUDA autocast does (matmul-like ops in float16, layer/group norm and softmax in
float32). Activation checkpointing is traced as the network implements it (its
``checkpointing`` keyword). Saved tensors are per sample, so each (network, patch, amp,
checkpointing) is traced once at batch 1 and cached; batches scale linearly.
"""

from __future__ import annotations

import contextlib
import json
import math
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

GB = 1024**3
# Allocator slack on top of the traced tensors: rounding to block sizes and cuDNN /
# oneDNN scratch space, which the meta device does not allocate.
WORKSPACE_FRACTION = 0.05
WORKSPACE_FIXED_BYTES = 64 * 1024**2

LOW_PRECISION_OPS = {
    F.conv1d, F.conv2d, F.conv3d, F.conv_transpose1d, F.conv_transpose2d,
    F.conv_transpose3d, F.linear, torch.matmul, torch.bmm, torch.baddbmm, torch.addmm,
    F.scaled_dot_product_attention, torch.Tensor.matmul, torch.Tensor.__matmul__, torch.einsum,
}  # fmt: skip
# CUDA autocast runs layer/group norm and softmax in float32; instance and batch norm
# keep float16 inputs (their statistics are float32 internally).
FULL_PRECISION_OPS = {
    torch.layer_norm, torch.group_norm, F.layer_norm, F.group_norm, torch.softmax,
    torch.log_softmax, torch.Tensor.softmax, torch.Tensor.log_softmax, F.softmax, F.log_softmax,
}  # fmt: skip


@dataclass(frozen=True)
class MemoryEstimate:
    """Peak training memory of one (network, patch, batch) in bytes, by kind.

    Attributes:
        activations: tensors saved for the backward pass, outputs and loss terms.
        weights: parameters (float32 master copy).
        gradients: parameter gradients.
        optimizer_state: SGD momentum buffers.
        workspace: what the backward allocates above the saved tensors at its peak
            (gradients, recomputed activations), plus allocator slack.
        gflops: forward + backward GFLOPs of one iteration (for CPU time budgets).
        outputs: logits tensors the network returns (deep-supervision scales).
    """

    activations: int
    weights: int
    gradients: int
    optimizer_state: int
    workspace: int
    gflops: float = 0.0
    outputs: int = 1

    @property
    def total(self) -> int:
        return (
            self.activations + self.weights + self.gradients + self.optimizer_state + self.workspace
        )

    @property
    def total_gb(self) -> float:
        return self.total / GB

    def to_json(self) -> dict[str, float]:
        """Parts in GiB (rounded by the plans writer)."""
        parts = ("activations", "weights", "gradients", "optimizer_state", "workspace")
        return {f"{p}_gb": getattr(self, p) / GB for p in parts} | {"total_gb": self.total_gb}


@dataclass(frozen=True)
class _Trace:
    """One sample's step: saved tensors, the peak's rise above them, parameters, FLOPs."""

    saved_bytes: int
    backward_bytes: int
    parameters: int
    flops: int
    outputs: int = 1


class _AutocastEmulation(TorchFunctionMode):
    """Cast like CUDA autocast (float16) on tensors of any device, the meta device included."""

    def __torch_function__(self, func: Callable, types: Any, args: tuple = (), kwargs: Any = None):
        kwargs = kwargs or {}
        if func in LOW_PRECISION_OPS:
            args, kwargs = _cast((args, kwargs), torch.float32, torch.float16)
        elif func in FULL_PRECISION_OPS:
            args, kwargs = _cast((args, kwargs), torch.float16, torch.float32)
        try:
            return func(*args, **kwargs)
        except RuntimeError:  # mixed dtypes autocast would have promoted: run in float32
            args, kwargs = _cast((args, kwargs), torch.float16, torch.float32)
            return func(*args, **kwargs)


def _cast(tree: Any, source: torch.dtype, target: torch.dtype) -> Any:
    if isinstance(tree, torch.Tensor):
        return tree.to(target) if tree.dtype == source else tree
    if isinstance(tree, list | tuple):
        return type(tree)(_cast(item, source, target) for item in tree)
    if isinstance(tree, dict):
        return {key: _cast(value, source, target) for key, value in tree.items()}
    return tree


def _proxy_loss(outputs: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    """Keeps what Dice + cross-entropy keep: a softmax and a log-softmax per output."""
    outputs = [outputs] if isinstance(outputs, torch.Tensor) else list(outputs)
    total = outputs[0].new_zeros((), dtype=torch.float32)
    for logits in outputs:
        logits = logits.float()
        total = total + torch.log_softmax(logits, 1).mean() + torch.softmax(logits, 1).mean()
    return total


def _default_builder(spec: dict[str, Any]) -> nn.Module:
    from autoseg.networks import build_network

    return build_network(spec)


def _module_flops(module: nn.Module, inputs: tuple, output: Any) -> int:
    """Forward FLOPs (2 per multiply-add) of a convolution or linear layer."""
    if not isinstance(output, torch.Tensor):
        return 0
    if isinstance(module, nn.Linear):
        return 2 * output.numel() * module.in_features
    if isinstance(module, nn.modules.conv._ConvNd):
        kernel = math.prod(module.kernel_size)
        if module.transposed:  # each input voxel spreads over the kernel
            return 2 * inputs[0].numel() * module.out_channels // module.groups * kernel
        return 2 * output.numel() * module.in_channels // module.groups * kernel
    return 0


def _is_tensor(value: Any) -> bool:
    return isinstance(value, torch.Tensor)


def _storage_key(tensor: torch.Tensor) -> int:
    return tensor.untyped_storage()._cdata


class _LiveStorages(TorchDispatchMode):
    """Follows every storage an op creates from allocation to release, in order.

    Only storages an op allocates count: a view or in-place result shares its argument's
    storage, so parameters and the input, made outside the mode, stay unseen even when
    the backward detaches them to unpack a saved weight. Each storage gets a serial, so
    a freed address that a later storage reuses is not mistaken for it.
    """

    def __init__(self) -> None:
        super().__init__()
        self._live: dict[int, tuple[int, int]] = {}  # storage address -> (serial, bytes)
        self.events: list[tuple[int, int]] = []  # (serial, +bytes allocated / -bytes freed)

    def __torch_dispatch__(self, func: Callable, types: Any, args: tuple = (), kwargs: Any = None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        arguments = {_storage_key(t) for t in tree_leaves((args, kwargs)) if _is_tensor(t)}
        for leaf in tree_leaves(out):
            if _is_tensor(leaf) and _storage_key(leaf) not in arguments:
                self._follow(leaf.untyped_storage())
        return out

    def adopt(self, tensor: torch.Tensor) -> None:
        """Follow a storage made before the mode was entered (a saved activation)."""
        self._follow(tensor.untyped_storage())

    def _follow(self, storage: torch.UntypedStorage) -> None:
        key = storage._cdata
        if key in self._live:
            return
        entry = (len(self.events), storage.nbytes())
        self._live[key] = entry
        self.events.append(entry)
        weakref.finalize(storage, self._free, key, entry).atexit = False

    def _free(self, key: int, entry: tuple[int, int]) -> None:
        if self._live.get(key) == entry:
            del self._live[key]
        self.events.append((entry[0], -entry[1]))

    def serial(self, tensor: torch.Tensor) -> int | None:
        """Serial of the live storage under ``tensor``; None if it was made outside."""
        entry = self._live.get(_storage_key(tensor))
        return None if entry is None else entry[0]

    def peak_above(self, start: int, ignore: set[int]) -> int:
        """Peak live bytes of the run above those live before event ``start``.

        Storages whose serial is in ``ignore`` are left out.
        """
        live = peak = 0
        base = None
        for index, (serial, nbytes) in enumerate(self.events):
            if index == start:
                base = live
            if serial not in ignore:
                live += nbytes
            peak = max(peak, live)
        return max(0, peak - (live if base is None else base))


def _backward(loss: torch.Tensor) -> None:
    """``loss.backward()`` straight into the autograd engine.

    ``Tensor.backward`` hands itself to the active function mode, which runs it with the
    mode popped; the autocast emulation must stay active so that checkpointed regions
    recompute in the dtypes of their forward.
    """
    engine = torch.autograd.Variable._execution_engine
    engine.run_backward((loss,), (torch.ones_like(loss),), False, False, (), True, True)


def _traced_forward(
    model: nn.Module, x: torch.Tensor, follow: Callable[[torch.Tensor], None]
) -> tuple[list[torch.Tensor], torch.Tensor, int, int]:
    """Forward + loss: outputs, loss, bytes saved for the backward, forward FLOPs.

    Saved bytes count distinct storages, parameters excluded, outputs included (a
    trainer keeps them); each is handed to ``follow`` so its release in the backward is
    seen. FLOPs are counted on convolutions and linear layers (attention products at the
    bottleneck are negligible beside them).
    """
    param_storages = {_storage_key(p) for p in model.parameters()}
    saved: dict[int, torch.Tensor] = {}
    flops = [0]

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        if _storage_key(tensor) not in param_storages:
            saved[_storage_key(tensor)] = tensor  # holding it keeps the address unique
        return tensor

    def count(module: nn.Module, inputs: tuple, output: Any) -> None:
        flops[0] += _module_flops(module, inputs, output)

    handle = nn.modules.module.register_module_forward_hook(count)
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            outputs = model(x)
            loss = _proxy_loss(outputs)
    finally:
        handle.remove()
    outputs = [outputs] if isinstance(outputs, torch.Tensor) else list(outputs)
    for out in outputs:
        saved.setdefault(_storage_key(out), out)
    saved_bytes = sum(t.untyped_storage().nbytes() for t in saved.values())
    for tensor in saved.values():
        follow(tensor)
    saved.clear()  # every saved variable keeps ``pack``, and with it this dict, alive
    return outputs, loss, saved_bytes, flops[0]


def _trace_step(model: nn.Module, x: torch.Tensor, amp: bool) -> _Trace:
    """Forward + loss + backward on meta tensors: saved tensors and the backward's rise.

    Only autograd and the outputs hold the saved tensors when the backward starts, so it
    frees them as a real one does. Parameter gradients are left out of the rise (counted
    apart). The backward costs about twice the forward's FLOPs.
    """
    tracker = _LiveStorages()
    # The emulation stays on through the backward: checkpointed regions recompute there.
    autocast = _AutocastEmulation() if amp else contextlib.nullcontext()
    with autocast:
        # Only the saved tensors matter before the backward, so the forward runs without
        # the (per-op, Python) dispatch mode: half the tracing time.
        outputs, loss, saved_bytes, flops = _traced_forward(model, x, tracker.adopt)
        backward_start = len(tracker.events)
        with tracker:
            _backward(loss)
    gradients = {tracker.serial(p.grad) for p in model.parameters() if p.grad is not None}
    rise = tracker.peak_above(backward_start, gradients - {None})
    parameters = sum(p.numel() for p in model.parameters())
    return _Trace(saved_bytes, rise, parameters, 3 * flops, len(outputs))


@lru_cache(maxsize=4096)
def _cached_trace(spec_json: str, patch: tuple[int, ...], amp: bool) -> _Trace:
    """Trace one sample (every saved tensor is per sample, so batches scale linearly)."""
    spec = json.loads(spec_json)
    with torch.device("meta"):
        model = _BUILDER[0](spec)
    model.train()
    channels = int(spec["kwargs"]["in_channels"])
    x = torch.empty((1, channels, *patch), device="meta")
    return _trace_step(model, x, amp)


_BUILDER: list[Callable[[dict[str, Any]], nn.Module]] = [_default_builder]


def set_network_builder(builder: Callable[[dict[str, Any]], nn.Module] | None) -> None:
    """Replace the network factory (tests use toy networks); None restores build_network."""
    _BUILDER[0] = builder or _default_builder
    _cached_trace.cache_clear()
    _parameter_count.cache_clear()


def network_spec_json(spec: dict[str, Any], checkpointing: bool) -> str:
    """Canonical JSON of a network spec with the checkpointing switch applied (cache key)."""
    kwargs = dict(spec.get("kwargs", {}))
    if checkpointing:
        kwargs["checkpointing"] = True
    return json.dumps({"name": spec["name"], "kwargs": kwargs}, sort_keys=True)


def estimate_training_memory(
    network_spec: dict[str, Any],
    patch_size: Sequence[int],
    batch_size: int,
    amp: bool,
    checkpointing: bool,
) -> MemoryEstimate:
    """Peak memory of one SGD-momentum training iteration.

    Args:
        network_spec: ``{"name", "kwargs"}`` as in plans.json (kwargs hold in_channels).
        patch_size: spatial input size (``(Z, Y, X)`` in 3D, ``(Y, X)`` in 2D).
        batch_size: samples per iteration.
        amp: mixed precision (float16 activations where autocast would use them).
        checkpointing: activation checkpointing (the network's ``checkpointing`` kwarg).

    Returns:
        A :class:`MemoryEstimate` in bytes, with the iteration's GFLOPs.
    """
    patch = tuple(int(v) for v in patch_size)
    trace = _cached_trace(network_spec_json(network_spec, checkpointing), patch, amp)
    activations = trace.saved_bytes * batch_size
    weights = trace.parameters * 4
    workspace = trace.backward_bytes * batch_size
    workspace += int(WORKSPACE_FRACTION * activations) + WORKSPACE_FIXED_BYTES
    return MemoryEstimate(
        activations=int(activations),
        weights=weights,
        gradients=weights,
        optimizer_state=weights,
        workspace=int(workspace),
        gflops=trace.flops * batch_size / 1e9,
        outputs=trace.outputs,
    )


def parameter_count(network_spec: dict[str, Any]) -> int:
    """Parameters of a network spec (built on the meta device, so instant)."""
    key = network_spec_json(network_spec, checkpointing=False)
    return _parameter_count(key)


@lru_cache(maxsize=1024)
def _parameter_count(spec_json: str) -> int:
    with torch.device("meta"):
        model = _BUILDER[0](json.loads(spec_json))
    return sum(p.numel() for p in model.parameters())
