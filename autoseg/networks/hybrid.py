"""3d_hybrid: SE-ResNeXt encoder, attention-gated skips, bottleneck transformer.

With ``se=False``, ``attention_gates=False``, ``transformer_depth=0`` and ``groups=1`` the
network *is* a plain residual U-Net (same modules, same parameter names), so ablations need
no new code. Works in 2D as well when the kernel sizes have two entries per stage.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from autoseg.core.errors import InvalidInputError
from autoseg.networks.base import SegmentationNetwork, init_conv_weights, seeded
from autoseg.networks.blocks import ConvNormAct, DecoderStage, ResidualBlock, as_tuple
from autoseg.networks.registry import register_network
from autoseg.networks.transformer import BottleneckTransformer


def _stage_settings(
    n: int, dim: int, kernels: Sequence | None, strides: Sequence | None, blocks: Sequence | None
) -> tuple[list[tuple[int, ...]], list[tuple[int, ...]], list[int]]:
    """Per-stage kernels, strides and block counts, with nnU-Net-like defaults."""
    kernels = [as_tuple(k, dim) for k in (kernels or [3] * n)]
    strides = [as_tuple(s, dim) for s in (strides or [1] + [2] * (n - 1))]
    blocks = list(blocks or [1] + [2] * (n - 1))
    problems = [
        f"3d_hybrid: {name} has {len(v)} entries for {n} stages"
        for name, v in (("kernel_sizes", kernels), ("strides", strides), ("blocks", blocks))
        if len(v) != n
    ]
    if problems:
        raise InvalidInputError(problems)
    if any(s != 1 for s in strides[0]):
        raise InvalidInputError("3d_hybrid: the first stage must have stride 1 (full resolution)")
    return kernels, strides, blocks


@register_network("3d_hybrid")
class HybridUNet3D(SegmentationNetwork):
    """Residual U-Net with SE-ResNeXt blocks, attention gates and a bottleneck transformer.

    Args:
        in_channels: image channels.
        num_classes: output channels (background included).
        stage_features: width per resolution stage, e.g. ``[32, 64, 128, 256, 320]``.
        kernel_sizes: per stage, e.g. ``[[1, 3, 3], [3, 3, 3], ...]`` (default 3).
        strides: per stage pooling factor, first ``[1, 1, 1]``; anisotropic data pools
            in-plane first (``[1, 2, 2]``). Input sizes must be multiples of the product of
            the strides along each axis.
        blocks_per_stage: residual blocks per encoder stage (default ``[1, 2, 2, ...]``).
        decoder_convs: conv-norm-act layers per decoder stage.
        groups: cardinality of the grouped convolution inside each block (1 = dense).
        se: squeeze-and-excitation in every block.
        attention_gates: additive attention gates on the skips.
        transformer_depth: transformer blocks at the bottleneck (0 = none).
        transformer_heads: attention heads (must divide the bottleneck width).
        deep_supervision: training mode returns a head output at every decoder scale.
        checkpointing: recompute stage activations in the backward pass (saves memory).
        dim: spatial dimensions when ``kernel_sizes`` is not given (default 3).
        seed: seed of the initialisation (same seed, same weights).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        stage_features: Sequence[int] = (32, 64, 128, 256, 320),
        kernel_sizes: Sequence[Sequence[int] | int] | None = None,
        strides: Sequence[Sequence[int] | int] | None = None,
        blocks_per_stage: Sequence[int] | None = None,
        decoder_convs: int = 1,
        groups: int = 4,
        se: bool = True,
        attention_gates: bool = True,
        transformer_depth: int = 1,
        transformer_heads: int = 4,
        deep_supervision: bool = True,
        checkpointing: bool = False,
        dim: int | None = None,
        seed: int | None = None,
    ):
        super().__init__()
        n = len(stage_features)
        dim = dim or (
            len(kernel_sizes[0]) if kernel_sizes and not isinstance(kernel_sizes[0], int) else 3
        )
        kernels, stride_t, blocks = _stage_settings(n, dim, kernel_sizes, strides, blocks_per_stage)
        self.dim, self.in_channels, self.num_classes = dim, in_channels, num_classes
        self.deep_supervision, self.checkpointing = deep_supervision, checkpointing
        self.divisors = tuple(math.prod(s[a] for s in stride_t) for a in range(dim))
        with seeded(seed):
            self._build(stage_features, kernels, stride_t, blocks, groups, se)
            self._build_decoder(stage_features, kernels, stride_t, decoder_convs, attention_gates)
            self.transformer = None
            if transformer_depth > 0:
                self.transformer = BottleneckTransformer(
                    dim, stage_features[-1], transformer_depth, transformer_heads
                )
            init_conv_weights(self)

    def _build(
        self,
        features: Sequence[int],
        kernels: list[tuple[int, ...]],
        strides: list[tuple[int, ...]],
        blocks: list[int],
        groups: int,
        se: bool,
    ) -> None:
        """Stem + encoder stages of residual blocks."""
        dim = self.dim
        self.stem = ConvNormAct(dim, self.in_channels, features[0], kernels[0])
        stages = []
        for s, width in enumerate(features):
            prev = features[max(s - 1, 0)]
            stage = [ResidualBlock(dim, prev, width, kernels[s], strides[s], groups, se)]
            stage += [
                ResidualBlock(dim, width, width, kernels[s], 1, groups, se)
                for _ in range(blocks[s] - 1)
            ]
            stages.append(nn.Sequential(*stage))
        self.encoder = nn.ModuleList(stages)

    def _build_decoder(
        self,
        features: Sequence[int],
        kernels: list[tuple[int, ...]],
        strides: list[tuple[int, ...]],
        convs: int,
        gates: bool,
    ) -> None:
        """Decoder stages, deepest first."""
        self.decoder = nn.ModuleList(
            DecoderStage(
                self.dim,
                features[s + 1],
                features[s],
                strides[s + 1],
                kernels[s],
                convs,
                gates,
                self.num_classes,
            )
            for s in reversed(range(len(features) - 1))
        )

    def _run(self, module: nn.Module, *args: torch.Tensor) -> torch.Tensor:
        """Call ``module``, recomputing it in backward when checkpointing is on."""
        if self.checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(module, *args, use_reentrant=False)
        return module(*args)

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        """Logits for ``x`` (B, in_channels, *patch); see the output contract in base."""
        self.check_input(x)
        skips = []
        h = self.stem(x)
        for stage in self.encoder:
            h = self._run(stage, h)
            skips.append(h)
        if self.transformer is not None:
            h = self._run(self.transformer, h)
        outputs = []
        for stage, skip in zip(self.decoder, reversed(skips[:-1]), strict=True):
            h = self._run(stage, h, skip)
            if self.training and self.deep_supervision:
                outputs.append(stage.head(h))
        if not self.training:
            return self.decoder[-1].head(h)
        return outputs[::-1] if outputs else [self.decoder[-1].head(h)]
