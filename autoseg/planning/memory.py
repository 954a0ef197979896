"""Peak training memory (bytes) and compute (FLOPs) of a network, without a GPU.

The network is built on the ``meta`` device (shapes only, no storage) and one training
step is traced: a forward pass and a Dice+CE-like loss on every output. Every tensor
autograd saves for the backward is recorded through
``torch.autograd.graph.saved_tensors_hooks`` (deduplicated by storage, parameters
excluded), which is what a real step keeps alive at its peak: the start of the backward
pass. FLOPs are counted on convolutions and linear layers by forward hooks (forward x 3
for forward + backward); ``torch.utils.flop_counter`` gives the same figures within
~10 % but makes the trace several times slower. AMP is emulated by a function mode that
casts like CUDA autocast does (matmul-like ops in float16, layer/group norm and softmax
in float32). Activation checkpointing is traced as the network implements it (its
``checkpointing`` keyword). Saved tensors are per sample, so each (network, patch, amp,
checkpointing) is traced once at batch 1 and cached; batches scale linearly.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

GB = 1024**3
# Allocator slack on top of the traced tensors: rounding to block sizes, the transient
# output of the op that runs at the peak, and cuDNN / oneDNN scratch space.
WORKSPACE_FRACTION = 0.05
WORKSPACE_FIXED_BYTES = 64 * 1024**2
# Gradient buffers alive together at the start of the backward pass, in multiples of
# the largest saved activation (the incoming gradient and the one being produced).
GRADIENT_BUFFERS = 2
RECOMPUTE_FRACTION = 0.35

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
        workspace: gradient buffers at the backward's start plus allocator slack.
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
    saved_bytes: int
    largest_bytes: int
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


def _trace_step(model: nn.Module, x: torch.Tensor, amp: bool) -> _Trace:
    """Forward + loss on meta tensors, recording the tensors saved for backward.

    Every tensor the backward needs is saved during the forward, so no backward is run
    (it would double the planning time). FLOPs are counted on convolutions and linear
    layers (attention products at the bottleneck are negligible beside them); the
    backward costs about twice the forward.
    """
    param_storages = {p.untyped_storage()._cdata for p in model.parameters()}
    saved: dict[int, torch.Tensor] = {}
    flops = [0]

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        key = tensor.untyped_storage()._cdata
        if key not in param_storages:
            saved[key] = tensor  # holding it keeps the storage address unique
        return tensor

    def count(module: nn.Module, inputs: tuple, output: Any) -> None:
        flops[0] += _module_flops(module, inputs, output)

    handle = nn.modules.module.register_module_forward_hook(count)
    autocast = _AutocastEmulation() if amp else contextlib.nullcontext()
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor), autocast:
            outputs = model(x)
            _proxy_loss(outputs)
    finally:
        handle.remove()
    outputs_list = [outputs] if isinstance(outputs, torch.Tensor) else list(outputs)
    for out in outputs_list:
        saved.setdefault(out.untyped_storage()._cdata, out)
    sizes = [t.untyped_storage().nbytes() for t in saved.values()]
    parameters = sum(p.numel() for p in model.parameters())
    return _Trace(sum(sizes), max(sizes, default=0), parameters, 3 * flops[0], len(outputs_list))


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


def _sample_trace(
    spec: dict[str, Any], patch: tuple[int, ...], amp: bool, checkpointing: bool
) -> tuple[_Trace, int]:
    """One sample's trace and, with checkpointing, the bytes a backward recomputation adds.

    The backward of a checkpointed region re-materialises that region's activations; the
    largest region (a full-resolution stage) holds about RECOMPUTE_FRACTION of what
    checkpointing saved.
    """
    trace = _cached_trace(network_spec_json(spec, checkpointing), patch, amp)
    if not checkpointing:
        return trace, 0
    plain = _cached_trace(network_spec_json(spec, False), patch, amp)
    return trace, int(RECOMPUTE_FRACTION * max(0, plain.saved_bytes - trace.saved_bytes))


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
    trace, recompute = _sample_trace(network_spec, patch, amp, checkpointing)
    activations = (trace.saved_bytes + recompute) * batch_size
    weights = trace.parameters * 4
    workspace = GRADIENT_BUFFERS * trace.largest_bytes * batch_size
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
