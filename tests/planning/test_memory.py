"""Memory model: the meta-device trace matches a real CPU step; checkpointing and AMP help."""

from __future__ import annotations

import torch
from torch import nn

from autoseg.networks import build_network
from autoseg.planning.memory import (
    WORKSPACE_FIXED_BYTES,
    _trace_step,
    estimate_training_memory,
)

SPEC = {
    "name": "3d_hybrid",
    "kwargs": {"in_channels": 1, "num_classes": 2, "stage_features": [4, 8, 16],
               "transformer_depth": 1, "transformer_heads": 2},
}  # fmt: skip


def real_saved_bytes(patch: tuple[int, int, int]) -> int:
    """Bytes autograd saves in a real CPU forward + loss (distinct storages, no weights)."""
    torch.manual_seed(0)
    model = build_network(SPEC).train()
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in params:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        outputs = model(torch.randn(1, 1, *patch))
        loss = sum(torch.log_softmax(o, 1).mean() + torch.softmax(o, 1).mean() for o in outputs)
    for out in outputs:
        saved.setdefault(out.untyped_storage().data_ptr(), out.untyped_storage().nbytes())
    loss.backward()
    return sum(saved.values())


def test_meta_trace_equals_a_real_cpu_step() -> None:
    with torch.device("meta"):
        model = build_network(SPEC)
    traced = _trace_step(model.train(), torch.empty(1, 1, 16, 16, 16, device="meta"), False)
    # The CPU kernels save a few small tensors differently (e.g. oneDNN workspaces).
    assert abs(traced.saved_bytes / real_saved_bytes((16, 16, 16)) - 1) < 0.05


def test_estimate_scales_with_batch_and_shrinks_with_levers() -> None:
    one = estimate_training_memory(SPEC, (16, 32, 32), 1, amp=False, checkpointing=False)
    four = estimate_training_memory(SPEC, (16, 32, 32), 4, amp=False, checkpointing=False)
    assert four.activations == 4 * one.activations
    assert four.weights == one.weights == 4 * build_network(SPEC).parameter_count()
    half = estimate_training_memory(SPEC, (16, 32, 32), 4, amp=True, checkpointing=False)
    ckpt = estimate_training_memory(SPEC, (16, 32, 32), 4, amp=False, checkpointing=True)
    assert 0.4 * four.activations < half.activations < 0.75 * four.activations
    assert ckpt.activations < four.activations
    assert four.gflops == 4 * one.gflops > 0


def stack(channels: int, layers: int) -> list[nn.Module]:
    """``layers`` 3x3 conv + ReLU pairs of ``channels`` channels."""
    return [
        m for _ in range(layers) for m in (nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU())
    ]


def wide_first() -> nn.Module:
    """Full-resolution layer first (its gradients come last), then a deep low-res part."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(4),
        nn.Conv2d(16, 64, 1), *stack(64, 16), nn.Conv2d(64, 2, 1),
    )  # fmt: skip


def wide_last() -> nn.Module:
    """The same layers mirrored: the full-resolution gradients come first."""
    return nn.Sequential(
        nn.Conv2d(1, 64, 4, stride=4), *stack(64, 16), nn.Conv2d(64, 16, 1),
        nn.Upsample(scale_factor=4.0), *stack(16, 1), nn.Conv2d(16, 2, 1),
    )  # fmt: skip


def test_backward_rise_follows_the_order_gradients_come_in() -> None:
    full_resolution = 16 * 64 * 64 * 4  # one (1, 16, 64, 64) float32 activation
    rises = {}
    for build in (wide_first, wide_last):
        with torch.device("meta"):
            model = build()
        x = torch.empty(1, 1, 64, 64, device="meta")
        rises[build] = _trace_step(model.train(), x, False).backward_bytes
    # Freed saved tensors make room for the late full-resolution gradients...
    assert rises[wide_first] < 0.75 * full_resolution
    # ...while early ones (incoming and produced) sit beside every saved tensor.
    assert rises[wide_last] >= 1.5 * full_resolution


def test_meta_backward_equals_a_real_cpu_backward() -> None:
    torch.manual_seed(0)
    with torch.device("meta"):
        meta = _trace_step(build_network(SPEC).train(), torch.empty(1, 1, 16, 16, 16), False)
    cpu = _trace_step(build_network(SPEC).train(), torch.randn(1, 1, 16, 16, 16), False)
    assert cpu.backward_bytes > 0
    assert abs(meta.backward_bytes / cpu.backward_bytes - 1) < 0.05


def test_amp_checkpointing_recomputes_in_half_precision() -> None:
    amp = estimate_training_memory(SPEC, (16, 32, 32), 2, amp=True, checkpointing=True)
    full = estimate_training_memory(SPEC, (16, 32, 32), 2, amp=False, checkpointing=True)
    assert amp.workspace - WORKSPACE_FIXED_BYTES < 0.75 * (full.workspace - WORKSPACE_FIXED_BYTES)
