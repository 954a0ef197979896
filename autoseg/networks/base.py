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
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call

from autoseg.core.errors import InvalidInputError


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
