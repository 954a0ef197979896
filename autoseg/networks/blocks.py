"""Building blocks shared by the networks, for 2D and 3D (``dim`` = 2 or 3).

Conventions: feature maps are ``(B, C, *spatial)`` with spatial ``(Y, X)`` in 2D and
``(Z, Y, X)`` in 3D. Normalisation is instance norm with affine parameters and the
activation is LeakyReLU(0.01), as in nnU-Net: instance norm does not depend on the batch
size (batches of 2 are the norm here) and the leaky slope keeps gradients alive.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

LEAKY_SLOPE = 0.01


def conv_type(dim: int) -> type[nn.Module]:
    """The convolution class for ``dim`` spatial dimensions."""
    return {2: nn.Conv2d, 3: nn.Conv3d}[dim]


def transposed_conv_type(dim: int) -> type[nn.Module]:
    """The transposed convolution class for ``dim`` spatial dimensions."""
    return {2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}[dim]


def norm(dim: int, channels: int) -> nn.Module:
    """Instance norm with affine parameters (batch-size independent)."""
    return {2: nn.InstanceNorm2d, 3: nn.InstanceNorm3d}[dim](channels, affine=True)


def as_tuple(value: int | Sequence[int], dim: int) -> tuple[int, ...]:
    """A kernel size or stride as a per-axis tuple."""
    if isinstance(value, int):
        return (value,) * dim
    if len(value) != dim:
        raise ValueError(f"expected {dim} values per axis, got {list(value)}")
    return tuple(int(v) for v in value)


def same_padding(kernel: tuple[int, ...]) -> tuple[int, ...]:
    """Padding that keeps the size for odd kernels."""
    return tuple(k // 2 for k in kernel)


class ConvNormAct(nn.Sequential):
    """Convolution, instance norm, LeakyReLU (in place).

    The convolution has no bias: the affine instance norm right after it would cancel it.
    ``conv_class`` replaces the plain ``nn.Conv2d`` / ``nn.Conv3d`` (same arguments).
    """

    def __init__(
        self,
        dim: int,
        in_channels: int,
        out_channels: int,
        kernel: int | Sequence[int] = 3,
        stride: int | Sequence[int] = 1,
        groups: int = 1,
        act: bool = True,
        conv_class: type[nn.Module] | None = None,
    ):
        kernel_t = as_tuple(kernel, dim)
        conv = (conv_class or conv_type(dim))(
            in_channels,
            out_channels,
            kernel_t,
            as_tuple(stride, dim),
            same_padding(kernel_t),
            groups=groups,
            bias=False,
        )
        layers: list[nn.Module] = [conv, norm(dim, out_channels)]
        if act:
            layers.append(nn.LeakyReLU(LEAKY_SLOPE, inplace=True))
        super().__init__(*layers)


class SqueezeExcitation(nn.Module):
    """Channel re-weighting from globally pooled features (Hu et al., 2018).

    Costs two tiny 1x1 convolutions on a (B, C, 1, ...) vector: global context for almost
    no compute, which matters on the CPU.
    """

    def __init__(self, dim: int, channels: int, reduction: int = 4):
        super().__init__()
        hidden = max(channels // reduction, 4)
        conv = conv_type(dim)
        self.dim = dim
        self.fc1 = conv(channels, hidden, 1)
        self.fc2 = conv(hidden, channels, 1)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """Re-weight the channels of ``x`` by weights squeezed from ``context`` (default x).

        Behind an instance norm the per-channel means of ``x`` are just the norm's bias, so
        blocks squeeze the pre-norm convolution output and pass it as ``context``.
        """
        source = x if context is None else context
        s = source.mean(dim=tuple(range(2, 2 + self.dim)), keepdim=True)  # (B, C, 1, ...)
        s = torch.sigmoid(self.fc2(F.relu(self.fc1(s), inplace=True)))
        return x * s


def groups_for(channels_in: int, channels_out: int, groups: int) -> int:
    """``groups`` if both channel counts allow it, else 1 (a dense convolution)."""
    if groups > 1 and channels_in % groups == 0 and channels_out % groups == 0:
        return groups
    return 1


class ResidualBlock(nn.Module):
    """SE-ResNeXt style residual block: two convs (the second grouped), optional SE.

    The first convolution changes width and stride densely so that every output channel
    sees every input channel; the second is grouped (cardinality ``groups``). With
    ``groups=1`` and ``se=False`` this is the plain residual block of a residual U-Net.
    The shortcut is a strided 1x1 convolution + norm when the shape changes.
    """

    def __init__(
        self,
        dim: int,
        in_channels: int,
        out_channels: int,
        kernel: int | Sequence[int] = 3,
        stride: int | Sequence[int] = 1,
        groups: int = 1,
        se: bool = False,
    ):
        super().__init__()
        stride_t = as_tuple(stride, dim)
        self.conv1 = ConvNormAct(dim, in_channels, out_channels, kernel, stride_t)
        inner_groups = groups_for(out_channels, out_channels, groups)
        self.conv2 = ConvNormAct(dim, out_channels, out_channels, kernel, 1, inner_groups, False)
        self.se = SqueezeExcitation(dim, out_channels) if se else None
        self.shortcut: nn.Module | None = None
        if in_channels != out_channels or any(s != 1 for s in stride_t):
            self.shortcut = ConvNormAct(dim, in_channels, out_channels, 1, stride_t, act=False)
        self.act = nn.LeakyReLU(LEAKY_SLOPE, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.shortcut is None else self.shortcut(x)
        pre_norm = self.conv2[0](self.conv1(x))
        out = self.conv2[1](pre_norm)
        if self.se is not None:
            out = self.se(out, pre_norm)
        return self.act(out + residual)


class AttentionGate(nn.Module):
    """Additive attention gate on a skip connection (Oktay et al., 2018).

    The gating signal is the upsampled decoder feature at the skip's resolution, which
    avoids the extra resampling of the original formulation at the same effect: the
    decoder tells the skip which locations matter.

    Args:
        dim: 2 or 3.
        skip_channels: channels of the skip ``x``.
        gate_channels: channels of the gating signal ``g``.
        inter_channels: width of the intermediate map (default: skip_channels // 2).
    """

    def __init__(
        self, dim: int, skip_channels: int, gate_channels: int, inter_channels: int | None = None
    ):
        super().__init__()
        inter = inter_channels or max(skip_channels // 2, 1)
        conv = conv_type(dim)
        self.theta_x = conv(skip_channels, inter, 1, bias=False)
        self.phi_g = conv(gate_channels, inter, 1, bias=True)
        self.psi = conv(inter, 1, 1, bias=True)

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """Gate the skip ``x`` (B, Cx, *S) with ``g`` (B, Cg, *S); returns (B, Cx, *S)."""
        a = F.relu(self.theta_x(x) + self.phi_g(g), inplace=True)
        return x * torch.sigmoid(self.psi(a))


class DecoderStage(nn.Module):
    """Upsample (transposed conv), optionally gate the skip, concatenate, convolve.

    ``head`` is the stage's 1x1 segmentation head; the network calls it for the scales it
    needs (all of them for deep supervision, only the last one in eval mode).
    """

    def __init__(
        self,
        dim: int,
        deep: int,
        skip: int,
        stride: tuple,
        kernel: tuple,
        convs: int,
        gate: bool,
        num_classes: int,
    ):
        super().__init__()
        self.up = transposed_conv_type(dim)(deep, skip, stride, stride, bias=False)
        self.gate = AttentionGate(dim, skip, skip) if gate else None
        layers = [ConvNormAct(dim, 2 * skip, skip, kernel)]
        layers += [ConvNormAct(dim, skip, skip, kernel) for _ in range(convs - 1)]
        self.convs = nn.Sequential(*layers)
        self.head = conv_type(dim)(skip, num_classes, 1)

    def forward(self, deep: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        up = self.up(deep)
        if self.gate is not None:
            skip = self.gate(skip, up)
        return self.convs(torch.cat((up, skip), dim=1))
