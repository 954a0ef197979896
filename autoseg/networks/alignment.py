"""Rigid in-plane alignment to the head's midline, and mirror-symmetric convolutions.

A transform is ``(B, 3)``: rotation (radians), x and y translation in normalised units
(``[-1, 1]`` spans the image, ``align_corners=False``). ``rigid_matrix`` turns it into
the matrix that ``grid_sample`` uses: the aligned image at normalised point ``n`` is the
input at ``A n + t``. The rotation is rigid in pixels even for non-square images.

The left-right mirror is the flip of the last axis (X). Every module here is
mirror-equivariant by construction, so a mirrored head gives the mirrored alignment
(rotation and x shift change sign) and, with mirror-symmetric kernels, a mirrored result.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from autoseg.networks.blocks import ConvNormAct


class MirrorSymmetric(nn.Module):
    """Parametrisation making a kernel symmetric under a flip of its X axis."""

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return 0.5 * (weight + weight.flip(-1))


def make_mirror_symmetric(module: nn.Module) -> None:
    """Constrain every convolution in ``module`` with a kernel wider than 1 along X.

    With symmetric kernels, zero padding, instance norm and 2x2 pooling of even sizes, a
    network commutes with the left-right flip: f(flip(x)) = flip(f(x)).
    """
    convs = (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d)
    for m in module.modules():
        if isinstance(m, convs) and m.weight.shape[-1] > 1:
            parametrize.register_parametrization(m, "weight", MirrorSymmetric())


def rigid_matrix(transform: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``(B, 2, 3)`` sampling matrix ``[A | t]`` of a ``(B, 3)`` rigid transform."""
    angle, tx, ty = transform.unbind(1)
    cos, sin = torch.cos(angle), torch.sin(angle)
    aspect = height / width  # a pixel rotation in normalised coordinates is S^-1 R S
    row0 = torch.stack((cos, -sin * aspect, tx), dim=1)
    row1 = torch.stack((sin / aspect, cos, ty), dim=1)
    return torch.stack((row0, row1), dim=1)


def inverse_matrix(transform: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``(B, 2, 3)`` matrix of the inverse warp: n = A^-1 (m - t)."""
    angle, tx, ty = transform.unbind(1)
    zero = torch.zeros_like(tx)
    inv = rigid_matrix(torch.stack((-angle, zero, zero), dim=1), height, width)
    shift = -(inv[:, :, :2] @ torch.stack((tx, ty), dim=1).unsqueeze(-1))  # (B, 2, 1)
    return torch.cat((inv[:, :, :2], shift), dim=2)


def _coordinates(size: int, like: torch.Tensor) -> torch.Tensor:
    """Normalised pixel-centre coordinates (align_corners=False), odd under a flip."""
    return (2 * torch.arange(size, dtype=like.dtype, device=like.device) + 1) / size - 1


def warp(x: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """Resample ``x`` (B, C, Y, X) with a ``(B, 2, 3)`` matrix (bilinear, border padding).

    The sampling grid is built from ``arange`` rather than ``affine_grid`` so the ONNX
    graph keeps dynamic spatial sizes.
    """
    height, width = x.shape[-2:]
    ys, xs = _coordinates(height, x), _coordinates(width, x)
    gx = xs.expand(height, width)
    gy = ys.unsqueeze(1).expand(height, width)
    base = torch.stack((gx, gy, torch.ones_like(gx)), dim=-1)  # (Y, X, 3)
    grid = torch.einsum("yxk,bjk->byxj", base, matrix)  # (B, Y, X, 2)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def asymmetry(aligned: torch.Tensor) -> torch.Tensor:
    """Mean absolute left-right difference: the alignment (symmetry) loss."""
    return (aligned - aligned.flip(-1)).abs().mean()


class RigidAlignment(nn.Module):
    """Regresses the rigid transform that brings a head to left-right symmetry.

    Mirror-symmetric conv features are pooled against coordinate moments: rotation and
    x shift come from the moments odd in x (linear, no bias), the y shift from the even
    ones, so a mirrored input gives exactly the mirrored transform. The read-out layers
    start at zero (identity transform) and tanh bounds the result, so the alignment can
    never throw the head out of view.

    Args:
        in_channels: channels of the input stack (B, in_channels, Y, X).
        features: widths of the three conv levels.
        max_rotation_deg: bound of the rotation.
        max_shift: bound of each translation in normalised units (1 = half the image).
    """

    def __init__(
        self,
        in_channels: int,
        features: int = 16,
        max_rotation_deg: float = 30.0,
        max_shift: float = 0.2,
    ):
        super().__init__()
        self.max_rotation = math.radians(max_rotation_deg)
        self.max_shift = max_shift
        widths = (features, 2 * features, 4 * features)
        self.convs = nn.ModuleList(
            ConvNormAct(2, c_in, c_out, 3)
            for c_in, c_out in zip((in_channels, *widths[:-1]), widths, strict=True)
        )
        make_mirror_symmetric(self.convs)
        self.odd = nn.Linear(2 * widths[-1], 2, bias=False)  # -> rotation, x shift
        self.even = nn.Linear(2 * widths[-1], 1)  # -> y shift
        for layer in (self.odd, self.even):
            nn.init.zeros_(layer.weight)
        nn.init.zeros_(self.even.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3)`` transform (rotation rad, x shift, y shift) for ``x`` (B, C, Y, X)."""
        h = F.avg_pool2d(x, 4)  # alignment needs only the head's outline
        for level, conv in enumerate(self.convs):
            h = conv(h if level == 0 else F.max_pool2d(h, 2))
        ys = _coordinates(h.shape[-2], h).view(-1, 1)
        xs = _coordinates(h.shape[-1], h).view(1, -1)
        moments = [(h * w).mean(dim=(-2, -1)) for w in (1.0, ys, xs, xs * ys)]  # 4x (B, C)
        odd = self.odd(torch.cat(moments[2:], dim=1))
        even = self.even(torch.cat(moments[:2], dim=1))
        angle = self.max_rotation * torch.tanh(odd[:, 0])
        shifts = self.max_shift * torch.tanh(torch.stack((odd[:, 1], even[:, 0]), dim=1))
        return torch.cat((angle.unsqueeze(1), shifts), dim=1)
