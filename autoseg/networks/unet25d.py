"""2.5d_unet: Attention U-Net (Oktay et al., 2018) on k adjacent slices as channels.

The input ``(B, k * image_channels, Y, X)`` holds the slices around the one to segment
(slice-major channel order); the output is the centre slice's logits. Five levels of
double conv-norm-act blocks with max pooling, transposed-convolution upsampling and
attention gates on the skips: base width 32 gives about 7.8 M parameters and 64 about
31 M, the figures DWI users know from the classic Attention U-Net.
"""

from __future__ import annotations

import torch
from torch import nn

from autoseg.networks.base import SegmentationNetwork, init_conv_weights, seeded
from autoseg.networks.blocks import ConvNormAct, DecoderStage
from autoseg.networks.registry import register_network


def double_conv(in_channels: int, out_channels: int) -> nn.Sequential:
    """Two 3x3 conv-norm-act layers, the U-Net level block."""
    return nn.Sequential(
        ConvNormAct(2, in_channels, out_channels, 3), ConvNormAct(2, out_channels, out_channels, 3)
    )


@register_network("2.5d_unet")
class AttentionUNet25D(SegmentationNetwork):
    """Attention U-Net on stacked adjacent slices.

    Args:
        in_channels: image channels times the number of slices.
        num_classes: output channels (background included).
        base_features: width of the first level; level l has ``base * 2**l``.
        num_levels: resolution levels (5 in the classic network); Y and X must be
            multiples of ``2 ** (num_levels - 1)``.
        attention_gates: additive attention gates on the skips.
        deep_supervision: training mode returns a head output at every decoder scale.
        seed: seed of the initialisation.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        base_features: int = 32,
        num_levels: int = 5,
        attention_gates: bool = True,
        deep_supervision: bool = True,
        seed: int | None = None,
    ):
        super().__init__()
        self.dim, self.in_channels, self.num_classes = 2, in_channels, num_classes
        self.deep_supervision = deep_supervision
        self.divisors = (2 ** (num_levels - 1),) * 2
        widths = [base_features * 2**level for level in range(num_levels)]
        with seeded(seed):
            self.encoder = nn.ModuleList(
                double_conv(c_in, c_out)
                for c_in, c_out in zip([in_channels, *widths[:-1]], widths, strict=True)
            )
            self.pool = nn.MaxPool2d(2)
            self.decoder = nn.ModuleList(
                DecoderStage(
                    2, widths[lv + 1], widths[lv], (2, 2), (3, 3), 2, attention_gates, num_classes
                )
                for lv in reversed(range(num_levels - 1))
            )
            init_conv_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        """Centre-slice logits for ``x`` (B, in_channels, Y, X); contract in base."""
        self.check_input(x)
        skips = []
        h = x
        for level, block in enumerate(self.encoder):
            h = block(h if level == 0 else self.pool(h))
            skips.append(h)
        outputs = []
        for stage, skip in zip(self.decoder, reversed(skips[:-1]), strict=True):
            h = stage(h, skip)
            if self.training and self.deep_supervision:
                outputs.append(stage.head(h))
        if not self.training:
            return self.decoder[-1].head(h)
        return outputs[::-1] if outputs else [self.decoder[-1].head(h)]
