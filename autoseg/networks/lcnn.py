"""2d_lcnn: local symmetry-aware path (SEAN) fused with a global ResNeXt path.

Input ``(B, S * C, Y, X)``: S = 2T+1 adjacent slices of C image channels, slice-major
(channels ``[slice0: c0..cC-1, slice1: ...]``); output: logits of the centre slice.

Local path: ``RigidAlignment`` regresses a bounded rotation + translation that brings the
head to left-right symmetry; every slice is warped with it; a 3D encoder runs over the
aligned (C, S, Y, X) stack pooling in-plane only, so the slice axis survives to the
bottleneck; there ``SymmetricSliceAttention`` lets each region of the centre slice attend
to the same region and its mirrored region in all S slices; a 2D decoder with skips from
the encoder's centre slice predicts the centre slice, which is warped back.
With ``mirror_symmetric=True`` (default) the whole local path commutes with a left-right
flip of its input.

Global path: ResNeXt trunk (torchvision-compatible names) on the centre slice via a
learnable C -> 3 adapter, with a light top-down decoder to stride 4.

Fusion: softmax-normalised learnable weights initialised to 0.7 local / 0.3 global.

Training contract: ``forward`` in train mode returns the list of logits (full resolution
first) and keeps ``last_aligned`` (B, C, S, Y, X) and ``last_transform`` (B, 3);
``auxiliary_loss()`` returns the alignment (asymmetry) loss of that forward.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from autoseg.core.errors import InvalidInputError
from autoseg.networks.alignment import (
    RigidAlignment,
    asymmetry,
    inverse_matrix,
    make_mirror_symmetric,
    rigid_matrix,
    warp,
)
from autoseg.networks.base import SegmentationNetwork, init_conv_weights, seeded
from autoseg.networks.blocks import ConvNormAct, DecoderStage
from autoseg.networks.registry import register_network
from autoseg.networks.resnext import ResNeXtTrunk, load_torchvision_weights


class SliceStackConv3d(nn.Conv3d):
    """A 3D convolution over a thin slice stack, run as one 2D convolution of every
    slice's kernel-deep window under CPU bf16 autocast.

    On an AMX CPU, torch 2.13's oneDNN corrupts memory in the weight gradient of a bf16
    3D convolution over a 3-slice stack at slice size (aborts, segfaults or hangs; see
    :mod:`~autoseg.training.bf16_check`); its 2D convolutions are sound. A kernel ``k``
    deep over zero-padded slices equals a 2D convolution of the ``k`` stacked neighbouring
    slices with the kernel's depth folded into its input channels, so the result is the
    same (to rounding) and float32 keeps the faster native 3D path.
    """

    def _conv_forward(
        self, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
    ) -> torch.Tensor:
        plain = (self.groups, self.stride[0], self.dilation[0], self.padding_mode) == (
            1, 1, 1, "zeros",
        )  # fmt: skip
        if not (plain and input.device.type == "cpu" and torch.is_autocast_enabled("cpu")):
            return super()._conv_forward(input, weight, bias)
        b, c, _, h, w = input.shape
        depth = weight.shape[2]
        padded = F.pad(input, (0, 0, 0, 0, self.padding[0], self.padding[0]))
        windows = padded.unfold(2, depth, 1)  # (B, C, S, Y, X, depth)
        slices = windows.shape[2]
        windows = windows.permute(0, 2, 1, 5, 3, 4).reshape(b * slices, c * depth, h, w)
        folded = weight.reshape(weight.shape[0], c * depth, *weight.shape[3:])
        out = F.conv2d(windows, folded, bias, self.stride[1:], self.padding[1:],
                       self.dilation[1:])  # fmt: skip
        return out.reshape(b, slices, *out.shape[1:]).transpose(1, 2)


class SymmetricSliceAttention(nn.Module):
    """Each centre-slice position attends to itself and its mirror in all S slices.

    Keys and values at position (y, x) are the S slices' features at (y, x) and at the
    mirrored (y, X-1-x), plus a learned embedding of which slice and which side: 2S keys
    per query, so the cost is linear in the image size. Mirror-equivariant: flipping the
    input swaps each position with its mirror and leaves the key set unchanged.

    Args:
        channels: feature width C (divisible by ``heads``).
        num_slices: S.
        heads: attention heads.
    """

    def __init__(self, channels: int, num_slices: int, heads: int = 4):
        super().__init__()
        if channels % heads:
            raise ValueError(f"attention width {channels} is not divisible by {heads} heads")
        self.heads = heads
        self.query = nn.Conv2d(channels, channels, 1)
        self.key_value = SliceStackConv3d(channels, 2 * channels, 1)
        self.key_embedding = nn.Parameter(torch.zeros(1, channels, 2 * num_slices, 1, 1))
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, stack: torch.Tensor) -> torch.Tensor:
        """Attend from the centre slice of ``stack`` (B, C, S, y, x); returns (B, C, y, x)."""
        b, c, s, h, w = stack.shape
        centre = stack[:, :, s // 2]
        d = c // self.heads
        q = self.query(centre).reshape(b, self.heads, d, 1, h, w)
        k, v = self.key_value(stack).chunk(2, dim=1)  # each (B, C, S, y, x)
        k = torch.cat((k, k.flip(-1)), dim=2) + self.key_embedding
        v = torch.cat((v, v.flip(-1)), dim=2)
        k = k.reshape(b, self.heads, d, 2 * s, h, w)
        attn = torch.softmax((q * k).sum(2) / math.sqrt(d), dim=2)  # (B, heads, 2S, y, x)
        out = (attn.unsqueeze(2) * v.reshape(b, self.heads, d, 2 * s, h, w)).sum(3)
        return centre + self.proj(out.reshape(b, c, h, w))


class LocalPath(nn.Module):
    """SEAN: alignment, 3D slice-stack encoder, symmetric attention, 2D decoder."""

    def __init__(
        self,
        channels: int,
        slices: int,
        num_classes: int,
        features: Sequence[int],
        heads: int,
        max_rotation_deg: float,
        max_shift: float,
        mirror_symmetric: bool,
    ):
        super().__init__()
        self.channels, self.slices = channels, slices
        self.align = RigidAlignment(channels * slices, features[0], max_rotation_deg, max_shift)
        self.encoder = nn.ModuleList(
            nn.Sequential(
                ConvNormAct(3, c_in, c_out, 3, conv_class=SliceStackConv3d),
                ConvNormAct(3, c_out, c_out, 3, conv_class=SliceStackConv3d),
            )
            for c_in, c_out in zip((channels, *features[:-1]), features, strict=True)
        )
        self.attention = SymmetricSliceAttention(features[-1], slices, heads)
        self.decoder = nn.ModuleList(
            DecoderStage(2, features[i + 1], features[i], (2, 2), (3, 3), 2, False, num_classes)
            for i in reversed(range(len(features) - 1))
        )
        init_conv_weights(self.encoder)
        init_conv_weights(self.decoder)
        if mirror_symmetric:
            make_mirror_symmetric(self.encoder)
            make_mirror_symmetric(self.decoder)

    def aligned_stack(self, x: torch.Tensor, transform: torch.Tensor) -> torch.Tensor:
        """Warp every slice of ``x`` (B, S*C, Y, X); returns (B, C, S, Y, X)."""
        b, _, h, w = x.shape
        aligned = warp(x, rigid_matrix(transform, h, w))
        return aligned.reshape(b, self.slices, self.channels, h, w).transpose(1, 2)

    def forward(
        self, x: torch.Tensor, all_scales: bool, transform: torch.Tensor | None = None
    ) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        """Logits in the input frame (full resolution first), aligned stack, transform."""
        transform = self.align(x) if transform is None else transform
        stack = self.aligned_stack(x, transform)
        skips, h = [], stack
        for level, block in enumerate(self.encoder):
            h = block(h if level == 0 else F.max_pool3d(h, (1, 2, 2)))
            skips.append(h[:, :, self.slices // 2])
        h = self.attention(h)
        outputs = []
        for stage, skip in zip(self.decoder, reversed(skips[:-1]), strict=True):
            h = stage(h, skip)
            if all_scales or stage is self.decoder[-1]:
                logits = stage.head(h)
                outputs.append(warp(logits, inverse_matrix(transform, *logits.shape[-2:])))
        return outputs[::-1], stack, transform


class GlobalPath(nn.Module):
    """C -> 3 adapter, ResNeXt trunk, top-down decoder to stride-4 logits."""

    def __init__(
        self,
        channels: int,
        num_classes: int,
        layers: Sequence[int],
        groups: int,
        width_per_group: int,
        base_channels: int,
        decoder_features: int,
    ):
        super().__init__()
        self.adapter = nn.Conv2d(channels, 3, 1)
        nn.init.constant_(self.adapter.weight, 1.0 / channels)  # grey -> RGB replication
        nn.init.zeros_(self.adapter.bias)
        self.trunk = ResNeXtTrunk(layers, groups, width_per_group, base_channels)
        self.lateral = nn.ModuleList(
            nn.Conv2d(c, decoder_features, 1) for c in self.trunk.out_channels
        )
        self.fuse = ConvNormAct(2, decoder_features, decoder_features, 3)
        self.head = nn.Conv2d(decoder_features, num_classes, 1)
        init_conv_weights(nn.ModuleList((self.lateral, self.fuse, self.head)))

    def forward(self, centre: torch.Tensor) -> torch.Tensor:
        """Stride-4 logits for the centre slice (B, C, Y, X)."""
        features = self.trunk(self.adapter(centre))
        h = self.lateral[-1](features[-1])
        for lateral, f in zip(self.lateral[-2::-1], features[-2::-1], strict=True):
            h = F.interpolate(h, scale_factor=2.0, mode="nearest") + lateral(f)
        return self.head(self.fuse(h))


def _resize(logits: torch.Tensor, factor: float) -> torch.Tensor:
    """Scale stride-4 global logits by ``factor`` (a power of two) to a decoder scale."""
    if factor > 1:
        return F.interpolate(logits, scale_factor=factor, mode="bilinear")
    if factor < 1:
        return F.avg_pool2d(logits, round(1 / factor))
    return logits


@register_network("2d_lcnn")
class LCNN(SegmentationNetwork):
    """Local symmetry-enhanced path + global ResNeXt path, fused (see module docstring).

    Args:
        in_channels: image channels times ``num_slices``.
        num_classes: output channels (background included).
        num_slices: S = 2T+1 slices in the input (default: ``in_channels``, one channel).
        local_features: widths of the local encoder levels (pooling 2x in-plane between).
        attention_heads: heads of the symmetric slice attention.
        max_rotation_deg: bound of the alignment rotation.
        max_shift: bound of each alignment translation (normalised; 1 = half the image).
        mirror_symmetric: constrain local kernels to be left-right symmetric, making the
            local path exactly mirror-equivariant.
        global_layers: ResNeXt blocks per layer ((3, 4, 6, 3) = ResNeXt-50).
        global_groups: ResNeXt cardinality (32).
        global_width_per_group: ResNeXt group width (4).
        global_base_channels: ResNeXt stem width (64).
        global_decoder_features: width of the global top-down decoder.
        global_weights: optional torchvision ResNeXt weight file for the global trunk.
        deep_supervision: training mode returns logits at every decoder scale.
        seed: seed of the initialisation.

    Y and X must be multiples of ``max(32, 2 ** (len(local_features) - 1))``.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        num_slices: int | None = None,
        local_features: Sequence[int] = (16, 32, 64, 128),
        attention_heads: int = 4,
        max_rotation_deg: float = 30.0,
        max_shift: float = 0.2,
        mirror_symmetric: bool = True,
        global_layers: Sequence[int] = (3, 4, 6, 3),
        global_groups: int = 32,
        global_width_per_group: int = 4,
        global_base_channels: int = 64,
        global_decoder_features: int = 64,
        global_weights: str | None = None,
        deep_supervision: bool = True,
        seed: int | None = None,
    ):
        super().__init__()
        slices = num_slices or in_channels
        if in_channels % slices:
            raise InvalidInputError(
                f"2d_lcnn: in_channels {in_channels} is not a multiple of num_slices {slices}"
            )
        self.dim, self.in_channels, self.num_classes = 2, in_channels, num_classes
        self.channels, self.slices = in_channels // slices, slices
        self.deep_supervision = deep_supervision
        self.divisors = (max(32, 2 ** (len(local_features) - 1)),) * 2
        with seeded(seed):
            self.local = LocalPath(
                self.channels,
                slices,
                num_classes,
                local_features,
                attention_heads,
                max_rotation_deg,
                max_shift,
                mirror_symmetric,
            )
            self.global_path = GlobalPath(
                self.channels,
                num_classes,
                global_layers,
                global_groups,
                global_width_per_group,
                global_base_channels,
                global_decoder_features,
            )
        self.fusion = nn.Parameter(torch.log(torch.tensor([0.7, 0.3])))
        if global_weights:
            load_torchvision_weights(self.global_path.trunk, global_weights)
        self.last_aligned: torch.Tensor | None = None
        self.last_transform: torch.Tensor | None = None

    def fusion_weights(self) -> torch.Tensor:
        """(local, global) weights, positive and summing to one."""
        return torch.softmax(self.fusion, dim=0)

    def centre_slice(self, x: torch.Tensor) -> torch.Tensor:
        """The centre slice's channels of ``x`` (B, S*C, Y, X) -> (B, C, Y, X)."""
        first = self.channels * (self.slices // 2)
        return x[:, first : first + self.channels]

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        """Centre-slice logits for ``x`` (B, S*C, Y, X); contract in the module docstring."""
        self.check_input(x)
        local, aligned, transform = self.local(x, self.training and self.deep_supervision)
        global_logits = self.global_path(self.centre_slice(x))  # stride 4
        w_local, w_global = self.fusion_weights().unbind(0)
        fused = [
            w_local * logits + w_global * _resize(global_logits, 4.0 / 2**scale)
            for scale, logits in enumerate(local)
        ]
        if not self.training:
            return fused[0]
        if torch.is_grad_enabled():  # kept for auxiliary_loss; not during meta sizing
            self.last_aligned, self.last_transform = aligned, transform
        return fused

    def auxiliary_loss(self) -> torch.Tensor:
        """Left-right asymmetry of the last training forward's aligned slices."""
        if self.last_aligned is None:
            raise RuntimeError("auxiliary_loss() needs a training-mode forward first")
        return asymmetry(self.last_aligned)
